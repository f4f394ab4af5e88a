"""The query path: the resolver, its answer cache and the protocol front ends."""
