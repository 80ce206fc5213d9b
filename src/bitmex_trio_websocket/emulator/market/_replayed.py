"""A replayed market: BitMEX's history as the market the emulator serves and trades against.

Theory of operation
-------------------
``ReplayedMarket`` is a ``Venue`` (``_venue``) whose market is a replay source: anything
``open_bitmex_replay`` reads from disk (recordings, Tardis slice files plain/gzip/zstd, folders
of them, lists). The source is streamed (``_replayed_cursor``: one block of lines held at a
time), never loaded whole, so a day of history costs the memory of its books, not of its file.

Time is the data's time: the recorded receive time of each frame. ``start`` is the first
frame's; ``next_time()`` says when the next frame happens, and ``step(now)`` consumes every frame
recorded at or before ``now``. The server's pump sleeps until ``next_time()`` (paced on trio's
clock, or as fast as possible) and calls ``step``.

Each frame that is a public table message is applied to a ``Storage`` (the client's store: the
emulator's image of the market is exactly what a client replaying the same frames holds) and
becomes what the server sends:

* a delta (insert/update/delete) goes out as recorded, cut to the rows the store accepted: rows
  of a slice that has had no partial yet are dropped (BitMEX sent deltas before partials; a
  correct client drops them) and so are rows the store reports as violations. Pre-2023 book
  updates carry no price and go out that way (as BitMEX sent them); the store resolves their
  price from the level's id, which is how their level changes are known;
* a partial cannot be sent as one (subscribers already hold the table), so it goes out as the
  deltas that turn the image before it into the image after it: deletes, updates, inserts
  (keyless tables, trades and quotes, get nothing: a partial's trades are history, not news).
  The first partial of a slice is therefore an insert of all its rows, and a re-partial after
  a recorder's reconnect repairs whatever the gap broke;
* its effects on the paper exchange (``Exchange``) follow at once, and the private deltas those
  cause follow the public ones of the same frame: ``on_level`` for every changed level of the
  symbol's book table (side, price, new visible size), ``on_trade`` per trade row (the
  aggressor's side), ``on_prices`` per ``instrument`` row with ``lastPrice``, ``markPrice`` or
  ``indicativeSettlePrice`` (an index's ``lastPrice`` reaches the contracts that reference it
  as their ``index``). Times are receive times, so a trade and the book update it caused
  (separate frames) are a few milliseconds apart: the exchange reconciles them within
  ``REPLAY_QUEUE_WINDOW`` (the fill model's ``queue_window``).

Two things the record implies are made here. Funding (``_replayed_funding``): a ``funding``
row is paid when it is replayed; without a ``funding`` partial, the ``instrument`` rows'
``fundingTimestamp``/``fundingRate`` are paid when data time reaches that time (``next_time``
returns it when it comes before the next frame), through ``Exchange.on_funding``. Book tables not
recorded (``_replayed_derived``): ``orderBookL2_25`` and ``orderBook10`` are derived from the
symbol's recorded book once a client subscribes them, their deltas sent after the book's.

Frames that are not public table data (welcomes, acks, errors, the recorder's private tables)
are skipped and counted in ``ignored``; a recorder's disconnect is counted in ``gaps`` and
changes nothing (the partials that follow it repair the image, see above). A table message the
store rejects raises ``ReplaySourceError`` naming the file and line, from ``step``.

No market impact: history cannot react to our orders. ``_replayed_book`` is the ``Liquidity``
the exchange takes from: the recorded book, minus what our orders took from a level until the
recording next changes that level. Trades of ours are not published (the public tape is the
record's).

What exists when: a table, and each symbol in it, has no state until its partial has been
replayed. ``symbols`` (tradable contracts) and ``indices`` grow as the data shows them: a
contract joins ``symbols`` when its book's first partial has been replayed (its contract from
its ``instrument`` row, else ``_replayed_contracts``' fallback) and joins the exchange
(``Exchange.add_contract``); before that the exchange does not know the symbol and refuses its
orders ("Invalid symbol"), a snapshot of it is empty and its rows are ``[]``. A symbol recorded
without ``instrument`` rows is marked at its book's mid when it starts, then at each recorded
trade's price (the only price there is). ``snapshot`` gives partials of the recorded tables
(keys and types as recorded, else BitMEX's defaults) and the exchange's private tables;
``public_rows`` the REST API's reads. Modules: ``_replayed_cursor`` (reading the source),
``_replayed_book`` (the ``Liquidity``), ``_replayed_images`` (partials as deltas),
``_replayed_contracts`` (contracts from the data), ``_replayed_funding`` (when funding is paid),
``_replayed_derived`` (the book tables not recorded).

Why over 600 lines: the facade keeps the frame dispatch and the exchange's events together
(each event needs the store's state just before or after its frame); the parts that stand alone
are in the modules above.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from random import Random
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..._exceptions import RemoteProtocolError, ReplaySourceError
from ..._protocol import ACTIONS, PRIVATE_TABLES
from ..._replay._sources import ReplaySource, source_files
from ..._storage import BOOK_TABLES, Storage
from .._texts import FALLBACK_KEYS
from ._instruments import Contract
from ._replayed_book import BOOK_TABLE_ORDER, RecordedBooks
from ._replayed_contracts import contract_from_book, contract_from_instrument, is_index
from ._replayed_cursor import Cursor
from ._replayed_derived import DERIVABLE, DerivedBooks
from ._replayed_funding import FundingSchedule, Settlement
from ._replayed_images import Meta, diff_rows, meta_of
from ._schemas import (
    PRIVATE_TABLES_SERVED,
    PUBLIC_TABLES_SERVED,
    TABLE_SCHEMAS,
    Delta,
    Snapshot,
    TimeFormatter,
    UnknownTableError,
)

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ._venue import Liquidity

__all__ = ["REPLAY_QUEUE_WINDOW", "ExchangeFactory", "ReplayedMarket"]

log = logging.getLogger("bitmex_trio_websocket.emulator")

# Frames are keyed by receive time, and BitMEX sent a trade and the book update it caused as two
# frames: in the 2021 capture (../shared/captures/cryptofeed_BITMEX.ws.1.0.jsonl) 14 of the 15
# trades whose level update can be told arrived 0.10-0.34 ms before it (XBTUSD, MATICUSDT), and
# one 286 ms before it (UNIUSDT). A window of 0.5 s covers them all with room; a wider window
# only errs late (a cancel ahead is applied later, leftover trade volume may explain a cancel),
# a narrower one counts the trade's volume off the queue twice (fills too early).
REPLAY_QUEUE_WINDOW: Final = 0.5

ExchangeFactory = Callable[
    [Mapping[str, Contract], "Liquidity", Random, Callable[[float], str], Mapping[str, float]],
    "Exchange",
]

_BOOK10: Final = "orderBook10"
_FUNDING: Final = "funding"
_KEYLESS_DELTA: Final = frozenset({"insert"})
_SCOPED: Final = ("order", "execution", "position")  # private tables a symbol narrows


def _default_factory(queue_window: float) -> ExchangeFactory:
    def build(
        contracts: Mapping[str, Contract],
        liquidity: Liquidity,
        rng: Random,
        fmt: Callable[[float], str],
        marks: Mapping[str, float],
    ) -> Exchange:
        from ..exchange import Exchange  # the exchange imports this package: import late

        return Exchange(contracts, liquidity, rng, fmt, marks=marks, queue_window=queue_window)

    return build


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class ReplayedMarket:
    """A ``Venue`` serving a replay source as the market (see the module docstring).

    ``seed`` and the source's file names key the synthetic ``trdMatchID``s and the exchange's
    randomness, so two runs over the same source make the same bytes. ``max_trades`` bounds
    each keyless table (trades, quotes: the ``trade`` rows the REST API reads back).
    ``exchange_factory`` builds the paper exchange (default: ``emulator.exchange.Exchange``)
    from the contracts known at the start (none), this market's ``Liquidity``, a seeded
    ``Random``, the time formatter and the mark prices; contracts join it through its
    ``add_contract`` as the data shows them. ``queue_window`` is the default exchange's
    (``Exchange(queue_window=)``): times here are receive times, and a trade and the book
    update it caused come in frames up to ``REPLAY_QUEUE_WINDOW`` apart (see its comment).
    """

    def __init__(
        self,
        source: ReplaySource,
        *,
        seed: int = 1,
        max_trades: int = 1000,
        exchange_factory: ExchangeFactory | None = None,
        queue_window: float = REPLAY_QUEUE_WINDOW,
    ) -> None:
        names = "|".join(os.path.basename(name) for name in source_files(source))
        self._key = f"{seed}/{names}"
        self._storage = Storage(max_table_len=max_trades, closed_order_ttl=None)
        self._books = RecordedBooks(self._storage, f"replayed-trade/{self._key}")
        self._cursor = Cursor(source)
        self._fmt = TimeFormatter()
        self._contracts: dict[str, Contract] = {}  # tradable: have a book
        self._pending: dict[str, Contract] = {}  # from instrument rows, waiting for a book
        self._from_instrument: set[str] = set()
        self._marks: dict[str, float] = {}
        self._references: dict[str, list[str]] = {}  # index -> contracts referencing it
        self._meta: dict[str, Meta] = {}
        self.symbols: tuple[str, ...] = ()
        self.indices: tuple[str, ...] = ()
        self.start: float | None = self._cursor.next_time()
        self.now: float = self.start if self.start is not None else 0.0
        self.frames = 0  # frames consumed (disconnects included)
        self.ignored = 0  # frames that are not public table data
        self.gaps = 0  # recorder's disconnects
        self.violations = 0  # store violations (rows not sent)
        self._derived = DerivedBooks(self._storage, self._fmt, self._legacy_l2)
        self._funding = FundingSchedule(self.now)
        factory = exchange_factory or _default_factory(queue_window)
        self._exchange = factory(
            self._contracts, self._books, Random(f"replayed-exchange/{self._key}"), self._fmt,
            self._marks,
        )  # fmt: skip

    # ------------------------------------------------------------------ Venue

    @property
    def exchange(self) -> Exchange:
        return self._exchange

    @property
    def liquidity(self) -> RecordedBooks:
        """The visible book the exchange takes from (``Liquidity``)."""
        return self._books

    @property
    def storage(self) -> Storage:
        """The replayed public tables, as a client replaying the same frames holds them."""
        return self._storage

    @property
    def held(self) -> int:
        """Frames read from the source but not yet stepped (one block at most)."""
        return self._cursor.held

    @property
    def funding_sources(self) -> Mapping[str, str]:
        """Symbol -> where its last funding payment came from: ``"funding"`` (the recorded
        table's rows) or ``"instrument"`` (the rows' ``fundingTimestamp``/``fundingRate``)."""
        return self._funding.sources

    @property
    def unfunded(self) -> tuple[str, ...]:
        """Tradable symbols found, at a funding time, to have no funding recorded (no
        ``funding`` partial, no ``instrument`` row): they pay none."""
        return self._funding.unfunded

    def next_time(self) -> float | None:
        """The data time of the next frame, or of an announced funding payment due before it;
        ``None`` once the source is exhausted."""
        t = self._cursor.next_time()
        due = self._funding.next_due
        if t is not None and due is not None and due < t:
            return max(due, self.now)
        return t

    def step(self, now: float) -> list[Delta]:
        """Consume every frame recorded at or before ``now``, settling the funding due on the
        way; the deltas to send, in order."""
        out: list[Delta] = []
        cursor = self._cursor
        funding = self._funding
        while True:
            t = cursor.next_time()
            if t is None:
                break
            due = funding.next_due
            if due is not None and due <= now and due <= t:
                self._settle_announced(max(due, self.now), out)
                continue
            if t > now:
                break
            t, text = cursor.take()
            self.frames += 1
            self.now = t
            if text is None:
                self.gaps += 1
                continue
            self._frame(t, text, out)
        if now > self.now:
            self.now = now
        for symbol in funding.check(self.now, self.symbols, self._funding_recorded):
            log.warning(
                "history has no funding for %s (no funding or instrument rows recorded): its "
                "positions pay none",
                symbol,
            )
        return out

    def close(self) -> None:
        """Stop reading the source (the file being read is closed)."""
        self._cursor.close()

    def enable_table(self, table: str) -> None:
        """A client subscribed ``table``: the book tables not recorded are derived from now."""
        self._check_table(table)
        self._derived.enable(table, self.now)

    def disable_table(self, table: str) -> None:
        self._check_table(table)
        self._derived.disable(table)

    def snapshot(
        self, table: str, symbol: str | None = None, account: int | None = None
    ) -> Snapshot:
        """The partial image of ``table`` now (private tables need ``account``): recorded rows
        with the recorded partial's keys and types (BitMEX's defaults for a table not yet
        seen); an unknown symbol, or a table not recorded, gives an empty image."""
        if table in PRIVATE_TABLES_SERVED:
            if account is None:
                raise ValueError(f"{table!r} is private: snapshot() needs an account")
            scoped = symbol if table in _SCOPED else None
            flt: dict[str, Any] = {"account": account}
            if scoped is not None:
                flt["symbol"] = scoped
            rows = self._exchange.rows(table, account, scoped)
            return TABLE_SCHEMAS[table].snapshot(rows, flt)
        self._check_table(table)
        rows = self._rows(table, symbol)
        meta = self._meta.get(table)
        if table in DERIVABLE:
            derived = self._derived.rows(table, symbol, self.now)
            if derived:
                rows.extend(derived)
                if meta is None and table != _BOOK10:
                    meta = self._meta.get("orderBookL2")  # the columns derived rows carry
        flt = {} if symbol is None else {"symbol": symbol}
        if meta is not None:
            return Snapshot(
                list(meta.keys), dict(meta.types), dict(meta.foreign_keys),
                dict(meta.attributes), rows, flt,
            )  # fmt: skip
        schema = TABLE_SCHEMAS.get(table)
        if schema is not None:
            return schema.snapshot(rows, flt)
        return Snapshot(list(FALLBACK_KEYS.get(table, [])), {}, {}, {}, rows, flt)

    def public_rows(self, table: str, symbol: str | None = None) -> list[dict[str, Any]]:
        """Rows for the REST API: ``instrument`` (indices too), ``orderBookL2`` (the book the
        exchange trades against, full depth as recorded, in a partial's order), ``trade``
        (the recent ones kept, oldest first), ``funding``; any other recorded table as held."""
        if table == "orderBookL2":
            symbols = self.symbols if symbol is None else (symbol,)
            rows: list[dict[str, Any]] = []
            for name in symbols:
                book = self._books.book_table(name)
                if book is not None and book != _BOOK10:
                    rows.extend(self._storage.rows(book, name))
            return rows
        return self._rows(table, symbol)

    def add_account(
        self, account: int, *, balance_xbt_sats: int = 10**8, balance_usdt: int = 0
    ) -> None:
        """A new empty account (``balance_usdt`` in USDt, millionths of a USDT)."""
        self._exchange.add_account(
            account, {"XBt": balance_xbt_sats, "USDt": balance_usdt}, self.now
        )

    # ------------------------------------------------------------------ frames

    def _frame(self, t: float, text: bytes | str, out: list[Delta]) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.ignored += 1  # recorded garbage or a heartbeat: not data
            return
        if type(message) is not dict:
            self.ignored += 1
            return
        table = message.get("table")
        action = message.get("action")
        data = message.get("data")
        if (
            type(table) is not str
            or action not in ACTIONS
            or type(data) is not list
            or table in PRIVATE_TABLES
        ):
            self.ignored += 1  # welcome, acks, errors, the recorder's own account
            return
        private: list[Delta] = []
        try:
            if action == "partial":
                self._partial(table, message, data, t, out, private)
            else:
                self._delta(table, action, message, data, t, out, private)
        except RemoteProtocolError as exc:
            cursor = self._cursor
            raise ReplaySourceError(
                f"a table message the store rejects ({exc})", path=cursor.origin, line=cursor.line
            ) from None
        out.extend(private)

    def _delta(
        self,
        table: str,
        action: str,
        message: dict[str, Any],
        data: list[Any],
        t: float,
        out: list[Delta],
        private: list[Delta],
    ) -> None:
        storage = self._storage
        is_book = table in BOOK_TABLES
        held: dict[Any, tuple[float, int]] = {}
        if is_book and action == "update":
            held = self._held_levels(table, data)
        book10_before: dict[str, tuple[list[Any], list[Any]]] = {}
        if table == _BOOK10:
            book10_before = self._book10_levels(data)
        result = storage.apply(message)
        if result.violations:
            self.violations += len(result.violations)
        if not result.changes:
            return
        whole = not result.dropped and not result.violations
        keys = storage.keys.get(table)
        for change in result.changes:
            symbol = change.symbol
            if whole and len(result.changes) == 1:
                rows = data
            elif whole or not keys or table == _BOOK10:
                rows = [row for row in data if row.get("symbol") == symbol]
            else:
                accepted = {tuple(row.get(k) for k in keys) for row in change.rows}
                rows = [
                    row
                    for row in data
                    if row.get("symbol") == symbol and tuple(row.get(k) for k in keys) in accepted
                ]
            out.append(Delta(table, action, symbol if isinstance(symbol, str) else None, rows))
            if not isinstance(symbol, str):
                continue
            if is_book:
                if self._books.book_table(symbol) == table:
                    self._book_delta(symbol, action, change.rows, held, t, private)
                    self._derived.book_delta(symbol, action, change.rows, t, out)
            elif table == "trade" and action == "insert":
                self._trades(symbol, rows, t, private)
            elif table == "instrument":
                self._instrument_rows(change.rows, rows, t, private)
            elif table == _BOOK10 and self._books.book_table(symbol) == _BOOK10:
                self._book10_changed(symbol, book10_before.get(symbol), t, private)
            elif table == _FUNDING:
                self._settle(self._funding.recorded_rows(change.rows), t, private)

    def _partial(
        self,
        table: str,
        message: dict[str, Any],
        data: list[Any],
        t: float,
        out: list[Delta],
        private: list[Delta],
    ) -> None:
        storage = self._storage
        filt = message.get("filter")
        scope = filt.get("symbol") if isinstance(filt, dict) else None
        scope = scope if isinstance(scope, str) else None
        keys = message.get("keys")
        before: list[dict[str, Any]] = []
        keyed = isinstance(keys, list) and bool(keys)
        if keyed and (scope is None or storage.has_partial(table, scope)):
            before = storage.rows(table, scope)
        if keyed and table in DERIVABLE:
            before.extend(self._derived.take_over(table, scope))  # subscribers hold these
        result = storage.apply(message)
        self._meta[table] = meta_of(table, message, data, self._meta.get(table))
        if result.violations:
            self.violations += len(result.violations)
        if not keyed:
            return  # keyless: a partial's rows are history, nothing to send
        assert isinstance(keys, list)
        after = storage.rows(table, scope)
        if table == _FUNDING:
            self._settle(self._funding.recorded_rows(after), t, private)
        book10_before = {row.get("symbol"): row for row in before} if table == _BOOK10 else {}
        held_meta = self._meta.get(table)
        legacy = held_meta is not None and held_meta.legacy_book
        deltas, touched = diff_rows(table, keys, before, after, legacy)
        out.extend(deltas)
        symbols = {row.get("symbol") for row in after} | {row.get("symbol") for row in before}
        if scope is not None:
            symbols.add(scope)
        for symbol in sorted(s for s in symbols if isinstance(s, str)):
            if table in BOOK_TABLES or table == _BOOK10:
                self._book_started(symbol)
                if self._books.book_table(symbol) != table:
                    continue
                self._books.forget_symbol(symbol)
                if table != _BOOK10:
                    self._books.rebuild(symbol, table)
                    self._derived.book_reset(symbol, t, out)
                else:
                    old = book10_before.get(symbol)
                    self._book10_changed(symbol, _book10_sides(old), t, private)
                    continue
                levels = [(side, price) for sym, side, price in touched if sym == symbol]
                self._levels_changed(symbol, levels, t, private)
        if table == "instrument":
            self._instrument_rows(after, after, t, private)

    # ------------------------------------------------------------------ the exchange's events

    def _held_levels(self, table: str, data: list[Any]) -> dict[Any, tuple[float, int]]:
        """``(symbol, side, id) -> (price, size)`` of the levels a book update names, read
        before it is applied (the update's row gives only the new ones)."""
        views = self._storage.data.get(table)
        if not views:
            return {}
        held: dict[Any, tuple[float, int]] = {}
        current: Any = None
        sides: Any = None
        for row in data:
            if type(row) is not dict:
                continue
            symbol = row.get("symbol")
            if symbol != current:
                current = symbol
                mine = isinstance(symbol, str) and self._books.book_table(symbol) == table
                sides = views.get(symbol) if mine else None
            if sides is None:
                continue
            levels = sides.get(row.get("side"))
            level = levels.get(row.get("id")) if levels is not None else None
            if level is not None:
                key = (symbol, level["side"], level["id"])
                held[key] = (float(level["price"]), int(level["size"]))
        return held

    def _book_delta(
        self,
        symbol: str,
        action: str,
        rows: Iterable[dict[str, Any]],
        held: dict[Any, tuple[float, int]],
        t: float,
        private: list[Delta],
    ) -> None:
        """Move the level sizes by a delta of the symbol's book table and report them."""
        books = self._books
        levels: list[tuple[str, float]] = []
        for row in rows:
            side = row["side"]
            price = float(row["price"])
            size = int(row["size"])
            if action == "insert":
                books.level_added(symbol, side, price, size)
            elif action == "delete":
                books.level_removed(symbol, side, price, size)
            else:
                old = held.get((symbol, side, row["id"]))
                if old is not None:
                    books.level_removed(symbol, side, old[0], old[1])
                    if old[0] != price:
                        levels.append((side, old[0]))
                books.level_added(symbol, side, price, size)
            levels.append((side, price))
        self._levels_changed(symbol, levels, t, private)

    def _levels_changed(
        self, symbol: str, levels: list[tuple[str, float]], t: float, private: list[Delta]
    ) -> None:
        """Report each changed level once (its new visible size), in the order first seen."""
        books = self._books
        known = symbol in self._contracts
        seen: set[tuple[str, float]] = set()
        for side, price in levels:
            if (side, price) in seen:
                continue
            seen.add((side, price))
            books.forget(symbol, side, price)
            if known:
                size = books.recorded_size(symbol, side, price)
                self._exchange.on_level(symbol, side, price, size, t, private)

    def _book10_levels(self, data: list[Any]) -> dict[str, tuple[list[Any], list[Any]]]:
        held: dict[str, tuple[list[Any], list[Any]]] = {}
        for row in data:
            symbol = row.get("symbol") if type(row) is dict else None
            if isinstance(symbol, str) and symbol not in held:
                book = self._storage.book(symbol, _BOOK10)
                held[symbol] = (list(book.bids), list(book.asks))
        return held

    def _book10_changed(
        self,
        symbol: str,
        before: tuple[list[Any], list[Any]] | None,
        t: float,
        private: list[Delta],
    ) -> None:
        book = self._storage.book(symbol, _BOOK10)
        old_bids, old_asks = before if before is not None else ([], [])
        levels: list[tuple[str, float]] = []
        for side, old, new in (("Buy", old_bids, book.bids), ("Sell", old_asks, book.asks)):
            was = {float(p): s for p, s in old}
            now = {float(p): s for p, s in new}
            levels.extend((side, p) for p in was if now.get(p) != was[p])
            levels.extend((side, p) for p in now if p not in was)
        self._levels_changed(symbol, levels, t, private)

    def _trades(self, symbol: str, rows: list[Any], t: float, private: list[Delta]) -> None:
        if symbol not in self._contracts:
            return
        on_trade = self._exchange.on_trade
        last: float | None = None
        for row in rows:
            side, price, size = row.get("side"), _number(row.get("price")), row.get("size")
            if side in ("Buy", "Sell") and price is not None and type(size) is int and size > 0:
                on_trade(symbol, side, price, size, t, private)
                last = price
        if last is not None and symbol not in self._from_instrument:
            # No instrument row recorded: the last trade is the only price there is.
            self._marks[symbol] = last
            self._exchange.on_prices(symbol, t, private, last=last, mark=last)

    def _instrument_rows(
        self,
        full: Iterable[dict[str, Any]],
        sent: Iterable[dict[str, Any]],
        t: float,
        private: list[Delta],
    ) -> None:
        """Learn contracts and indices from full rows; report the prices the sent rows carry."""
        announce = self._funding.announce
        for row in full:
            symbol = row.get("symbol")
            if isinstance(symbol, str):
                self._learn_instrument(symbol, row)
                if not is_index(symbol, row):
                    announce(symbol, row)
        on_prices = self._exchange.on_prices
        for row in sent:
            symbol = row.get("symbol")
            if not isinstance(symbol, str):
                continue
            last = _number(row.get("lastPrice"))
            if is_index(symbol, row):
                if last is not None:
                    for contract in self._references.get(symbol, ()):
                        if contract in self._contracts:
                            on_prices(contract, t, private, index=last)
                continue
            mark = _number(row.get("markPrice"))
            index = _number(row.get("indicativeSettlePrice"))
            if mark is not None:
                self._marks[symbol] = mark
            if symbol in self._contracts and (last, mark, index) != (None, None, None):
                on_prices(symbol, t, private, last=last, mark=mark, index=index)

    def _learn_instrument(self, symbol: str, row: dict[str, Any]) -> None:
        if is_index(symbol, row):
            if symbol not in self.indices:
                self.indices = (*self.indices, symbol)
            return
        reference = row.get("referenceSymbol")
        if isinstance(reference, str):
            followers = self._references.setdefault(reference, [])
            if symbol not in followers:
                followers.append(symbol)
        if symbol in self._from_instrument or "tickSize" not in row:
            return
        contract = contract_from_instrument(row)
        if contract is None:
            return
        self._from_instrument.add(symbol)
        mark = _number(row.get("markPrice"))
        if mark is not None:
            self._marks.setdefault(symbol, mark)
        if symbol in self._contracts:
            self._contracts[symbol] = contract  # the row's contract replaces a guessed one
            self._exchange.add_contract(symbol, contract, self._marks.get(symbol, 0.0))
        else:
            self._pending[symbol] = contract
            if self._books.book_table(symbol) is not None:
                self._book_started(symbol)

    def _book_started(self, symbol: str) -> None:
        """The symbol has a book: it becomes tradable (once)."""
        if symbol in self._contracts or is_index(symbol):
            return
        contract = self._pending.pop(symbol, None)
        if contract is None:
            prices = (
                price for side in ("Sell", "Buy") for price, _ in self._books.levels(symbol, side)
            )
            contract = contract_from_book(symbol, prices)
        if contract is None:
            return
        self._contracts[symbol] = contract
        mark = self._marks.get(symbol)
        if mark is None:
            bid, ask = self._books.best(symbol, "Buy"), self._books.best(symbol, "Sell")
            mark = (bid + ask) / 2 if bid is not None and ask is not None else bid or ask or 0.0
            self._marks[symbol] = mark = contract.round_price(mark)
        self._exchange.add_contract(symbol, contract, mark)
        self.symbols = (*self.symbols, symbol)

    # ------------------------------------------------------------------ funding

    def _settle_announced(self, at: float, out: list[Delta]) -> None:
        """Data time reached announced funding times: pay them (instrument source)."""
        self.now = at
        self._settle(self._funding.due(at, self._funding_recorded), at, out)

    def _settle(self, settlements: list[Settlement], t: float, out: list[Delta]) -> None:
        on_funding = self._exchange.on_funding
        for settlement in settlements:
            on_funding(settlement.symbol, settlement.rate, t, out)

    def _funding_recorded(self, symbol: str) -> bool:
        return self._storage.has_partial(_FUNDING, symbol)

    def _legacy_l2(self) -> bool:
        meta = self._meta.get("orderBookL2")
        return meta is not None and meta.legacy_book

    # ------------------------------------------------------------------ reads

    def _rows(self, table: str, symbol: str | None) -> list[dict[str, Any]]:
        rows = self._storage.rows(table, symbol)
        if table in BOOK_TABLES:
            return rows  # built afresh by the store
        return [dict(row) for row in rows]

    def _check_table(self, table: str) -> None:
        if (
            table not in PUBLIC_TABLES_SERVED
            and table not in PRIVATE_TABLES_SERVED
            and table not in self._meta
            and table not in FALLBACK_KEYS
        ):
            raise UnknownTableError(f"unknown table {table!r}")


def _book10_sides(row: dict[str, Any] | None) -> tuple[list[Any], list[Any]]:
    if not row:
        return [], []
    return list(row.get("bids") or []), list(row.get("asks") or [])


assert set(BOOK_TABLE_ORDER) >= BOOK_TABLES
