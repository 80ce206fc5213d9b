"""The emulator's synthetic BitMEX market, sans-IO: seeded, deterministic, driven by ``step(now)``.

Theory of operation: ``Market`` is the facade over the market's parts: the order books with their
trades and quotes (``_book``), the random order flow that changes them (``_flow``), each symbol's
instrument and funding (``_instruments``) and the accounts with their private tables
(``_accounts``). Nothing here reads a clock or global randomness: the caller passes ``now``
(epoch seconds) and all chance comes from ``random.Random(seed)``, so the same seed and the same
sequence of calls always give byte-identical output.

Each ``step(now)`` first makes what the clock brings (``_clock``: the second's quote messages,
index prints every 5 s, bin closes, funding at 04:00, 12:00 and 20:00 UTC, the daily insurance
row), then ONE random market event, and returns every ``Delta`` caused, in the order a server
should send them. Random events, by share of steps: level changes (96.6%), trades (1.5%, after
which resting account orders the trade printed through are filled), instrument mark/fair/open-
interest/predicted-funding updates (1.5%, which also revalue positions) and rare liquidation
lifecycles (0.4%). See ``_flow`` for what each does to a book. The market opens at
``start_time`` (the emulator passes its clock's time), so funding and bins fall where BitMEX's
did. ``symbols`` are the contracts; ``indices`` the index instruments they reference
(``.BXBT``...), which have instrument rows and Referential trades but no book.

Every state change is applied to the stored rows exactly as the emitted delta describes it, so
``snapshot()`` at any moment equals the initial snapshot with all later deltas applied (the
convergence property the server relies on). Derived tables (``orderBookL2_25``, ``orderBook10``)
cost nothing until enabled (``enable_table`` / ``derive=``).

``legacy_book=True`` emits the 2019-2021 order-book form: ids from the legacy price formula, no
``price`` on update/delete rows and no ``timestamp``/``transactTime``; the market itself is the
same. Account orders placed with ``place_order`` never enter the public book; one that crosses the
book is filled at once as a taker against it (public trades and book changes follow), and the rest
rests until a synthetic trade prints through its price.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import accumulate
from random import Random
from typing import Any, Final

from ..exchange import Exchange
from ..exchange._orders import CANCEL_TEXT, DMS_TEXT
from ._accounts import seed_default_account
from ._book import Book, Books, Side
from ._clock import Timed
from ._flow import OrderFlow
from ._instruments import DEFAULT_SYMBOLS, InstrumentSpec, spec_for
from ._scenarios import Scenario, scenario_named
from ._schemas import (
    BIN_TABLES,
    LEGACY_BOOK_SCHEMA,
    PRIVATE_TABLES_SERVED,
    PUBLIC_TABLES_SERVED,
    TABLE_SCHEMAS,
    Delta,
    Snapshot,
    TimeFormatter,
    UnknownTableError,
)

__all__ = ["Market"]

_CRASH_TRADE = -1.0  # the event kind of a crash's sell trade (taken with more levels)
RECENT_TRADES: Final = 1000  # trade rows kept per symbol for the REST API's GET /trade
_FAR: Final = 1 << 62  # a tick beyond any book: "take at any price"


class Market:
    """A seeded synthetic BitMEX market with accounts; see the module docstring."""

    def __init__(
        self,
        *,
        seed: int = 1,
        symbols: Sequence[str | InstrumentSpec] | None = None,
        start_time: float = 1_735_689_600.0,
        legacy_book: bool = False,
        derive: Iterable[str] = (),
        max_events: int | None = None,
        scenario: Scenario | str | None = None,
    ) -> None:
        if isinstance(scenario, str):
            scenario = scenario_named(scenario)
        self.scenario = scenario
        specs: dict[str, InstrumentSpec] = {}
        for item in DEFAULT_SYMBOLS if symbols is None else symbols:
            spec = item if isinstance(item, InstrumentSpec) else spec_for(item)
            if scenario is not None:
                spec = scenario.adjust(spec)
            specs.setdefault(spec.symbol, spec)
        if not specs:
            raise ValueError("a market needs at least one symbol")
        self.symbols: tuple[str, ...] = tuple(specs)
        self.instruments: dict[str, InstrumentSpec] = specs
        self.events = 0
        self.max_events = max_events
        self._rng = Random(seed)
        self._books = Books(self._rng, legacy=legacy_book)
        self._flow = OrderFlow(self._books, self._rng)
        for table in derive:
            self.enable_table(table)
        self._fmt = TimeFormatter()
        self._now = start_time
        ts = self._fmt(start_time)
        for spec in specs.values():
            self._books.open(spec, start_time, ts, self._fmt)
        self._book_list = list(self._books.by_symbol.values())
        self._cumulative = list(accumulate(spec.weight for spec in specs.values()))
        self._start = start_time
        self._anchors = {book.symbol: book.anchor for book in self._book_list}
        trade_share = 0.015 * (1.0 if scenario is None else scenario.trade_share)
        self._p_book = 1.0 - trade_share - 0.015 - 0.004
        self._p_trade = self._p_book + trade_share
        self._p_mark = self._p_trade + 0.015
        if scenario is not None:
            self._flow.fixed_trend = scenario.trend
            current, predicted = scenario.funding_rates
            for book in self._book_list:
                book.volatility *= scenario.volatility
                if scenario.trend is not None:
                    book.trend = scenario.trend
                book.instrument.row.update(fundingRate=current, indicativeFundingRate=predicted)
        self._timed = Timed(self._book_list, self._rng, self._fmt, start_time, seed)
        self.indices: tuple[str, ...] = tuple(self._timed.indices)
        self._marks: dict[str, float] = {
            book.symbol: book.instrument.row["markPrice"] for book in self._book_list
        }
        self._recent: dict[str, deque[dict[str, Any]]] = {
            book.symbol: deque([dict(book.trade)], maxlen=RECENT_TRADES) for book in self._book_list
        }
        contracts = {book.symbol: book.contract for book in self._book_list}
        self._exchange = Exchange(
            contracts, self, Random(f"accounts/{seed}"), self._fmt, marks=self._marks
        )
        for book in self._book_list:
            row = book.instrument.row
            self._exchange.on_prices(book.symbol, start_time, [], last=row["lastPrice"],
                                     index=book.instrument.index)  # fmt: skip
        seed_default_account(self._exchange, self._books.by_symbol, self.symbols, start_time)

    # ------------------------------------------------------------------ public API

    @property
    def accounts(self) -> frozenset[int]:
        return self._exchange.accounts

    @property
    def exchange(self) -> Exchange:
        """The paper exchange trading against this market (accounts, orders, fills)."""
        return self._exchange

    @property
    def now(self) -> float:
        """The latest time passed to any call (``start_time`` before the first)."""
        return self._now

    def enable_table(self, table: str) -> None:
        """Start deriving ``table`` (the server calls this when someone subscribes to it)."""
        self._set_derived(table, True)

    def disable_table(self, table: str) -> None:
        """Stop deriving ``table`` (nobody subscribes to it any more)."""
        self._set_derived(table, False)

    def step(self, now: float) -> list[Delta]:
        """Make one market event at ``now`` and return every delta it caused, in order.

        Returns ``[]`` without doing anything once ``max_events`` events were made.
        """
        if self.max_events is not None and self.events >= self.max_events:
            return []
        self.events += 1
        self._now = now
        ts = self._fmt(now)
        out: list[Delta] = []
        rng = self._rng
        exchange = self._exchange
        if now >= self._timed.next_due:
            funded = self._timed.advance(now, out)
            for symbol in funded:  # the payment just made is the latest funding row
                rate = next(r["fundingRate"] for r in reversed(self._timed.funding)
                            if r["symbol"] == symbol)  # fmt: skip
                exchange.on_funding(symbol, rate, now, out)
        books = self._book_list
        if len(books) == 1:
            book = books[0]
        else:
            book = books[bisect_right(self._cumulative, rng.random() * self._cumulative[-1])]
        kind: float | None = rng.random()
        first = len(out)
        scenario = self.scenario
        if scenario is not None and scenario.crash_after is not None:
            kind = self._crash(book, now, ts, rng.random(), out)
        if kind is None:
            pass
        elif kind < self._p_book and kind != _CRASH_TRADE:
            self._flow.book_event(book, ts, out)
        elif kind < self._p_trade:
            crashing = kind == _CRASH_TRADE
            trade = self._flow.trade_event(book, ts, out, max_levels=120 if crashing else 12)
            if trade is not None:
                self._record_trades(book, out, first)
                last = book.contract.price(trade.worst_tick)
                if exchange.active(book.symbol):
                    self._report(book, out, first, now)
                exchange.on_prices(book.symbol, now, out, last=last)
                first = len(out)
        elif kind < self._p_mark:
            price = book.contract.price
            bid, ask = price(book.bids.best().tick), price(book.asks.best().tick)
            mark = book.instrument.mark_event(bid, ask, rng, ts, out)
            self._marks[book.symbol] = mark
            exchange.on_prices(book.symbol, now, out, mark=mark, index=book.instrument.index)
        else:
            self._flow.liquidation_event(book, ts, out)
        if first < len(out) and exchange.active(book.symbol):
            self._report(book, out, first, now)
        if self.max_events is not None and self.events >= self.max_events:
            self._timed.flush_quotes(out)  # a still market has no next second
        elif now >= self._timed.next_quotes:
            self._timed.quotes_due(now, out)
        return out

    def snapshot(
        self, table: str, symbol: str | None = None, account: int | None = None
    ) -> Snapshot:
        """The partial image of ``table`` (all symbols when ``symbol`` is None; private tables
        need ``account``). ``UnknownTableError`` for a table not served, ``KeyError`` for an
        unknown account. An unknown symbol gives an empty image."""
        if table in PRIVATE_TABLES_SERVED:
            if account is None:
                raise ValueError(f"{table!r} is private: snapshot() needs an account")
            scoped = symbol if table in ("order", "execution", "position") else None
            flt: dict[str, Any] = {"account": account}
            if scoped is not None:
                flt["symbol"] = scoped
            return TABLE_SCHEMAS[table].snapshot(self._exchange.rows(table, account, scoped), flt)
        if table not in PUBLIC_TABLES_SERVED:
            raise UnknownTableError(f"unknown table {table!r}")
        by_symbol = self._books.by_symbol
        timed = self._timed
        indices = timed.indices
        if symbol is None:
            books = self._book_list
            index_rows = list(indices.values())
        else:
            books = [by_symbol[symbol]] if symbol in by_symbol else []
            index_rows = [indices[symbol]] if symbol in indices else []
        wanted = {book.symbol for book in books} | {index.symbol for index in index_rows}
        rows: list[dict[str, Any]] = []
        if table == "instrument":
            rows = [dict(book.instrument.row) for book in books]
            rows.extend(dict(index.row) for index in index_rows)
        elif table == "trade":
            rows = [dict(book.trade) for book in books]
            rows.extend(dict(index.trade) for index in index_rows)
        elif table == "funding":
            rows = [dict(row) for row in timed.funding if row["symbol"] in wanted]
        elif table in BIN_TABLES:
            rows = timed.bins.rows(table, sorted(wanted, key=self._order))
        elif table == "settlement":
            rows = timed.history.settlement_rows(None if symbol is None else {symbol})
        elif table == "insurance":
            rows = [dict(row) for row in timed.history.insurance]
        else:
            rows = self._books.public_rows(table, books)
        legacy = self._books.legacy and table in ("orderBookL2", "orderBookL2_25")
        schema = LEGACY_BOOK_SCHEMA if legacy else TABLE_SCHEMAS[table]
        return schema.snapshot(rows, {} if symbol is None else {"symbol": symbol})

    def book_levels(self, symbol: str) -> list[dict[str, Any]]:
        """The emulator's own full ``orderBookL2`` rows for ``symbol`` (asks high to low, then
        bids high to low, like a BitMEX partial)."""
        return self._books.book_rows(self._books.by_symbol[symbol], None)

    def add_account(
        self, account: int, *, balance_xbt_sats: int = 10**8, balance_usdt: int = 0
    ) -> None:
        """A new empty account (``balance_usdt`` in USDt, i.e. millionths of a USDT)."""
        deposits = {"XBt": balance_xbt_sats, "USDt": balance_usdt}
        self._exchange.add_account(account, deposits, self._now)

    def open_orders(self, account: int) -> list[dict[str, Any]]:
        return self._exchange.open_orders(account)

    def place_order(
        self,
        account: int,
        symbol: str,
        side: str,
        qty: int,
        price: float,
        now: float,
        *,
        cl_ord_id: str = "",
    ) -> tuple[str, list[Delta]]:
        """Place a GoodTillCancel limit order; returns ``(orderID, deltas)`` (a thin wrapper of
        ``exchange.place_order``, which takes every order type).

        Deltas: ``order`` insert (New) and ``execution`` insert (New); if the order crosses the
        public book it takes liquidity at once (book/trade/quote/instrument deltas, then an
        ``order`` update and ``execution`` Trade per level), never emptying the book below
        ``MIN_LEVELS``; the rest rests, invisible to the public book. Then position, margin and
        wallet changes. ``ValueError`` (``OrderRejected``, BitMEX's text) for a bad
        symbol/side/qty/price or too little margin, ``KeyError`` for an unknown account.
        """
        if side not in ("Buy", "Sell"):
            raise ValueError(f"side must be 'Buy' or 'Sell', not {side!r}")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            raise ValueError(f"qty must be a positive multiple of the lot, not {qty!r}")
        params = {"symbol": symbol, "side": side, "orderQty": qty, "price": price,
                  "ordType": "Limit", "clOrdID": cl_ord_id or None}  # fmt: skip
        self._now = now
        row, out = self._exchange.place_order(account, params, now)
        return row["orderID"], out

    def cancel_order(
        self, account: int, order_id: str, now: float, *, text: str = CANCEL_TEXT
    ) -> list[Delta]:
        """Cancel one order: ``order`` update (Canceled) + ``execution`` insert (Canceled), then
        position/margin changes. ``[]`` if it is already closed; ``KeyError`` if unknown."""
        self._now = now
        return self._exchange.cancel_orders(account, [order_id], [], now, text=text)[1]

    def cancel_all(self, account: int, now: float, *, text: str = DMS_TEXT) -> list[Delta]:
        """Cancel every open order of ``account`` (the dead man's switch): per symbol one
        ``order`` update and one ``execution`` insert message, then position/margin changes."""
        self._now = now
        return self._exchange.cancel_all(account, now, text=text)[1]

    def fill_order(
        self, account: int, order_id: str, now: float, *, qty: int | None = None
    ) -> list[Delta]:
        """Test hook: fill ``qty`` (default: all that is left) of an open order at its own
        price, as a maker; private deltas only. ``[]`` if the order is closed."""
        self._now = now
        return self._exchange.fill_order(account, order_id, now, qty=qty)

    # ------------------------------------------------------------------ Venue

    def public_rows(self, table: str, symbol: str | None = None) -> list[dict[str, Any]]:
        """Rows for the REST API's public reads: ``instrument`` (indices too), ``orderBookL2``
        (full depth, in a partial's order), ``trade`` (the latest ``RECENT_TRADES`` per symbol,
        oldest first) and ``funding`` (every payment since the market opened)."""
        if table == "trade":
            symbols = self.symbols if symbol is None else (symbol,)
            rows = [dict(row) for sym in symbols for row in self._recent.get(sym, ())]
            if symbol is None:
                rows.sort(key=lambda row: row["timestamp"])  # stable: per-symbol order kept
            return rows
        if table in ("instrument", "orderBookL2", "funding"):
            return self.snapshot(table, symbol).rows
        raise UnknownTableError(f"no public rows for table {table!r}")

    # ------------------------------------------------------------------ Liquidity

    def best(self, symbol: str, side: str) -> float | None:
        """The best visible price on ``side`` (``"Buy"``: bids)."""
        book = self._books.by_symbol.get(symbol)
        if book is None:
            return None
        keys = (book.bids if side == "Buy" else book.asks).keys
        return book.contract.price(abs(keys[0])) if keys else None

    def level_size(self, symbol: str, side: str, price: float) -> int:
        """The visible size at ``price`` on ``side`` (0 when there is no such level)."""
        book = self._books.by_symbol.get(symbol)
        if book is None:
            return 0
        book_side = book.bids if side == "Buy" else book.asks
        level = book_side.levels.get(book_side.sign * round(price / book.contract.tick_size))
        return 0 if level is None else level.size

    def take(
        self, symbol: str, buy: bool, limit: float | None, qty: int, now: float, out: list[Delta]
    ) -> list[tuple[float, int, str]]:
        """An account's aggressor takes the visible book (see ``Liquidity``): the levels go or
        shrink, trades print and the instrument moves, exactly as for the synthetic flow."""
        book = self._books.by_symbol[symbol]
        contract = book.contract
        tick = (_FAR if buy else 1) if limit is None else contract.tick_of(limit)
        plan = self._books.crossing_plan(book, buy, tick, qty)
        if not plan:
            return []
        self._now = now
        passive = book.asks if buy else book.bids
        prices = [contract.price(level.tick) for level, _ in plan]
        first = len(out)
        match_ids = self._books.consume(book, passive, plan, buy, self._fmt(now), out)
        self._record_trades(book, out, first)
        if self._still():  # nobody will step the market again: its quotes go out now
            self._timed.flush_quotes(out)
        return [
            (price, take, match_id)
            for price, (_, take), match_id in zip(prices, plan, match_ids, strict=True)
        ]

    # ------------------------------------------------------------------ internals

    def _crash(
        self, book: Book, now: float, ts: str, kind: float, out: list[Delta]
    ) -> float | None:
        """The flash crash scenario: during the crash every contract's fair price and anchor
        slide down, a third of the steps are sell trades and some add a growing sell
        liquidation; afterwards the market settles half way back. Returns the event kind to
        make (``None``: the step is done)."""
        scenario = self.scenario
        assert scenario is not None and scenario.crash_after is not None
        begin = self._start + scenario.crash_after
        if now < begin:
            return kind
        progress = min(1.0, (now - begin) / scenario.crash_seconds)
        anchor = self._anchors[book.symbol]
        if progress >= 1.0:
            book.anchor = round(anchor * (1 - scenario.crash_depth / 2))
            if book.trend < 0:  # the crash is over: buyers come back half way
                book.trend = 0.5
                book.fair = float(book.anchor)
            return kind
        book.anchor = round(anchor * (1 - scenario.crash_depth * progress))
        book.fair = min(book.fair, float(book.anchor))
        book.trend = -1.0
        if kind < 0.1:
            self._flow.liquidation_event(book, ts, out, cascade=progress)
            return None
        if kind < 0.35:
            if len(book.bids.keys) < book.depth // 2:  # new bids below, for sellers to hit
                self._flow.insert_levels(book, book.bids, 60, ts, out)
            return _CRASH_TRADE  # a trade: the aggressor sells into the falling fair price
        return kind * self._p_book / 0.35 % self._p_book  # otherwise a level event

    def _order(self, symbol: str) -> tuple[int, str]:
        """Contracts first, in market order, then indices."""
        if symbol in self._books.by_symbol:
            return (self.symbols.index(symbol), symbol)
        return (len(self.symbols), symbol)

    def _record_trades(self, book: Book, out: list[Delta], start: int) -> None:
        """Feed the trade rows made since ``out[start]`` to the bins."""
        for delta in out[start:]:
            if delta.table == "trade" and delta.symbol == book.symbol:
                self._timed.bins.record(book.symbol, delta.rows)
                self._recent[book.symbol].extend(dict(row) for row in delta.rows)

    def _report(self, book: Book, out: list[Delta], start: int, now: float) -> None:
        """Tell the exchange what the market's deltas since ``out[start]`` did to ``book``:
        each level's new visible size, then each public trade (accounts' resting orders fill
        and queue by them)."""
        exchange = self._exchange
        symbol = book.symbol
        end = len(out)  # the exchange appends its private deltas behind these
        for index in range(start, end):
            delta = out[index]
            if delta.symbol != symbol or delta.account is not None:
                continue
            if delta.table == "orderBookL2":
                gone = delta.action == "delete"
                for row in delta.rows:
                    side = book.bids if row["side"] == "Buy" else book.asks
                    price = self._row_price(book, side, row)
                    exchange.on_level(symbol, side.name, price, 0 if gone else row["size"], now,
                                      out)  # fmt: skip
            elif delta.table == "trade":
                for row in delta.rows:
                    exchange.on_trade(symbol, row["side"], row["price"], row["size"], now, out)

    @staticmethod
    def _row_price(book: Book, side: Side, row: dict[str, Any]) -> float:
        """A book row's price; the pre-2023 form has none on updates and deletes, so it comes
        from the legacy id formula (id = base - tick * factor)."""
        price = row.get("price")
        if price is not None:
            return float(price)
        return book.contract.price((book.legacy_base - row["id"]) // book.legacy_factor)

    def stand_still(self) -> list[Delta]:
        """Make no more steps, as if ``max_events`` had been reached; the pending quotes to send
        (a still market has no next second to send them in)."""
        self.max_events = self.events
        out: list[Delta] = []
        self._timed.flush_quotes(out)
        return out

    def _still(self) -> bool:
        return self.max_events is not None and self.events >= self.max_events

    def _set_derived(self, table: str, on: bool) -> None:
        if table == "orderBookL2_25":
            self._books.derive25 = on
        elif table == "orderBook10":
            self._books.derive10 = on
        elif table not in PUBLIC_TABLES_SERVED and table not in PRIVATE_TABLES_SERVED:
            raise UnknownTableError(f"unknown table {table!r}")
