"""A replay in data time, without trio: frames -> decoded table messages, for exports.

Theory of operation: snapshots and plots must see the store exactly as it was at given moments of
*data* time, between two messages, which a listener (fed through a buffer, behind the store)
cannot promise. So exports drive the store themselves: ``DataTimeScan.messages`` walks a source's
frames (``_replay.iter_frames``) and yields ``(received_at, message)`` for each table message of
the wanted tables, for the caller to sample, then ``Storage.apply``, then note. Frames of other
tables are skipped before decoding: BitMEX writes ``{"table":"NAME",`` first, so the table is
read from the text's first bytes (frames written otherwise are decoded to find out). Frames that
are not table data (welcome, acks, ``pong``) are not data and are skipped; a table frame that is
not JSON, or that the store refuses as malformed, is a ``ReplaySourceError`` naming its file and
line (``apply`` names them for the store's refusal).

``messages``, ``data_time`` and ``fraction`` (files read of all files) are kept for a progress
display. Sans-IO apart from reading files; no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any, Final

import orjson

from .._events import ApplyResult
from .._exceptions import RemoteProtocolError, ReplaySourceError
from .._replay import ReplayFrame, ReplaySource, iter_frames
from .._replay._sources import source_files
from .._storage import Storage

__all__ = ["DataTimeScan", "table_of"]

_PREFIX: Final = '{"table":"'


def table_of(text: str) -> str | None:
    """The table a BitMEX frame is about, read from its first bytes (``None``: not told there)."""
    if not text.startswith(_PREFIX):
        return None
    end = text.find('"', len(_PREFIX))
    return text[len(_PREFIX) : end] if end > 0 else None


class DataTimeScan:
    """The table messages of ``source`` (only ``tables``, if given), in data time order."""

    def __init__(self, source: ReplaySource, *, tables: Collection[str] | None = None) -> None:
        self.source = source
        self.tables = frozenset(tables) if tables is not None else None
        self.files = source_files(source)
        self.messages = 0
        self.data_time: float | None = None
        self._file_index = 0
        self._origin: str | None = None
        self._frame: ReplayFrame | None = None

    @property
    def fraction(self) -> float | None:
        """Files finished of all files (``None`` for a single file: nothing to count)."""
        if len(self.files) < 2:
            return None
        return self._file_index / len(self.files)

    def messages_of(self) -> Iterator[tuple[float, Mapping[str, Any]]]:
        """``(received_at, message)`` for each wanted table message."""
        tables = self.tables
        for frame in iter_frames(self.source):
            if frame.origin != self._origin:
                if self._origin is not None:
                    self._file_index += 1
                self._origin = frame.origin
            text = frame.text
            table = table_of(text)
            if table is not None and tables is not None and table not in tables:
                continue
            if table is None and not text.startswith("{"):
                continue  # "pong" and the like
            try:
                message = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                if table is None:
                    continue
                raise ReplaySourceError(
                    f"a table frame that is not JSON ({exc})", path=frame.origin, line=frame.line
                ) from None
            if type(message) is not dict or "table" not in message:
                continue  # welcome, acks, error replies: not data
            if table is None and tables is not None and message["table"] not in tables:
                continue
            self._frame = frame
            self.messages += 1
            self.data_time = frame.received_at
            yield frame.received_at, message

    def apply(self, storage: Storage, message: Mapping[str, Any]) -> ApplyResult:
        """``storage.apply(message)``; a malformed message names the file and line it came from."""
        try:
            return storage.apply(message)
        except RemoteProtocolError as exc:
            frame = self._frame
            raise ReplaySourceError(
                f"not BitMEX table data: {exc}",
                path=frame.origin if frame else None,
                line=frame.line if frame else None,
            ) from None
