"""Synchronisation with the national top-level node (issue 6)."""
