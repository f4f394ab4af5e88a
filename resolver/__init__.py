"""The query path: resolution engine, cache and protocol front ends."""
