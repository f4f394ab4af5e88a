"""The ``idnode`` command's entry point.

The process's metrics directory is chosen (metrics.multiprocess) before
anything imports prometheus_client, which decides how values are kept when it
is first imported.
"""

from __future__ import annotations

from collections.abc import Sequence

from metrics import multiprocess


def main(argv: Sequence[str] | None = None) -> int:
    multiprocess.prepare()
    from .cli import main as run

    return run(argv)
