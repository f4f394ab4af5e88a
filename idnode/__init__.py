"""idnode: the composition root — configuration, command line, wiring."""

__version__ = "0.1.0"
