"""A one-line progress display for long replays: messages, data time reached, rate.

Theory of operation: ``Progress`` is told the message count and the data time reached as often as
the caller likes (``update``, cheap) and redraws one line on its stream at most every
``interval`` seconds of the ``now`` clock it was given (wall time for a terminal: the caller
passes ``time.monotonic``; tests pass their own), with a carriage return so the line rewrites
itself. The rate is over the last redraw interval, so it follows the replay's current speed.
When the caller knows the fraction done (files read of all files) it shows a bar too. ``close``
ends the line. The command line creates one only when stderr is a terminal: progress never lands
in a file or a pipe.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["Progress", "progress_line"]

_BAR = 20


def progress_line(
    messages: int, data_time: float | None, rate: float, fraction: float | None = None
) -> str:
    """The text of one progress line (no line ending)."""
    parts = []
    if fraction is not None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = round(fraction * _BAR)
        parts.append(f"[{'#' * filled}{'.' * (_BAR - filled)}] {fraction:4.0%}")
    parts.append(f"{messages:,} msgs")
    if data_time is not None:
        moment = datetime.fromtimestamp(data_time, UTC)
        parts.append("data " + moment.strftime("%Y-%m-%d %H:%M:%S") + "Z")
    parts.append(f"{rate:,.0f} msg/s")
    return "  ".join(parts)


class Progress:
    """Redraws ``progress_line`` on ``stream`` at most every ``interval`` seconds of ``now``."""

    def __init__(self, stream: TextIO, *, now: Callable[[], float], interval: float = 0.25) -> None:
        self._stream = stream
        self._now = now
        self.interval = interval
        self._last = (now(), 0)  # (time, messages) at the last redraw
        self._width = 0
        self.drawn = 0

    def update(self, messages: int, data_time: float | None, fraction: float | None = None) -> None:
        """Redraw if ``interval`` has passed since the last redraw."""
        now = self._now()
        then, before = self._last
        if now - then < self.interval:
            return
        self._last = (now, messages)
        self._draw(progress_line(messages, data_time, (messages - before) / (now - then), fraction))

    def close(self, messages: int, data_time: float | None) -> None:
        """Draw the final state (rate over the whole run is not known here: the last one) and
        end the line, if anything was drawn."""
        if self.drawn:
            now = self._now()
            then, before = self._last
            rate = (messages - before) / (now - then) if now > then else 0.0
            self._draw(progress_line(messages, data_time, rate))
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, text: str) -> None:
        # Pad to the previous width so a shorter line erases the end of a longer one.
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)
        self.drawn += 1
