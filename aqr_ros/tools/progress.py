"""One progress line on stderr for the long-running tools (bag conversion, offline runs over bags)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds between two redraws of the line.
PERIOD_S = 0.5
#: Characters of the bar drawn when the total is known.
BAR_WIDTH = 30


class ProgressLine:
    """``done`` (of ``total``, with a bar, when known), its rate and other amounts per second, redrawn in place at
    most every :data:`PERIOD_S` on a terminal; elsewhere (a log file) only the final line is written."""

    def __init__(self, label: str, unit: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label, self.unit, self.total = label, unit, total
        self.stream = sys.stderr if stream is None else stream
        self.live = self.stream.isatty()
        self.start = self._last = time.monotonic()

    def clear(self) -> None:
        """Blank the line, so that a message can be printed on it (the next update redraws it)."""
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def update(self, done: int, final: bool = False, **amounts: float) -> None:
        """Redraw with ``done`` and each of ``amounts`` (name -> amount so far, e.g. ``MB=12.5``) as a rate per
        second; ``final`` always draws and ends the line."""
        now = time.monotonic()
        if not final and (not self.live or now - self._last < PERIOD_S):
            return
        self._last = now
        elapsed = max(now - self.start, 1e-9)
        count = f"{done} {self.unit}"
        if self.total is not None:
            filled = BAR_WIDTH * done // max(self.total, 1)
            count = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} {self.unit}"
        rates = "".join(f" {amount / elapsed:.1f} {name}/s" for name, amount in amounts.items())
        self.stream.write(f"\r{self.label} {count} {done / elapsed:.2f} {self.unit}/s{rates}" + ("\n" if final else ""))
        self.stream.flush()
