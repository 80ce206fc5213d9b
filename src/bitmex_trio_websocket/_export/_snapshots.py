"""Order-book snapshots at regular steps of data time: the top N levels of each side.

Theory of operation: a replay in data time hands every message, with the time it was received,
to ``BookSampler.advance(t)`` *before* applying it to the ``Storage``, then the result to
``note``. Snapshot times are the multiples of ``every`` seconds since the Unix epoch (so two
exports of overlapping data share their snapshot times); ``advance(t)`` emits, for each such time
``s`` with ``s < t`` not yet emitted, one row per book: the state after every message received at
or before ``s``. ``finish`` emits the one due at the final message's own time, if any. A book is
sampled from the first snapshot time at or after its first change (its partial) on; a quiet
stretch of data gives one row per step all the same (the book was that, at each of those times).

Each row: ``timestamp`` (the snapshot time, BitMEX's text form), ``symbol``, then level by level
``bid_0_price``, ``bid_0_size``, ``ask_0_price``, ``ask_0_size``, ``bid_1_price`` ... (level 0 is
the best); levels the book does not have are null. ``types`` declares the columns in BitMEX's
type names, so a Parquet file of snapshots is typed even where a level was always empty.
Sans-IO: time comes from the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .._events import ApplyResult
from .._storage import Storage
from ._columns import timestamp_text

__all__ = ["BookSampler", "snapshot_types"]


def snapshot_types(depth: int) -> dict[str, str]:
    """The snapshot rows' fields in order, with their BitMEX type names."""
    types = {"timestamp": "timestamp", "symbol": "symbol"}
    for level in range(depth):
        for side in ("bid", "ask"):
            types[f"{side}_{level}_price"] = "float"
            types[f"{side}_{level}_size"] = "long"
    return types


class BookSampler:
    """Snapshots of ``table``'s books every ``every`` seconds of data time; see the module doc.

    ``symbols``: the books to sample (default: every symbol of ``table`` as it appears).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        depth: int,
        every: float,
        table: str = "orderBookL2",
        symbols: Sequence[str] | None = None,
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        if not every > 0 or not math.isfinite(every):
            raise ValueError("every must be a positive number of seconds")
        self.storage = storage
        self.depth = depth
        self.every = every
        self.table = table
        self._only = frozenset(symbols) if symbols is not None else None
        self._symbols: dict[str, None] = {}  # sampled books, in first-seen order
        self._step: int | None = None  # index of the next snapshot time (None: no book yet)
        self._last_t: float | None = None

    def advance(self, t: float) -> list[dict[str, Any]]:
        """Snapshots due before a message received at ``t`` (call it before applying that)."""
        rows: list[dict[str, Any]] = []
        if self._step is not None:
            while self._step * self.every < t:
                rows.extend(self._snapshot(self._step * self.every))
                self._step += 1
        if self._last_t is None or t > self._last_t:
            self._last_t = t
        return rows

    def note(self, result: ApplyResult, t: float) -> None:
        """Take note of a message received at ``t`` and just applied: new books join."""
        if result.table != self.table:
            return
        for change in result.changes:
            symbol = change.symbol
            if symbol is None or symbol in self._symbols:
                continue
            if self._only is not None and symbol not in self._only:
                continue
            self._symbols[symbol] = None
            if self._step is None:  # the first snapshot time at or after the first book
                self._step = math.ceil(t / self.every)

    def finish(self) -> list[dict[str, Any]]:
        """The snapshot due at the last message's own time, if one falls exactly there."""
        rows: list[dict[str, Any]] = []
        if self._step is not None and self._last_t is not None:
            while self._step * self.every <= self._last_t:
                rows.extend(self._snapshot(self._step * self.every))
                self._step += 1
        return rows

    def _snapshot(self, at: float) -> list[dict[str, Any]]:
        rows = []
        stamp = timestamp_text(at)
        for symbol in self._symbols:
            book = self.storage.book(symbol, self.table)
            bids, asks = book.bids[: self.depth], book.asks[: self.depth]
            row: dict[str, Any] = {"timestamp": stamp, "symbol": symbol}
            for level in range(self.depth):
                bid = bids[level] if level < len(bids) else (None, None)
                ask = asks[level] if level < len(asks) else (None, None)
                row[f"bid_{level}_price"], row[f"bid_{level}_size"] = bid
                row[f"ask_{level}_price"], row[f"ask_{level}_size"] = ask
            rows.append(row)
        return rows
