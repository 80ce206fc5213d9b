"""The replayed market's read position in a replay source: one frame at a time, streamed.

Theory of operation: ``Cursor`` walks ``_replay.iter_batches`` (the client's replay reader: files
read in ~1 MiB blocks of whole lines, decompressed as they go) and hands out one frame at a time
with its data time (the recorded receive time). It holds only the batch being read, so memory is
bounded by one block whatever the source's length; ``held`` says how many frames are read from
disk but not yet handed out (what the bounded-memory test counts). A recorder's disconnect (an
empty line in Tardis slices) comes out as a frame with ``None`` for text. Sans-IO apart from
reading the files: no clock, no trio. ``ReplaySourceError`` from the reader passes through.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from ..._replay._sources import FrameBatch, Gap, ReplaySource, iter_batches

__all__ = ["Cursor"]

_DONE: Final = -1


class Cursor:
    """Frames of a replay source in order, peeked one ahead (see the module docstring)."""

    __slots__ = ("_batch", "_batches", "_end", "_gap", "_index", "line", "origin", "read")

    def __init__(self, source: ReplaySource) -> None:
        self._batches: Iterator[FrameBatch | Gap] | None = iter_batches(source, disconnects=True)
        self._batch: FrameBatch | None = None
        self._gap: Gap | None = None
        self._index = 0
        self._end = 0
        self.read = 0  # frames (and disconnects) handed out so far
        self.origin = ""  # the file and line of the frame handed out last (for errors)
        self.line = 0

    @property
    def held(self) -> int:
        """Frames read from the source and not yet handed out."""
        return (self._end - self._index) + (self._gap is not None)

    def next_time(self) -> float | None:
        """The data time of the next frame, ``None`` at the end of the source."""
        if not self._fill():
            return None
        if self._gap is not None:
            return self._gap.received_at
        assert self._batch is not None
        return self._batch.time_of(self._index)

    def take(self) -> tuple[float, bytes | str | None]:
        """The next frame: ``(data time, text)``; the text is ``None`` for a disconnect and may
        be bytes (a plain slice line's message, ASCII). Call only after ``next_time`` said
        there is one."""
        self.read += 1
        gap = self._gap
        if gap is not None:
            self._gap = None
            self.origin, self.line = gap.origin, gap.line
            return gap.received_at, None
        batch = self._batch
        assert batch is not None
        index = self._index
        self._index = index + 1
        t = batch.time_of(index)
        self.origin, self.line = batch.origin, batch.line_of(index)
        if batch.times is None:
            return t, batch.payloads[index][batch.offset :]
        return t, batch.payloads[index]

    def close(self) -> None:
        """Stop reading (closes the file being read)."""
        batches = self._batches
        self._batches = None
        self._batch = None
        self._gap = None
        self._index = self._end = 0
        if batches is not None:
            batches.close()  # type: ignore[attr-defined]

    def _fill(self) -> bool:
        if self._gap is not None or self._index < self._end:
            return True
        batches = self._batches
        self._batch = None
        while batches is not None:
            item = next(batches, None)
            if item is None:
                self._batches = None
                return False
            if type(item) is Gap:
                self._gap = item
                return True
            assert type(item) is FrameBatch
            if len(item):
                self._batch, self._index, self._end = item, 0, len(item)
                return True
        return False
