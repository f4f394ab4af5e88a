"""Synchronisation with the national top-level node."""
