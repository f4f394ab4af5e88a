"""The ``idnode`` command's entry point.

The process's metrics directory is chosen (metrics.multiprocess) before
anything imports prometheus_client, which decides how values are kept when it
is first imported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from metrics import multiprocess


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["health"]:
        # A container probe, run every few seconds: it skips the node's imports.
        from . import health_cmd

        parser = argparse.ArgumentParser(prog="idnode")
        health_cmd.add_parser(parser.add_subparsers())
        return health_cmd.run(parser.parse_args(words))
    multiprocess.prepare()
    from .cli import main as run

    return run(argv)
