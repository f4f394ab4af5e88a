"""Locust users and benchmarks; they talk to the node only over the network."""
