"""The backtest's progress line: data time reached, messages stepped, rate, fills.

Theory of operation: ``ProgressLine`` is handed ``_runner.Progress`` once per data second (cheap)
and redraws one line on its stream at most every ``interval`` seconds of the ``now`` clock it
was given (the command line passes ``time.monotonic``: wall time, which a backtest under trio's
``MockClock`` never reads itself), in the replay command's format (``_export.progress_line``:
a bar when the run's end is known, messages, data time, messages per wall second) followed by
the number of fills. ``close`` draws the final state and ends the line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from .._export._progress import progress_line
from ._runner import Progress

__all__ = ["ProgressLine"]


class ProgressLine:
    """Redraws the progress of a backtest on ``stream`` at most every ``interval`` of ``now``."""

    def __init__(self, stream: TextIO, *, now: Callable[[], float], interval: float = 0.25) -> None:
        self._stream = stream
        self._now = now
        self.interval = interval
        self._last = (now(), 0)  # (time, messages) at the last redraw
        self._latest: Progress | None = None
        self._width = 0
        self.drawn = 0

    def __call__(self, progress: Progress) -> None:
        self._latest = progress
        now = self._now()
        then, before = self._last
        if now - then < self.interval:
            return
        self._last = (now, progress.messages)
        self._draw(progress, (progress.messages - before) / (now - then))

    def close(self) -> None:
        """Draw the latest state and end the line, if anything was drawn."""
        if self.drawn and self._latest is not None:
            now = self._now()
            then, before = self._last
            rate = (self._latest.messages - before) / (now - then) if now > then else 0.0
            self._draw(self._latest, rate)
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, progress: Progress, rate: float) -> None:
        text = progress_line(progress.messages, progress.data_time, rate, progress.fraction)
        text += f"  {progress.fills:,} fills"
        # Pad to the previous width so a shorter line erases the end of a longer one.
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)
        self.drawn += 1
