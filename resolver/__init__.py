"""The query path: resolution engine, cache and protocol front ends (issues 3–5)."""
