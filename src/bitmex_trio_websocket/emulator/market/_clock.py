"""What the market's clock brings: quote messages, index prints, bin closes, funding, insurance.

Theory of operation: BitMEX published some tables on a timer, not per event. ``Timed`` owns
those schedules and the state they need, and ``Market.step`` calls ``advance(now, out)`` before
its random event whenever ``now`` reached ``next_due`` (one float comparison a step otherwise):

* **quotes**: the quote rows the books made during a second go out with the first step of the
  next second, after its event (``quotes_due``/``flush_quotes``), one ``quote`` message per
  symbol, its last row the top of the book as it then is (2021 capture: a message a second
  at ``x.015``, 1 to 48 rows, ``../shared/captures/cryptofeed_BITMEX.ws.1.0.jsonl`` lines 256,
  403, 564, ...);
* **index prints** every ``INDEX_PUBLISH_INTERVAL`` seconds (``_indices``);
* **bins**: ``tradeBin*``/``quoteBin*`` inserts when a bin ends (``_bins``);
* **funding** at 04:00, 12:00 and 20:00 UTC: a ``funding`` insert per contract dated then, the
  instruments' next ``fundingTimestamp`` and rates (``Instrument.funding_event``);
* **insurance**: one row per currency a day at 12:00 UTC (``_history``).

``flush_quotes`` sends pending quotes at once (a still market has no next second). Everything is
deterministic: times come from ``now``, chance from the market's ``Random``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from random import Random
from typing import Any

from ._bins import Bins
from ._book import Book
from ._history import History
from ._indices import INDEX_PUBLISH_INTERVAL, IndexInstrument
from ._instruments import FUNDING_INTERVAL
from ._schemas import Delta

__all__ = ["Timed"]

_FUNDING_OFFSET = 4 * 3600.0  # funding times are 04:00 + k * 8 h UTC


class Timed:
    """The market's timed publications; see the module docstring."""

    def __init__(
        self,
        books: Sequence[Book],
        rng: Random,
        fmt: Callable[[float], str],
        start: float,
        seed: int,
    ) -> None:
        self._books = books
        self._rng = rng
        self._fmt = fmt
        ts = fmt(start)
        self.indices: dict[str, IndexInstrument] = {}
        for book in books:
            name = book.spec.index_symbol
            if name not in self.indices:
                self.indices[name] = IndexInstrument(book.instrument, ts)
        self.bins = Bins(start, fmt)
        for book in books:
            decimals = book.contract.decimals
            self.bins.add_symbol(book.symbol, book.trade["price"], decimals, book.quote, start)
        for index in self.indices.values():
            self.bins.add_symbol(index.symbol, index.last, 2, None, start)
        self.history = History([book.spec for book in books], start, fmt, seed)
        self.funding: list[dict[str, Any]] = []
        previous = ((start - _FUNDING_OFFSET) // FUNDING_INTERVAL) * FUNDING_INTERVAL
        for book in books:  # the last funding paid before the market opened
            self.funding.append(book.instrument.funding_row(fmt, previous + _FUNDING_OFFSET))
        self._next_funding = previous + _FUNDING_OFFSET + FUNDING_INTERVAL
        self.next_quotes = math.floor(start) + 1.0
        self._next_index = (math.floor(start / INDEX_PUBLISH_INTERVAL) + 1) * INDEX_PUBLISH_INTERVAL
        self.next_due = start
        self._update_due()

    def _update_due(self) -> None:
        self.next_due = min(
            self._next_index,
            self.bins.next_due,
            self._next_funding,
            self.history.next_insurance,
        )

    def quotes_due(self, now: float, out: list[Delta]) -> None:
        """The pending quote rows, if ``now`` is in a later second than they were made."""
        if now >= self.next_quotes:
            self.flush_quotes(out)
            self.next_quotes = math.floor(now) + 1.0

    def flush_quotes(self, out: list[Delta]) -> None:
        for book in self._books:
            if book.pending_quotes:
                out.append(Delta("quote", "insert", book.symbol, book.pending_quotes))
                book.pending_quotes = []

    def advance(self, now: float, out: list[Delta]) -> list[str]:
        """Everything due by ``now``, in time order per kind. Returns the symbols whose
        instrument changed in a way positions care about (funding)."""
        if now >= self._next_index:
            ts = self._fmt(self._next_index)
            for index in self.indices.values():
                index.publish(ts, out)
                self.bins.record(index.symbol, [index.trade])
            self._next_index = (
                math.floor(now / INDEX_PUBLISH_INTERVAL) + 1
            ) * INDEX_PUBLISH_INTERVAL
        if now >= self.bins.next_due:
            for book in self._books:
                self.bins.quote(book.symbol, book.quote)
            self.bins.close_due(now, out)
        funded: list[str] = []
        while now >= self._next_funding:
            ts = self._fmt(self._next_funding)
            for book in self._books:
                book.instrument.funding_time = self._next_funding
                self.funding.append(book.instrument.funding_event(self._rng, self._fmt, ts, out))
                funded.append(book.symbol)
            self._next_funding += FUNDING_INTERVAL
        rows = self.history.insurance_due(now)
        if rows:
            out.append(Delta("insurance", "insert", None, rows))
        self._update_due()
        return funded
