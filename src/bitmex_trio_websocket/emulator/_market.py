"""The emulator's synthetic BitMEX market, sans-IO: seeded, deterministic, driven by ``step(now)``.

Theory of operation: ``Market`` holds, per symbol, an order book of integer-tick price levels (each
with an opaque random 11-digit id, a size in lots and the time it last changed), an instrument row,
the last trade and quote, live liquidations and funding history; plus the accounts
(``_accounts.Accounts``). Nothing here reads a clock or global randomness: the caller passes
``now`` (epoch seconds) and all chance comes from ``random.Random(seed)``, so the same seed and the
same sequence of calls always give byte-identical output.

Each ``step(now)`` makes ONE market event and returns every ``Delta`` it caused, in the order a
server should send them. Events, by share of steps: level changes (94.5%: a cluster of nearby
levels, 3.4 on average and biased to the top of the book, changes size, or new levels appear, or
levels go), trades (2.5%: a latent fair price random-walks with drift regimes and reverts to the
start price; the aggressor takes the levels between the touch and it, one trade row per level, then
the book, quote and instrument follow and resting account orders it printed through are filled),
instrument mark/fair/index/open-interest/funding-rate updates (2.5%, which also revalue positions),
and rare liquidation lifecycles and funding events. With derived tables off that is ~86%
``orderBookL2`` messages of ~3.4 rows (~3.1 rows per message overall).

Every state change is applied to the stored rows exactly as the emitted delta describes it, so
``snapshot()`` at any moment equals the initial snapshot with all later deltas applied (book rows
carry the time their level last changed). Derived tables cost nothing until enabled
(``enable_table`` / ``derive=``): ``orderBookL2_25`` forwards size changes inside the top 25 and
otherwise diffs the top 25 levels of the side an event touched (only when the event reached into
them), and ``orderBook10`` is a full top-10 row whenever an event reached into the top 10. Quotes
are sent whenever the best level of either side changes. The book never crosses and never gets
thinner than ``MIN_LEVELS`` a side; price reverts slowly to the instrument's start price.

``legacy_book=True`` emits the 2019-2021 order-book form: ids from the legacy price formula, no
``price`` on update/delete rows and no ``timestamp``/``transactTime``; the market itself is the
same. Account orders placed with ``place_order`` never enter the public book; one that crosses the
book is filled at once as a taker against it (public trades and book changes follow), and the rest
rests until a synthetic trade prints through its price.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate
from math import log as _log
from random import Random
from typing import Any, Final

from ._accounts import MAKER_FEE, TAKER_FEE, Accounts
from ._schemas import (
    DEFAULT_ACCOUNT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    KEYLESS_TABLES,
    LEGACY_BOOK_SCHEMA,
    PRIVATE_TABLES_SERVED,
    PUBLIC_TABLES_SERVED,
    TABLE_SCHEMAS,
    Contract,
    Delta,
    InstrumentSpec,
    Snapshot,
    TimeFormatter,
    random_guid,
    spec_for,
    timespan,
)

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_SYMBOLS",
    "KEYLESS_TABLES",
    "PRIVATE_TABLES_SERVED",
    "PUBLIC_TABLES_SERVED",
    "Delta",
    "InstrumentSpec",
    "Market",
    "Snapshot",
    "UnknownTableError",
    "spec_for",
]

DEFAULT_SYMBOLS: Final = ("XBTUSD", "ETHUSD", "SOLUSD")
MIN_LEVELS: Final = 40  # no side of a book ever gets thinner than this
FUNDING_INTERVAL: Final = 8 * 3600.0
_FUNDING_INTERVAL_TEXT: Final = timespan(FUNDING_INTERVAL)

# Cumulative thresholds of the event kind drawn by step().
_P_BOOK: Final = 0.945
_P_TRADE: Final = _P_BOOK + 0.025
_P_MARK: Final = _P_TRADE + 0.025
_P_LIQUIDATION: Final = _P_MARK + 0.004  # the rest (0.1%): funding
_ROWS_MEAN: Final = 3.0  # a book message changes 1 + floor(Exp(mean)) levels
_TOP_MEAN_RANK: Final = 45.0  # mean rank of a top-biased level pick
_CLUSTER_GAP: Final = 3.0  # mean extra rank gap between the levels one book message changes


class UnknownTableError(KeyError, ValueError):
    """A table the synthetic market does not serve (both a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _Level:
    __slots__ = ("id", "size", "tick", "ts")

    def __init__(self, level_id: int, tick: int, size: int, ts: str) -> None:
        self.id = level_id
        self.tick = tick
        self.size = size
        self.ts = ts  # when the level last changed: its timestamp and transactTime


class _Side:
    """One side of a book. ``keys`` holds ``sign * tick`` ascending, so index 0 is the best
    level on both sides; ``levels`` maps the same keys to levels."""

    __slots__ = ("buy", "keys", "levels", "name", "sign")

    def __init__(self, buy: bool) -> None:
        self.buy = buy
        self.name = "Buy" if buy else "Sell"
        self.sign = -1 if buy else 1
        self.keys: list[int] = []
        self.levels: dict[int, _Level] = {}

    def best(self) -> _Level:
        return self.levels[self.keys[0]]

    def top(self, count: int) -> list[_Level]:
        levels = self.levels
        return [levels[key] for key in self.keys[:count]]


class _Book:
    __slots__ = (
        "anchor", "asks", "basis", "bids", "contract", "depth", "fair", "funding_time", "ids",
        "insert_offset", "instrument", "last_direction", "last_tick", "legacy_base",
        "legacy_factor", "liquidations", "lot", "ob10_ts", "quote", "spec", "symbol", "trade",
        "trend", "typical", "volatility",
    )  # fmt: skip

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.contract = Contract(spec)
        self.lot = spec.lot_size
        self.typical = spec.typical_lots
        self.depth = spec.depth
        self.insert_offset = 6.0 * spec.spacing  # mean offset of a new level from the best
        self.volatility = 1.5 * spec.spacing  # fair price move per trade event, in ticks
        self.trend = 0.0  # -1..1: the current drift of the fair price
        self.anchor = round(spec.start_price / spec.tick_size)  # price reverts to it, ticks
        self.fair = float(self.anchor)  # where trades push the price, in ticks
        self.bids = _Side(True)
        self.asks = _Side(False)
        self.ids: set[int] = set()
        legacy_tick = spec.legacy_tick or spec.tick_size
        self.legacy_factor = round(spec.tick_size / legacy_tick)
        self.legacy_base = 100_000_000 * spec.legacy_index
        self.last_tick = self.anchor
        self.last_direction = "ZeroPlusTick"
        self.basis = 0.0
        self.funding_time = 0.0
        self.ob10_ts = ""
        self.instrument: dict[str, Any] = {}
        self.trade: dict[str, Any] = {}
        self.quote: dict[str, Any] = {}
        self.liquidations: dict[str, dict[str, Any]] = {}


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
    ) -> None:
        specs: dict[str, InstrumentSpec] = {}
        for item in DEFAULT_SYMBOLS if symbols is None else symbols:
            spec = item if isinstance(item, InstrumentSpec) else spec_for(item)
            specs.setdefault(spec.symbol, spec)
        if not specs:
            raise ValueError("a market needs at least one symbol")
        self.symbols: tuple[str, ...] = tuple(specs)
        self.instruments: dict[str, InstrumentSpec] = specs
        self.events = 0
        self.max_events = max_events
        self._rng = Random(seed)
        self._legacy = legacy_book
        self._derive25 = False
        self._derive10 = False
        for table in derive:
            self.enable_table(table)
        self._fmt = TimeFormatter()
        self._now = start_time
        self._match = 0
        ts = self._fmt(start_time)
        self._books = {
            symbol: self._new_book(spec, start_time, ts) for symbol, spec in specs.items()
        }
        self._book_list = list(self._books.values())
        self._cumulative = list(accumulate(spec.weight for spec in specs.values()))
        self._funding: list[dict[str, Any]] = []
        self._marks: dict[str, float] = {
            symbol: book.instrument["markPrice"] for symbol, book in self._books.items()
        }
        contracts = {symbol: book.contract for symbol, book in self._books.items()}
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
        books = self._book_list
        if len(books) == 1:
            book = books[0]
        else:
            book = books[bisect_right(self._cumulative, rng.random() * self._cumulative[-1])]
        kind = rng.random()
        if kind < _P_BOOK:
            self._book_event(book, ts, out)
        elif kind < _P_TRADE:
            self._trade_event(book, ts, out)
        elif kind < _P_MARK:
            self._mark_event(book, ts, out)
        elif kind < _P_LIQUIDATION:
            self._liquidation_event(book, ts, out)
        else:
            self._funding_event(book, ts, out)
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
        if symbol is None:
            books = self._book_list
        else:
            books = [self._books[symbol]] if symbol in self._books else []
        rows: list[dict[str, Any]] = []
        if table in ("orderBookL2", "orderBookL2_25"):
            depth = 25 if table == "orderBookL2_25" else None
            for book in books:
                rows.extend(self._book_rows(book, depth))
        elif table == "orderBook10":
            rows = [self._ob10_row(book) for book in books]
        elif table == "instrument":
            rows = [dict(book.instrument) for book in books]
        elif table == "trade":
            rows = [dict(book.trade) for book in books]
        elif table == "quote":
            rows = [dict(book.quote) for book in books]
        elif table == "liquidation":
            rows = [dict(row) for book in books for row in book.liquidations.values()]
        elif table == "funding":
            wanted = {book.symbol for book in books}
            rows = [dict(row) for row in self._funding if row["symbol"] in wanted]
        legacy = self._legacy and table in ("orderBookL2", "orderBookL2_25")
        schema = LEGACY_BOOK_SCHEMA if legacy else TABLE_SCHEMAS[table]
        return schema.snapshot(rows, {} if symbol is None else {"symbol": symbol})

    def book_levels(self, symbol: str) -> list[dict[str, Any]]:
        """The emulator's own full ``orderBookL2`` rows for ``symbol`` (asks high to low, then
        bids high to low, like a BitMEX partial)."""
        return self._book_rows(self._books[symbol], None)

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
        book = self._books.get(symbol)
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
            passive = book.asks if order.buy else book.bids
            plan: list[tuple[_Level, int]] = []
            wanted = order.leaves
            removable = len(passive.keys) - MIN_LEVELS
            for key in passive.keys:
                level = passive.levels[key]
                if (level.tick > tick) if order.buy else (level.tick < tick):
                    break
                take = min(level.size, wanted)
                if take == level.size:
                    if removable <= 0:
                        break
                    removable -= 1
                plan.append((level, take))
                wanted -= take
                if not wanted:
                    break
            if plan:
                match_ids = self._consume(book, passive, plan, order.buy, ts, out)
                for (level, take), match_id in zip(plan, match_ids, strict=True):
                    price_out = book.contract.price(level.tick)
                    self._accounts.fill(order, take, price_out, False, match_id, ts, out)
        self._accounts.refresh(account, symbol, ts, out)
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
        if take <= 0 or take > order.leaves or take % self._books[order.symbol].lot:
            raise ValueError(f"cannot fill {take} of an order with {order.leaves} left")
        self._now = now
        ts = self._fmt(now)
        out: list[Delta] = []
        self._accounts.fill(order, take, order.price, True, self._next_match_id(), ts, out)
        self._accounts.refresh(account, order.symbol, ts, out)
        return out

    # ------------------------------------------------------------------ construction

    def _new_book(self, spec: InstrumentSpec, start: float, ts: str) -> _Book:
        rng = self._rng
        book = _Book(spec)
        for side, first in ((book.bids, book.anchor), (book.asks, book.anchor + 1)):
            offset = 0
            for index in range(spec.depth):
                tick = first - offset if side.buy else first + offset
                self._add_level(book, side, tick, self._level_size(book), ts)
                gap = spec.spacing * (0.3 + index / 60)
                offset += 1 + int(-gap * _log(1.0 - rng.random()))
        contract = book.contract
        bid, ask = book.bids.best(), book.asks.best()
        bid_price, ask_price = contract.price(bid.tick), contract.price(ask.tick)
        mid = contract.round_price((bid_price + ask_price) / 2, 1)
        start_price = contract.round_price(spec.start_price)
        # the next funding time at 04:00, 12:00 or 20:00 UTC
        book.funding_time = (
            (start - 4 * 3600) // FUNDING_INTERVAL + 1
        ) * FUNDING_INTERVAL + 4 * 3600
        open_interest = book.lot * rng.randrange(spec.typical_lots * 500, spec.typical_lots * 5000)
        underlying = spec.underlying
        book.instrument = {
            "symbol": spec.symbol, "rootSymbol": underlying, "state": "Open", "typ": "FFWCSX",
            "listing": "2016-05-13T12:00:00.000Z", "front": "2016-05-13T12:00:00.000Z",
            "positionCurrency": "USD" if spec.kind != "linear" else underlying,
            "underlying": underlying, "quoteCurrency": spec.quote_currency,
            "underlyingSymbol": f"{underlying}=", "reference": "BMEX",
            "referenceSymbol": f".B{underlying}", "maxOrderQty": 10_000_000 * book.lot,
            "maxPrice": 1_000_000, "lotSize": book.lot, "tickSize": spec.tick_size,
            "multiplier": spec.multiplier, "settlCurrency": spec.settl_currency,
            "underlyingToPositionMultiplier": spec.underlying_to_position,
            "isQuanto": spec.kind == "quanto", "isInverse": spec.kind == "inverse",
            "initMargin": 0.01, "maintMargin": 0.005, "riskLimit": 20_000_000_000,
            "riskStep": 15_000_000_000, "taxed": True, "deleverage": True,
            "makerFee": MAKER_FEE, "takerFee": TAKER_FEE, "settlementFee": 0,
            "fundingBaseSymbol": f".{underlying}BON8H",
            "fundingQuoteSymbol": f".{spec.quote_currency}BON8H",
            "fundingPremiumSymbol": f".{spec.symbol}PI8H",
            "fundingTimestamp": self._fmt(book.funding_time),
            "fundingInterval": _FUNDING_INTERVAL_TEXT, "fundingRate": 0.0001,
            "indicativeFundingRate": 0.0001, "prevClosePrice": start_price, "totalVolume": 0,
            "volume": 0, "volume24h": 0, "prevTotalTurnover": 0, "totalTurnover": 0,
            "turnover": 0, "turnover24h": 0, "homeNotional24h": 0, "foreignNotional24h": 0,
            "prevPrice24h": start_price, "vwap": start_price, "highPrice": bid_price,
            "lowPrice": bid_price, "lastPrice": bid_price, "lastPriceProtected": bid_price,
            "lastTickDirection": "ZeroPlusTick", "lastChangePcnt": 0, "bidPrice": bid_price,
            "midPrice": mid, "askPrice": ask_price, "impactBidPrice": bid_price,
            "impactMidPrice": mid, "impactAskPrice": ask_price, "hasLiquidity": True,
            "openInterest": open_interest,
            "openValue": abs(contract.value(open_interest, mid)), "fairMethod": "FundingRate",
            "fairBasisRate": 0.1095, "fairBasis": 0, "fairPrice": mid, "markMethod": "FairPrice",
            "markPrice": mid, "indicativeSettlePrice": mid, "instantPnl": True, "timestamp": ts,
        }  # fmt: skip
        book.last_tick = bid.tick
        gross, home, foreign = contract.notionals(book.lot, bid_price)
        book.trade = {
            "timestamp": ts, "symbol": spec.symbol, "side": "Sell", "size": book.lot,
            "price": bid_price, "tickDirection": "ZeroPlusTick",
            "trdMatchID": self._next_match_id(), "grossValue": gross, "homeNotional": home,
            "foreignNotional": foreign, "trdType": "Regular",
        }  # fmt: skip
        book.quote = self._quote_row(book, ts)
        book.ob10_ts = ts
        return book

    def _seed_default_account(self, ts: str) -> None:
        """The default account: a long position and a few resting orders, one near the touch
        (synthetic trades soon fill it) and others a few percent away."""
        accounts = self._accounts
        accounts.add(DEFAULT_ACCOUNT, {"XBt": 10**8, "USDt": 10_000 * 10**6}, ts)
        main = "XBTUSD" if "XBTUSD" in self._books else self.symbols[0]
        others = [symbol for symbol in self.symbols if symbol != main]
        second = "ETHUSD" if "ETHUSD" in others else (others[0] if others else main)
        scratch: list[Delta] = []
        book = self._books[main]
        bid, ask = book.bids.best().tick, book.asks.best().tick
        accounts.seed_position(DEFAULT_ACCOUNT, main, 10 * book.lot, book.contract.price(bid))
        for side, qty, tick in (
            ("Buy", 5 * book.lot, bid - 20),
            ("Buy", 10 * book.lot, round(bid * 0.98)),
            ("Sell", 3 * book.lot, round(ask * 1.02)),
        ):
            accounts.place(DEFAULT_ACCOUNT, main, side, qty, tick, ts, "", scratch)
        book2 = self._books[second]
        ask2 = book2.asks.best().tick
        accounts.place(DEFAULT_ACCOUNT, second, "Sell", 10 * book2.lot, round(ask2 * 1.015), ts,
                       "", scratch)  # fmt: skip
        accounts.refresh(DEFAULT_ACCOUNT, main, ts, scratch)
        accounts.refresh(DEFAULT_ACCOUNT, second, ts, scratch)

    # ------------------------------------------------------------------ book primitives

    def _set_derived(self, table: str, on: bool) -> None:
        if table == "orderBookL2_25":
            self._derive25 = on
        elif table == "orderBook10":
            self._derive10 = on
        elif table not in PUBLIC_TABLES_SERVED and table not in PRIVATE_TABLES_SERVED:
            raise UnknownTableError(f"unknown table {table!r}")

    def _next_match_id(self) -> str:
        self._match += 1
        return f"00000000-006d-1000-0000-{self._match:012x}"

    def _level_size(self, book: _Book) -> int:
        return book.lot * (1 + int(-book.typical * _log(1.0 - self._rng.random())))

    def _add_level(self, book: _Book, side: _Side, tick: int, size: int, ts: str) -> _Level:
        key = side.sign * tick
        keys = side.keys
        keys.insert(bisect_left(keys, key), key)
        level_id = self._rng.randrange(10_000_000_000, 100_000_000_000)
        if self._legacy:  # the random id is drawn anyway, so both formats see the same market
            level_id = book.legacy_base - tick * book.legacy_factor
        else:
            ids = book.ids
            while level_id in ids:
                level_id = self._rng.randrange(10_000_000_000, 100_000_000_000)
            ids.add(level_id)
        level = side.levels[key] = _Level(level_id, tick, size, ts)
        return level

    def _remove_level(self, book: _Book, side: _Side, key: int) -> _Level:
        keys = side.keys
        del keys[bisect_left(keys, key)]
        level = side.levels.pop(key)
        book.ids.discard(level.id)
        return level

    # ------------------------------------------------------------------ rows

    def _full_row(self, book: _Book, side: _Side, level: _Level) -> dict[str, Any]:
        if self._legacy:
            return {"symbol": book.symbol, "id": level.id, "side": side.name, "size": level.size,
                    "price": book.contract.price(level.tick)}  # fmt: skip
        return {
            "symbol": book.symbol, "id": level.id, "side": side.name, "size": level.size,
            "price": book.contract.price(level.tick), "timestamp": level.ts,
            "transactTime": level.ts,
        }  # fmt: skip

    def _update_row(self, book: _Book, side: _Side, level: _Level) -> dict[str, Any]:
        if self._legacy:
            return {"symbol": book.symbol, "id": level.id, "side": side.name, "size": level.size}
        return self._full_row(book, side, level)

    def _delete_row(self, book: _Book, side: _Side, level: _Level, ts: str) -> dict[str, Any]:
        if self._legacy:
            return {"symbol": book.symbol, "id": level.id, "side": side.name}
        return {
            "symbol": book.symbol, "id": level.id, "side": side.name,
            "price": book.contract.price(level.tick), "timestamp": ts, "transactTime": ts,
        }  # fmt: skip

    def _book_rows(self, book: _Book, depth: int | None) -> list[dict[str, Any]]:
        asks = book.asks.top(len(book.asks.keys) if depth is None else depth)
        bids = book.bids.top(len(book.bids.keys) if depth is None else depth)
        rows = [self._full_row(book, book.asks, level) for level in reversed(asks)]
        rows.extend(self._full_row(book, book.bids, level) for level in bids)
        return rows

    def _ob10_row(self, book: _Book) -> dict[str, Any]:
        price = book.contract.price
        return {
            "symbol": book.symbol,
            "bids": [[price(level.tick), level.size] for level in book.bids.top(10)],
            "asks": [[price(level.tick), level.size] for level in book.asks.top(10)],
            "timestamp": book.ob10_ts,
        }

    def _quote_row(self, book: _Book, ts: str) -> dict[str, Any]:
        bid, ask = book.bids.best(), book.asks.best()
        price = book.contract.price
        return {
            "timestamp": ts, "symbol": book.symbol, "bidSize": bid.size,
            "bidPrice": price(bid.tick), "askPrice": price(ask.tick), "askSize": ask.size,
        }  # fmt: skip

    # ------------------------------------------------------------------ events

    def _after_book(
        self,
        book: _Book,
        side: _Side,
        before: list[int] | None,
        min_rank: int,
        ts: str,
        out: list[Delta],
        gone: dict[int, _Level] | None = None,
        resized: Sequence[_Level] = (),
    ) -> None:
        """Derived tables and quote after ``side`` changed at ``min_rank`` or deeper."""
        if before is not None:
            self._emit_l2_25(book, side, before, gone or {}, resized, ts, out)
        if min_rank < 10:
            book.ob10_ts = ts
            if self._derive10:
                out.append(Delta("orderBook10", "update", book.symbol, [self._ob10_row(book)]))
        if min_rank == 0:
            book.quote = self._quote_row(book, ts)
            out.append(Delta("quote", "insert", book.symbol, [dict(book.quote)]))

    def _top25(self, side: _Side, min_rank: int) -> list[int] | None:
        """The keys of the top 25 levels before a change at ``min_rank``, if L2_25 needs them."""
        if not self._derive25 or min_rank >= 25:
            return None
        return side.keys[:25]

    def _emit_l2_25(
        self,
        book: _Book,
        side: _Side,
        before: list[int],
        gone: dict[int, _Level],
        resized: Sequence[_Level],
        ts: str,
        out: list[Delta],
    ) -> None:
        """``orderBookL2_25`` deltas from the keys of the top 25 before and after a change that
        removed the ``gone`` levels, added levels and/or changed the size of ``resized``."""
        after = side.keys[:25]
        was, now = set(before), set(after)
        levels = side.levels
        symbol = book.symbol
        deletes = [
            self._delete_row(book, side, gone[key] if key in gone else levels[key], ts)
            for key in before
            if key not in now
        ]
        inserts = [self._full_row(book, side, levels[key]) for key in after if key not in was]
        updates = [
            self._update_row(book, side, level)
            for level in resized
            if side.sign * level.tick in was and side.sign * level.tick in now
        ]
        if deletes:
            out.append(Delta("orderBookL2_25", "delete", symbol, deletes))
        if inserts:
            out.append(Delta("orderBookL2_25", "insert", symbol, inserts))
        if updates:
            out.append(Delta("orderBookL2_25", "update", symbol, updates))

    def _book_event(self, book: _Book, ts: str, out: list[Delta]) -> None:
        """Size changes, new levels or removed levels on one side (the hot path: inlined)."""
        random = self._rng.random
        side = book.bids if random() < 0.5 else book.asks
        keys = side.keys
        n = len(keys)
        count = 1 + int(-_ROWS_MEAN * _log(1.0 - random()))
        choice = random()
        insert_share = 0.16 * book.depth / n
        if choice < insert_share:
            self._insert_levels(book, side, count, ts, out)
            return
        deleting = choice < insert_share + 0.16 * n / book.depth and n - count >= MIN_LEVELS
        # a cluster of nearby levels, starting at a rank biased to the top of the book
        if random() < 0.75:
            rank = int(-_TOP_MEAN_RANK * _log(1.0 - random())) % n
        else:
            rank = int(random() * n)
        ranks = [rank]
        for _ in range(count - 1):
            rank += 1 + int(-_CLUSTER_GAP * _log(1.0 - random()))
            if rank >= n:
                break
            ranks.append(rank)
        first = ranks[0]
        before = self._top25(side, first) if deleting and self._derive25 else None
        symbol, name, price = book.symbol, side.name, book.contract.price
        legacy = self._legacy
        rows: list[dict[str, Any]] = []
        gone: dict[int, _Level] = {}
        if deleting:
            for key in [keys[rank] for rank in ranks]:
                level = gone[key] = self._remove_level(book, side, key)
                if legacy:
                    rows.append({"symbol": symbol, "id": level.id, "side": name})
                else:
                    rows.append({"symbol": symbol, "id": level.id, "side": name,
                                 "price": price(level.tick), "timestamp": ts,
                                 "transactTime": ts})  # fmt: skip
            out.append(Delta("orderBookL2", "delete", symbol, rows))
        else:
            levels = side.levels
            lot = book.lot
            step = book.typical / 3
            for rank in ranks:
                level = levels[keys[rank]]
                lots = level.size // lot
                change = 1 + int(-step * _log(1.0 - random()))
                lots = lots - change if lots > change and random() < 0.5 else lots + change
                level.size = size = lots * lot
                level.ts = ts
                if legacy:
                    rows.append({"symbol": symbol, "id": level.id, "side": name, "size": size})
                else:
                    rows.append({"symbol": symbol, "id": level.id, "side": name, "size": size,
                                 "price": price(level.tick), "timestamp": ts,
                                 "transactTime": ts})  # fmt: skip
            out.append(Delta("orderBookL2", "update", symbol, rows))
            if self._derive25 and first < 25:  # size changes keep ranks: no diff needed
                top = [dict(row) for rank, row in zip(ranks, rows, strict=True) if rank < 25]
                out.append(Delta("orderBookL2_25", "update", symbol, top))
        if first < 10:
            self._after_book(book, side, before, first, ts, out, gone)
        elif before is not None:
            self._emit_l2_25(book, side, before, gone, (), ts, out)

    def _insert_levels(
        self, book: _Book, side: _Side, count: int, ts: str, out: list[Delta]
    ) -> None:
        """New levels: mostly just behind the best, some inside the spread, some deep."""
        random = self._rng.random
        bid = -book.bids.keys[0]
        ask = book.asks.keys[0]
        spread = ask - bid
        keys = side.keys
        levels = side.levels
        sign = side.sign
        span = abs(keys[-1] - keys[0]) + 20
        ticks: list[int] = []
        if spread > 1 and random() < 0.2:  # a new best level inside the spread
            ticks.append(bid + 1 + int(random() * (spread - 1)))
        for _ in range(3 * count):
            if len(ticks) >= count:
                break
            if random() < 0.85:
                offset = 1 + int(-book.insert_offset * _log(1.0 - random()))
            else:
                offset = 1 + int(random() * span)
            tick = bid - offset if side.buy else ask + offset
            if tick > 0 and sign * tick not in levels and tick not in ticks:
                ticks.append(tick)
        if not ticks:
            return
        first = min(bisect_left(keys, sign * tick) for tick in ticks)
        before = self._top25(side, first) if self._derive25 else None
        rows = [
            self._full_row(
                book, side, self._add_level(book, side, tick, self._level_size(book), ts)
            )
            for tick in ticks
        ]
        out.append(Delta("orderBookL2", "insert", book.symbol, rows))
        self._after_book(book, side, before, first, ts, out)

    def _trade_event(self, book: _Book, ts: str, out: list[Delta]) -> None:
        """The fair price moves (a random walk with drift regimes, reverting to the start
        price); an aggressor takes the levels between the touch and the fair price (at least
        one, part of the last one half of the time)."""
        random = self._rng.random
        if random() < 0.05:
            book.trend = 2 * random() - 1
        noise = (random() + random() + random() - 1.5) * 2  # mean 0, sd 1
        book.fair += book.volatility * (noise + 0.5 * book.trend)
        book.fair += (book.anchor - book.fair) * 0.002
        bid, ask = -book.bids.keys[0], book.asks.keys[0]
        fair = book.fair
        buy = fair >= ask or (fair > bid and random() < (fair - bid) / (ask - bid))
        passive = book.asks if buy else book.bids
        spare = len(passive.keys) - MIN_LEVELS
        limit = min(12, spare)
        plan: list[tuple[_Level, int]] = []
        for level in passive.top(limit):
            if plan and ((level.tick > fair) if buy else (level.tick < fair)):
                break
            plan.append((level, level.size))
        if not plan:
            return
        last = plan[-1][0]
        lots = last.size // book.lot
        if lots > 1 and (random() < 0.5 or len(plan) >= limit):
            plan[-1] = (last, book.lot * (1 + int(random() * (lots - 1))))
        elif len(plan) > spare:
            return
        self._consume(book, passive, plan, buy, ts, out)
        total = sum(take for _, take in plan)
        self._accounts.on_trade(book.symbol, buy, last.tick, total, ts, self._next_match_id, out)

    def _consume(
        self,
        book: _Book,
        side: _Side,
        plan: list[tuple[_Level, int]],
        buy: bool,
        ts: str,
        out: list[Delta],
    ) -> list[str]:
        """An aggressor takes ``plan`` (top levels of ``side``, best first, and the quantity
        taken from each). Sends book, derived, trade, quote and instrument deltas; returns the
        trade rows' trdMatchIDs."""
        before = self._top25(side, 0)
        deletes: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        gone: dict[int, _Level] = {}
        resized: list[_Level] = []
        for level, take in plan:
            if take >= level.size:
                key = side.sign * level.tick
                gone[key] = self._remove_level(book, side, key)
                deletes.append(self._delete_row(book, side, level, ts))
            else:
                level.size -= take
                level.ts = ts
                resized.append(level)
                updates.append(self._update_row(book, side, level))
        symbol = book.symbol
        if deletes:
            out.append(Delta("orderBookL2", "delete", symbol, deletes))
        if updates:
            out.append(Delta("orderBookL2", "update", symbol, updates))
        self._after_book(book, side, before, 0, ts, out, gone, resized)
        contract = book.contract
        aggressor = "Buy" if buy else "Sell"
        rows: list[dict[str, Any]] = []
        match_ids: list[str] = []
        volume = turnover = 0
        home_total = foreign_total = 0.0
        direction = book.last_direction
        for level, take in plan:
            if level.tick > book.last_tick:
                direction = "PlusTick"
            elif level.tick < book.last_tick:
                direction = "MinusTick"
            elif direction in ("PlusTick", "MinusTick"):
                direction = "ZeroPlusTick" if direction == "PlusTick" else "ZeroMinusTick"
            book.last_tick = level.tick
            price = contract.price(level.tick)
            gross, home, foreign = contract.notionals(take, price)
            match_id = self._next_match_id()
            match_ids.append(match_id)
            rows.append({
                "timestamp": ts, "symbol": symbol, "side": aggressor, "size": take,
                "price": price, "tickDirection": direction, "trdMatchID": match_id,
                "grossValue": gross, "homeNotional": home, "foreignNotional": foreign,
                "trdType": "Regular",
            })  # fmt: skip
            volume += take
            turnover += gross
            home_total += home
            foreign_total += foreign
        book.last_direction = direction
        book.trade = dict(rows[-1])
        out.append(Delta("trade", "insert", symbol, rows))
        inst = book.instrument
        last = rows[-1]["price"]
        home24 = round(inst["homeNotional24h"] + home_total, 8)
        foreign24 = round(inst["foreignNotional24h"] + foreign_total, 8)
        self._instrument_update(book, {
            "lastPrice": last, "lastPriceProtected": last, "lastTickDirection": direction,
            "lastChangePcnt": round(last / inst["prevPrice24h"] - 1, 4),
            "highPrice": max(inst["highPrice"], last), "lowPrice": min(inst["lowPrice"], last),
            "totalVolume": inst["totalVolume"] + volume, "volume": inst["volume"] + volume,
            "volume24h": inst["volume24h"] + volume,
            "totalTurnover": inst["totalTurnover"] + turnover,
            "turnover": inst["turnover"] + turnover,
            "turnover24h": inst["turnover24h"] + turnover, "homeNotional24h": home24,
            "foreignNotional24h": foreign24,
            "vwap": contract.round_price(foreign24 / home24, 1) if home24 else last,
        }, ts, out)  # fmt: skip
        return match_ids

    def _instrument_update(
        self, book: _Book, fields: dict[str, Any], ts: str, out: list[Delta]
    ) -> None:
        row = book.instrument
        update: dict[str, Any] = {"symbol": book.symbol}
        for name, value in fields.items():
            if row.get(name) != value:
                update[name] = value
        if len(update) > 1:
            update["timestamp"] = ts
            row.update(update)
            out.append(Delta("instrument", "update", book.symbol, [update]))

    def _mark_event(self, book: _Book, ts: str, out: list[Delta]) -> None:
        rng = self._rng
        contract = book.contract
        inst = book.instrument
        bid, ask = book.bids.best(), book.asks.best()
        bid_price, ask_price = contract.price(bid.tick), contract.price(ask.tick)
        mid = (bid_price + ask_price) / 2
        book.basis = 0.9 * book.basis + rng.gauss(0.0, 0.0002)
        index = contract.round_price(mid * (1 + book.basis), 1)
        fair_basis = contract.round_price(index * inst["fundingRate"] / 2, 1)
        mark = contract.round_price(index + fair_basis, 1)
        fields: dict[str, Any] = {
            "markPrice": mark, "fairPrice": mark, "fairBasis": fair_basis,
            "indicativeSettlePrice": index,
        }  # fmt: skip
        if rng.random() < 0.3:
            oi = max(book.lot, inst["openInterest"] + book.lot * int(rng.gauss(0, book.typical)))
            fields["openInterest"] = oi
            fields["openValue"] = abs(contract.value(oi, mark))
        if rng.random() < 0.15:
            rate = inst["indicativeFundingRate"] + rng.gauss(0.0, 0.00002)
            fields["indicativeFundingRate"] = round(max(-0.00375, min(0.00375, rate)), 6)
        if rng.random() < 0.3:
            mid_out = contract.round_price(mid, 1)
            fields.update(bidPrice=bid_price, askPrice=ask_price, midPrice=mid_out,
                          impactBidPrice=bid_price, impactAskPrice=ask_price,
                          impactMidPrice=mid_out)  # fmt: skip
        self._instrument_update(book, fields, ts, out)
        if self._marks[book.symbol] != mark:
            self._marks[book.symbol] = mark
            self._accounts.on_mark(book.symbol, ts, out)

    def _liquidation_event(self, book: _Book, ts: str, out: list[Delta]) -> None:
        rng = self._rng
        liquidations = book.liquidations
        symbol = book.symbol
        if liquidations and (len(liquidations) >= 3 or rng.random() < 0.7):
            order_id = next(iter(liquidations))
            row = liquidations[order_id]
            choice = rng.random()
            lots = row["leavesQty"] // book.lot
            taken = 1 + int(rng.random() * lots)
            if choice < 0.5 and taken < lots:
                update = {
                    "orderID": order_id,
                    "symbol": symbol,
                    "leavesQty": (lots - taken) * book.lot,
                }
            elif choice < 0.7:
                tick = book.contract.tick_of(row["price"])
                tick += (1 if row["side"] == "Buy" else -1) * (1 + int(rng.random() * 5))
                update = {"orderID": order_id, "symbol": symbol,
                          "price": book.contract.price(tick)}  # fmt: skip
            else:
                del liquidations[order_id]
                out.append(Delta("liquidation", "delete", symbol,
                                 [{"orderID": order_id, "symbol": symbol}]))  # fmt: skip
                return
            row.update(update)
            out.append(Delta("liquidation", "update", symbol, [update]))
            return
        buy = rng.random() < 0.5
        offset = 1 + int(rng.random() * 10)
        tick = book.asks.keys[0] + offset if buy else -book.bids.keys[0] - offset
        order_id = random_guid(rng)
        new = {
            "orderID": order_id, "symbol": symbol, "side": "Buy" if buy else "Sell",
            "price": book.contract.price(tick),
            "leavesQty": book.lot * (1 + int(rng.expovariate(1.0 / (3 * book.typical)))),
        }  # fmt: skip
        liquidations[order_id] = dict(new)
        out.append(Delta("liquidation", "insert", symbol, [new]))

    def _funding_event(self, book: _Book, ts: str, out: list[Delta]) -> None:
        inst = book.instrument
        rate = inst["fundingRate"]
        row = {
            "timestamp": self._fmt(book.funding_time), "symbol": book.symbol,
            "fundingInterval": _FUNDING_INTERVAL_TEXT, "fundingRate": rate,
            "fundingRateDaily": round(rate * 3, 8),
        }  # fmt: skip
        self._funding.append(dict(row))
        out.append(Delta("funding", "insert", book.symbol, [row]))
        book.funding_time += FUNDING_INTERVAL
        next_rate = inst["indicativeFundingRate"]
        predicted = round(max(-0.00375, min(0.00375, 0.0001 + self._rng.gauss(0, 0.0001))), 6)
        self._instrument_update(book, {
            "fundingTimestamp": self._fmt(book.funding_time), "fundingRate": next_rate,
            "indicativeFundingRate": predicted,
        }, ts, out)  # fmt: skip
