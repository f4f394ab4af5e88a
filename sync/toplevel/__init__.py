"""The mock national top-level node (``idnode toplevel``), per sync/PROTOCOL.md."""
