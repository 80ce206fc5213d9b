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
from collections.abc import Iterable, Sequence
from itertools import accumulate
from random import Random
from typing import Any

from ._accounts import DEFAULT_ACCOUNT, Accounts
from ._book import Book, Books
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
        contracts = {book.symbol: book.contract for book in self._book_list}
        self._accounts = Accounts(contracts, self._marks, Random(f"accounts/{seed}"))
        self._seed_default_account(ts)

    # ------------------------------------------------------------------ public API

    @property
    def accounts(self) -> frozenset[int]:
        return self._accounts.ids

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
        if now >= self._timed.next_due:
            for symbol in self._timed.advance(now, out):
                self._accounts.on_mark(symbol, ts, out)
        books = self._book_list
        if len(books) == 1:
            book = books[0]
        else:
            book = books[bisect_right(self._cumulative, rng.random() * self._cumulative[-1])]
        kind: float | None = rng.random()
        scenario = self.scenario
        if scenario is not None and scenario.crash_after is not None:
            kind = self._crash(book, now, ts, rng.random(), out)
        if kind is None:
            pass
        elif kind < self._p_book and kind != _CRASH_TRADE:
            self._flow.book_event(book, ts, out)
        elif kind < self._p_trade:
            first = len(out)
            crashing = kind == _CRASH_TRADE
            trade = self._flow.trade_event(book, ts, out, max_levels=120 if crashing else 12)
            if trade is not None:
                self._record_trades(book, out, first)
                self._accounts.on_trade(
                    book.symbol, trade.buy, trade.worst_tick, trade.qty, ts,
                    self._books.next_match_id, out,
                )  # fmt: skip
        elif kind < self._p_mark:
            price = book.contract.price
            bid, ask = price(book.bids.best().tick), price(book.asks.best().tick)
            mark = book.instrument.mark_event(bid, ask, rng, ts, out)
            if self._marks[book.symbol] != mark:
                self._marks[book.symbol] = mark
                self._accounts.on_mark(book.symbol, ts, out)
        else:
            self._flow.liquidation_event(book, ts, out)
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
            return TABLE_SCHEMAS[table].snapshot(self._accounts.rows(table, account, scoped), flt)
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
        self._accounts.add(
            account, {"XBt": balance_xbt_sats, "USDt": balance_usdt}, self._fmt(self._now)
        )

    def open_orders(self, account: int) -> list[dict[str, Any]]:
        return self._accounts.open_orders(account)

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
        """Place a GoodTillCancel limit order; returns ``(orderID, deltas)``.

        Deltas: ``order`` insert (New) and ``execution`` insert (New); if the order crosses the
        public book it takes liquidity at once (book/trade/quote/instrument deltas, then an
        ``execution`` Trade and ``order`` update per level), never emptying the book below
        ``MIN_LEVELS``; the rest rests, invisible to the public book. Then position, margin and
        wallet changes. ``ValueError`` for a bad symbol/side/qty/price, ``KeyError`` for an
        unknown account.
        """
        books = self._books
        book = books.by_symbol.get(symbol)
        if book is None:
            raise ValueError(f"unknown symbol {symbol!r}")
        if side not in ("Buy", "Sell"):
            raise ValueError(f"side must be 'Buy' or 'Sell', not {side!r}")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0 or qty % book.lot:
            raise ValueError(f"qty must be a positive multiple of {book.lot}, not {qty!r}")
        tick = book.contract.tick_of(price)
        self._accounts.get(account)
        self._now = now
        ts = self._fmt(now)
        out: list[Delta] = []
        order = self._accounts.place(account, symbol, side, qty, tick, ts, cl_ord_id, out)
        if (tick >= book.asks.keys[0]) if order.buy else (tick <= -book.bids.keys[0]):
            plan = books.crossing_plan(book, order.buy, tick, order.leaves)
            if plan:
                passive = book.asks if order.buy else book.bids
                first = len(out)
                match_ids = books.consume(book, passive, plan, order.buy, ts, out)
                self._record_trades(book, out, first)
                for (level, take), match_id in zip(plan, match_ids, strict=True):
                    price_out = book.contract.price(level.tick)
                    self._accounts.fill(order, take, price_out, False, match_id, ts, out)
        self._accounts.refresh(account, symbol, ts, out)
        if self._still():  # nobody will step the market again: its quotes go out now
            self._timed.flush_quotes(out)
        return order.order_id, out

    def cancel_order(
        self, account: int, order_id: str, now: float, *, text: str = "Canceled: Canceled via API."
    ) -> list[Delta]:
        """Cancel one order: ``order`` update (Canceled) + ``execution`` insert (Canceled), then
        position/margin changes. ``[]`` if it is already closed; ``KeyError`` if unknown."""
        acct = self._accounts.get(account)
        order = acct.orders.get(order_id)
        if order is None:
            raise KeyError(f"unknown order {order_id!r} of account {account}")
        if order_id not in acct.open:
            return []
        self._now = now
        out: list[Delta] = []
        self._accounts.cancel(account, [order], self._fmt(now), text, out)
        return out

    def cancel_all(
        self, account: int, now: float, *, text: str = "Canceled: Cancel from cancelAllAfter"
    ) -> list[Delta]:
        """Cancel every open order of ``account`` (the dead man's switch): per symbol one
        ``order`` update and one ``execution`` insert message, then position/margin changes."""
        acct = self._accounts.get(account)
        self._now = now
        out: list[Delta] = []
        if acct.open:
            self._accounts.cancel(account, list(acct.open.values()), self._fmt(now), text, out)
        return out

    def fill_order(
        self, account: int, order_id: str, now: float, *, qty: int | None = None
    ) -> list[Delta]:
        """Test hook: fill ``qty`` (default: all that is left) of an open order at its own
        price, as a maker; private deltas only. ``[]`` if the order is closed."""
        acct = self._accounts.get(account)
        order = acct.orders.get(order_id)
        if order is None:
            raise KeyError(f"unknown order {order_id!r} of account {account}")
        if order_id not in acct.open:
            return []
        take = order.leaves if qty is None else qty
        if take <= 0 or take > order.leaves or take % self._books.by_symbol[order.symbol].lot:
            raise ValueError(f"cannot fill {take} of an order with {order.leaves} left")
        self._now = now
        ts = self._fmt(now)
        out: list[Delta] = []
        match_id = self._books.next_match_id()
        self._accounts.fill(order, take, order.price, True, match_id, ts, out)
        self._accounts.refresh(account, order.symbol, ts, out)
        return out

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

    def _still(self) -> bool:
        return self.max_events is not None and self.events >= self.max_events

    def _seed_default_account(self, ts: str) -> None:
        """The default account: a long position and a few resting orders, one near the touch
        (synthetic trades soon fill it) and others a few percent away."""
        accounts = self._accounts
        by_symbol = self._books.by_symbol
        accounts.add(DEFAULT_ACCOUNT, {"XBt": 10**8, "USDt": 10_000 * 10**6}, ts)
        main = "XBTUSD" if "XBTUSD" in by_symbol else self.symbols[0]
        others = [symbol for symbol in self.symbols if symbol != main]
        second = "ETHUSD" if "ETHUSD" in others else (others[0] if others else main)
        scratch: list[Delta] = []
        book = by_symbol[main]
        bid, ask = book.bids.best().tick, book.asks.best().tick
        accounts.seed_position(DEFAULT_ACCOUNT, main, 10 * book.lot, book.contract.price(bid))
        for side, qty, tick in (
            ("Buy", 5 * book.lot, bid - 20),
            ("Buy", 10 * book.lot, round(bid * 0.98)),
            ("Sell", 3 * book.lot, round(ask * 1.02)),
        ):
            accounts.place(DEFAULT_ACCOUNT, main, side, qty, tick, ts, "", scratch)
        book2 = by_symbol[second]
        ask2 = book2.asks.best().tick
        accounts.place(DEFAULT_ACCOUNT, second, "Sell", 10 * book2.lot, round(ask2 * 1.015), ts,
                       "", scratch)  # fmt: skip
        accounts.refresh(DEFAULT_ACCOUNT, main, ts, scratch)
        accounts.refresh(DEFAULT_ACCOUNT, second, ts, scratch)

    def _set_derived(self, table: str, on: bool) -> None:
        if table == "orderBookL2_25":
            self._books.derive25 = on
        elif table == "orderBook10":
            self._books.derive10 = on
        elif table not in PUBLIC_TABLES_SERVED and table not in PRIVATE_TABLES_SERVED:
            raise UnknownTableError(f"unknown table {table!r}")
