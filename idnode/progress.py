"""Progress of a long job (seeding, backup, restore, bulk loads, benchmarks).

On a terminal, a bar with the rate and the time left (tqdm). Anywhere else the
output is a log, which must never get carriage returns or escape codes: one
plain line every ``interval`` seconds and one at the end, such as
``seeding: 4,096/10,240 identifiers (812/s, ETA 0:00:08)``. Where the process's
log already writes to that stream (every ``idnode`` command logs to stderr),
those lines go through the ``idnode.progress`` logger and take the log's
format, so a JSON log stays one JSON object a line; otherwise they are written
as they are. Progress goes to stderr by default: stdout carries what scripts
parse.

A job that fails leaves no final line (its error says what happened) and, on a
terminal, no bar.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import timedelta
from types import TracebackType
from typing import Any, TextIO

log = logging.getLogger("idnode.progress")

INTERVAL = 5.0
"""Seconds between two lines when the output is not a terminal."""


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(max(seconds, 0.0))))


def _width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class Progress:
    """``with Progress("seeding", total=10_240, unit="identifiers") as p: p.update(512)``.

    ``total`` may be unknown (None: counts and rate only) and may be set later,
    once it is known. ``terminal`` defaults to whether ``stream`` is one.
    """

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "items",
        stream: TextIO | None = None,
        interval: float = INTERVAL,
        terminal: bool | None = None,
    ) -> None:
        self.label = label
        self.unit = unit
        self.done = 0
        self.interval = interval
        self._stream = stream if stream is not None else sys.stderr
        self._total = total
        self._started = time.monotonic()
        self._last_line = self._started
        self._closed = False
        if terminal is None:
            isatty = getattr(self._stream, "isatty", None)
            terminal = bool(isatty and isatty())
        self._bar: Any = None
        if terminal:
            from tqdm import tqdm  # type: ignore[import-untyped]

            width = _width(self._stream)
            self._bar = tqdm(
                desc=label,
                total=total,
                unit=f" {unit}",
                file=self._stream,
                # A terminal that reports no size (a fresh pseudo-terminal) gets 80 columns.
                dynamic_ncols=width > 0,
                ncols=None if width > 0 else 80,
                mininterval=0.2,
            )

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        self._total = value
        if self._bar is not None:
            self._bar.total = value
            self._bar.refresh()

    def update(self, n: int = 1) -> None:
        """``n`` more done; a line is written when ``interval`` has passed."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._emit(self.line(now))

    def rate(self, now: float | None = None) -> float:
        elapsed = (now if now is not None else time.monotonic()) - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        """The state as one line: counts, rate and, with a total, the time left."""
        rate = self.rate(now)
        if self._total is None:
            return f"{self.label}: {self.done:,} {self.unit} ({rate:,.0f}/s)"
        eta = f"ETA {_clock((self._total - self.done) / rate)}" if rate > 0 else "ETA ?"
        return f"{self.label}: {self.done:,}/{self._total:,} {self.unit} ({rate:,.0f}/s, {eta})"

    def final_line(self, now: float | None = None) -> str:
        now = now if now is not None else time.monotonic()
        counted = f"{self.done:,}" if self._total is None else f"{self.done:,}/{self._total:,}"
        return (
            f"{self.label}: {counted} {self.unit} in {_clock(now - self._started)} "
            f"({self.rate(now):,.0f}/s)"
        )

    def close(self, *, failed: bool = False) -> None:
        """The final line (or the bar left at its end); nothing when ``failed``."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            if failed:
                self._bar.leave = False  # the error that follows says what happened
            self._bar.close()
            return
        if not failed:
            self._emit(self.final_line())

    def _emit(self, text: str) -> None:
        if self._logged():
            fields = {"done": self.done, "total": self._total, "rate": round(self.rate(), 1)}
            log.info("%s", text, extra={"fields": {"progress": self.label, **fields}})
        else:
            print(text, file=self._stream, flush=True)

    def _logged(self) -> bool:
        """Whether the log already writes to this stream: the line then takes its format."""
        return any(
            isinstance(handler, logging.StreamHandler) and handler.stream is self._stream
            for handler in logging.getLogger().handlers
        )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(failed=exc_type is not None)
