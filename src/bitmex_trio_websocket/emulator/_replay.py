"""Replay sources for the emulator: load recorded history and cut it into per-topic streams.

Theory of operation: ``load_recording`` reads any source the client's replay reads
(``_replay.iter_frames``): a recording (JSON Lines, one object per websocket frame,
``{"t": <epoch seconds>, "dir": "recv"|"send", "frame": "<text>"}``, plain or gzip; the capture
shape of other projects' test data, ``"ts"``/``"server"``/``"raw"`` or ``"msg"``, too), a Tardis
raw slice file (``<timestamp> <message>`` lines, plain, gzip or zstd), a folder of slices such as a
Tardis client's cache folder (in time order), or a list of these. Formats are told by content, and
unreadable input is a ``ReplaySourceError`` naming the file and line. Only received frames that
are table messages are data; welcomes, acks, errors and our own commands are skipped (the
emulator sends its own welcome and acks, as BitMEX did, so any BitMEX client can consume the
history). Real BitMEX sessions replay as they are, pre-2023 price-less book updates included:
frames are passed through unchanged whenever possible, never re-derived. ``parse_recording``
reads recording lines already in memory.

The whole source is held in memory, decoded (each session replays it from its start, topic by
topic), which suits recordings and hours of slices; for days of history use
``open_bitmex_replay``, which streams.

Replaying a subscription ``(table, symbol)`` walks the table's frames in recorded order and yields a
frame only once the slice it concerns has *started*, i.e. after its recorded partial: a partial
whose filter names the symbol starts that symbol, a whole-table partial (filter without a symbol)
starts every symbol. Deltas recorded before their partial are therefore never replayed, exactly as
a correct client would have dropped them. When a symbol subscription meets a whole-table partial or
a delta whose rows span several symbols, the frame is re-encoded with only that symbol's rows (and
the partial's filter narrowed to the symbol, as BitMEX would have sent it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .._protocol import ACTIONS
from .._replay import ReplaySource, iter_frames

__all__ = ["RecordedFrame", "Recording", "load_recording", "parse_recording"]

_RECEIVED = frozenset({"recv", "server"})


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One recorded table message.

    ``symbol`` is the one symbol the frame concerns (the partial's filter symbol, or the symbol
    shared by all its rows); ``None`` with ``whole`` set for whole-table partials and for rows
    without a symbol; ``mixed`` when the rows span several symbols.
    """

    index: int
    t: float
    table: str
    action: str
    symbol: str | None
    whole: bool
    mixed: bool
    text: str = field(repr=False)
    message: Mapping[str, Any] = field(repr=False, compare=False)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _row_symbol(row: Any) -> str | None:
    symbol = row.get("symbol") if isinstance(row, dict) else None
    return symbol if isinstance(symbol, str) else None


class Recording:
    """The table frames of a recorded session, indexed by table, in recorded order."""

    def __init__(self, frames: Iterable[RecordedFrame]) -> None:
        self.frames: tuple[RecordedFrame, ...] = tuple(frames)
        self._by_table: dict[str, list[RecordedFrame]] = {}
        symbols: set[str] = set()
        for frame in self.frames:
            self._by_table.setdefault(frame.table, []).append(frame)
            if frame.symbol is not None:
                symbols.add(frame.symbol)
            if frame.mixed or frame.whole:
                symbols.update(s for s in map(_row_symbol, frame.message["data"]) if s is not None)
        self.symbols: frozenset[str] = frozenset(symbols)
        self.tables: frozenset[str] = frozenset(self._by_table)

    def __len__(self) -> int:
        return len(self.frames)

    def keys_of(self, table: str) -> list[str]:
        """The ``keys`` of the table's first recorded partial (``[]`` if it has none)."""
        for frame in self._by_table.get(table, ()):
            keys = frame.message.get("keys")
            if frame.action == "partial" and isinstance(keys, list):
                return [k for k in keys if isinstance(k, str)]
        return []

    def has_partial(self, table: str, symbol: str | None) -> bool:
        """Whether a subscription ``(table, symbol)`` has a recorded partial to start from."""
        return any(
            frame.action == "partial" and (frame.whole or symbol is None or frame.symbol == symbol)
            for frame in self._by_table.get(table, ())
        )

    def topic_frames(self, table: str, symbol: str | None) -> Iterator[RecordedFrame]:
        """The frames a subscription ``(table, symbol)`` replays, from its partial on, in order.

        Yielded frames are ``RecordedFrame`` values whose ``text`` is what to send: the recorded
        text when it fits the subscription as it is, a narrowed re-encoding otherwise.
        """
        whole_started = False
        started: set[str | None] = set()
        for frame in self._by_table.get(table, ()):
            if frame.action == "partial":
                if frame.whole:
                    if symbol is None:
                        whole_started = True
                        yield frame
                    else:
                        started.add(symbol)
                        yield self._narrow(frame, symbol, partial=True)
                elif symbol is None or frame.symbol == symbol:
                    started.add(frame.symbol)
                    yield frame
                continue
            if frame.mixed:
                rows = [
                    row
                    for row in frame.message["data"]
                    if (symbol is None or _row_symbol(row) == symbol)
                    and (whole_started or _row_symbol(row) in started)
                ]
                if len(rows) == len(frame.message["data"]):
                    yield frame
                elif rows:
                    yield self._with_rows(frame, rows)
                continue
            if symbol is not None and frame.symbol != symbol:
                continue
            if whole_started or frame.symbol in started:
                yield frame

    @staticmethod
    def _with_rows(frame: RecordedFrame, rows: list[Any]) -> RecordedFrame:
        message = {**frame.message, "data": rows}
        symbol = _row_symbol(rows[0]) if rows else None
        return RecordedFrame(
            frame.index, frame.t, frame.table, frame.action, symbol, False, False,
            _dumps(message), message,
        )  # fmt: skip

    def _narrow(self, frame: RecordedFrame, symbol: str, *, partial: bool) -> RecordedFrame:
        rows = [row for row in frame.message["data"] if _row_symbol(row) == symbol]
        message = {**frame.message, "data": rows}
        if partial:
            filt = frame.message.get("filter")
            message["filter"] = {**(filt if isinstance(filt, dict) else {}), "symbol": symbol}
        return RecordedFrame(
            frame.index, frame.t, frame.table, frame.action, symbol, False, False,
            _dumps(message), message,
        )  # fmt: skip


def _frame_of(index: int, t: float, text: str) -> RecordedFrame | None:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None  # recorded garbage (or a heartbeat): not data
    if not isinstance(message, dict):
        return None
    table, action, data = message.get("table"), message.get("action"), message.get("data")
    if not isinstance(table, str) or action not in ACTIONS or not isinstance(data, list):
        return None
    if action == "partial":
        filt = message.get("filter")
        symbol = filt.get("symbol") if isinstance(filt, dict) else None
        if isinstance(symbol, str):
            return RecordedFrame(index, t, table, action, symbol, False, False, text, message)
        return RecordedFrame(index, t, table, action, None, True, False, text, message)
    symbols = {_row_symbol(row) for row in data}
    if len(symbols) > 1:
        return RecordedFrame(index, t, table, action, None, False, True, text, message)
    only = next(iter(symbols)) if symbols else None
    return RecordedFrame(index, t, table, action, only, False, False, text, message)


def parse_recording(lines: Iterable[str | bytes]) -> Recording:
    """A ``Recording`` from JSON Lines (``ValueError`` naming the line for a broken line)."""
    frames: list[RecordedFrame] = []
    last_t = 0.0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"recording line {number} is not JSON: {exc}") from None
        if not isinstance(row, dict) or row.get("dir") not in _RECEIVED:
            continue
        text = row.get("frame", row.get("raw"))
        if text is None and "msg" in row:
            text = _dumps(row["msg"])
        if not isinstance(text, str):
            continue
        t = row.get("t", row.get("ts"))
        if isinstance(t, int | float) and not isinstance(t, bool):
            last_t = float(t)
        frame = _frame_of(len(frames), last_t, text)
        if frame is not None:
            frames.append(frame)
    return Recording(frames)


def load_recording(source: ReplaySource) -> Recording:
    """Read a replay source: a recording, Tardis slices, a folder of them or a list (see the
    module docstring); ``ReplaySourceError`` naming the file and line for what cannot be read."""
    frames: list[RecordedFrame] = []
    for received in iter_frames(source):
        frame = _frame_of(len(frames), received.received_at, received.text)
        if frame is not None:
            frames.append(frame)
    return Recording(frames)
