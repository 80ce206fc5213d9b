"""Instruments and funding: contract specs and arithmetic, and each symbol's instrument row.

Theory of operation: an ``InstrumentSpec`` is what BitMEX's instrument row says about a contract
that never changes (tick, lot, multiplier, currencies) plus the synthetic market's knobs (depth,
level spacing, activity weight); ``spec_for`` knows the listed symbols and derives a generic spec
for any other name. ``Contract`` does a spec's arithmetic: prices live as integer ticks and become
JSON numbers only on output, so they never drift, and contract values follow BitMEX's inverse /
quanto / linear formulas.

``Instrument`` is one symbol's live ``instrument`` row and funding state. Every change goes
through ``update``, which sends only the columns that changed and applies them to the stored row
at once, so the row is always the partial image of everything sent. Its events (a mark/index
move, a funding payment) draw their chance from the ``Random`` the market hands in and read no
clock: the caller passes the timestamp text.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any, Final

from ._schemas import Delta, timespan

__all__ = [
    "DEFAULT_SYMBOLS",
    "FUNDING_INTERVAL",
    "MAKER_FEE",
    "TAKER_FEE",
    "XBT_REFERENCE_PRICE",
    "Contract",
    "Instrument",
    "InstrumentSpec",
    "spec_for",
]

DEFAULT_SYMBOLS: Final = ("XBTUSD", "ETHUSD", "SOLUSD")
# Quanto notionals need an XBT/USD rate; a fixed reference keeps every instrument independent.
XBT_REFERENCE_PRICE: Final = 95_000.0
MAKER_FEE: Final = -0.00025
TAKER_FEE: Final = 0.00075
FUNDING_INTERVAL: Final = 8 * 3600.0
_FUNDING_INTERVAL_TEXT: Final = timespan(FUNDING_INTERVAL)


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """A synthetic instrument. ``kind``: ``inverse`` (XBTUSD), ``quanto`` or ``linear`` (USDT).

    ``multiplier`` is BitMEX's (negative for inverse contracts); linear contracts count
    ``underlying_to_position`` position units per unit of the underlying. ``depth`` is the
    number of book levels each side starts with (and hovers around), ``spacing`` the mean gap
    between levels near the top of the book in ticks, growing by one ``spacing`` every
    ``spacing_growth`` levels further down (the book thins out), ``typical_lots`` the scale of a
    level's size, ``weight`` the instrument's share of market activity.
    """

    symbol: str
    tick_size: float
    lot_size: int
    start_price: float
    kind: str = "quanto"
    multiplier: int = 100
    underlying: str = ""
    quote_currency: str = "USD"
    settl_currency: str = "XBt"
    underlying_to_position: int = 1
    depth: int = 300
    spacing: float = 1.0
    spacing_growth: float = 60.0
    typical_lots: int = 100
    weight: float = 1.0
    legacy_index: int = 400  # instrument index of the pre-2023 id formula (§10.2)
    legacy_tick: float = 0.0  # book tick of the pre-2023 id formula; 0 means tick_size

    def __post_init__(self) -> None:
        if self.kind not in ("inverse", "quanto", "linear"):
            raise ValueError(f"unknown contract kind {self.kind!r}")
        if not (self.tick_size > 0 and self.lot_size > 0 and self.start_price > 0):
            raise ValueError(f"bad instrument spec for {self.symbol!r}")
        inverse = 1 / self.tick_size
        if abs(inverse - round(inverse)) > 1e-6 * inverse:
            raise ValueError(f"tick size {self.tick_size} must divide 1 evenly")
        reach = self.depth * max(1.0, self.spacing) * (2 + self.depth / self.spacing_growth)
        if self.start_price / self.tick_size < 4 * reach:
            raise ValueError(f"start price of {self.symbol!r} is too few ticks above zero")

    @property
    def index_symbol(self) -> str:
        """The index the contract references (``.BXBT``; ``.B<root>T`` for USDT contracts, as
        TRXUSDT referenced ``.BTRXT`` in the roq-bitmex instrument partial, 2025-09)."""
        return f".B{self.underlying}{'T' if self.kind == 'linear' else ''}"


# Contract specs as BitMEX listed them last. Sources: XBTUSD tick 0.1 and lot 100 (2024-11
# orderBookL2/orderBook10/trade rows, ../shared/captures/nautilus_trader_bitmex_ws_rows.jsonl
# lines 10-11 and 15: prices 98459.9, sizes in hundreds); ETHUSD tick 0.01 since 2024-07-31
# (2024-11 liquidation price 3208.61, unresolved_liquidation-capture-2024.jsonl line 32);
# XBTUSDT lot 1000 and multiplier 1 with underlyingToPositionMultiplier 10^6 (the linear formula
# of the 2025 TRXUSDT row: multiplier = quoteToSettleMultiplier / underlyingToPositionMultiplier,
# roq-bitmex_tests.jsonl line 8); XBTUSD's book shape (1-tick spread, top-10 levels spread over
# ~140 ticks, sizes 200..60,000) from the same 2024-11 orderBook10 row. Other symbols' sizes
# and spacings are scaled from these.

_KNOWN_SPECS: Final = {
    spec.symbol: spec
    for spec in (
        InstrumentSpec("XBTUSD", 0.1, 100, 95_000.0, "inverse", -100_000_000, "XBT",
                       depth=500, spacing=12.0, spacing_growth=400.0, typical_lots=60,
                       weight=6.0, legacy_index=88, legacy_tick=0.01),
        InstrumentSpec("ETHUSD", 0.01, 1, 3_300.0, "quanto", 100, "ETH", depth=400,
                       spacing=8.0, spacing_growth=200.0, typical_lots=300, weight=2.5,
                       legacy_index=297),
        InstrumentSpec("SOLUSD", 0.01, 1, 190.0, "quanto", 100, "SOL", depth=300,
                       spacing=2.0, spacing_growth=150.0, typical_lots=200, weight=1.5,
                       legacy_index=330),
        InstrumentSpec("XBTUSDT", 0.5, 1000, 95_000.0, "linear", 1, "XBT", "USDT", "USDt",
                       1_000_000, depth=400, spacing=2.0, typical_lots=100, weight=2.0,
                       legacy_index=360),
        InstrumentSpec("ETHUSDT", 0.05, 1000, 3_300.0, "linear", 1, "ETH", "USDT", "USDt",
                       1_000_000, depth=300, spacing=2.0, typical_lots=200, weight=1.5,
                       legacy_index=361),
        InstrumentSpec("SOLUSDT", 0.01, 1000, 190.0, "linear", 1, "SOL", "USDT", "USDt",
                       1_000_000, depth=300, typical_lots=500, weight=1.0, legacy_index=362),
    )
}  # fmt: skip


def spec_for(symbol: str) -> InstrumentSpec:
    """The spec of a known symbol, or a generic one derived (deterministically) from its name."""
    known = _KNOWN_SPECS.get(symbol)
    if known is not None:
        return known
    crc = zlib.crc32(symbol.encode())
    start = float(50 + crc % 950)
    index = 500 + crc % 400
    if symbol.endswith("USDT"):
        root = symbol[:-4] or symbol
        return InstrumentSpec(
            symbol, 0.01, 1000, start, "linear", 1, root, "USDT", "USDt", 1_000_000,
            legacy_index=index,
        )  # fmt: skip
    root = symbol[:-3] if symbol.endswith("USD") and len(symbol) > 3 else symbol
    return InstrumentSpec(symbol, 0.01, 1, start, "quanto", 100, root, legacy_index=index)


class Contract:
    """An instrument's arithmetic: tick <-> price, contract values and trade notionals."""

    __slots__ = ("_inv", "decimals", "inverse", "linear", "mult", "spec", "tick_size")

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.tick_size = spec.tick_size
        self._inv = round(1 / spec.tick_size)
        text = f"{spec.tick_size:.10f}".rstrip("0")
        self.decimals = len(text.partition(".")[2])
        self.mult = spec.multiplier
        self.inverse = spec.kind == "inverse"
        self.linear = spec.kind == "linear"

    def price(self, tick: int) -> float:
        """The price of ``tick``, always a float: BitMEX's 2024+ feed wrote ``94998.0``."""
        return tick / self._inv

    def tick_of(self, price: float) -> int:
        """The tick of ``price``; ``ValueError`` unless it is a positive multiple of the tick."""
        tick = round(price * self._inv)
        if tick <= 0 or abs(tick / self._inv - price) > 1e-9 * max(1.0, abs(price)):
            raise ValueError(f"price {price} is not a positive multiple of {self.tick_size}")
        return tick

    def round_price(self, price: float, extra_decimals: int = 0) -> float:
        return float(round(price, self.decimals + extra_decimals))

    def value(self, qty: int, price: float) -> int:
        """Signed value of ``qty`` contracts at ``price`` in settlement units (XBt / USDt).

        BitMEX's convention: ``multiplier * qty / price`` for inverse contracts (negative for a
        long), ``multiplier * qty * price`` otherwise. Inverse values are rounded per lot, as
        BitMEX did since its 2021 lot-size change: a 100-contract XBTUSD trade at 98570.9 had
        ``grossValue`` 101450 (nautilus_trader ws_trade row, 2024-11,
        ../shared/captures/nautilus_trader_bitmex_ws_rows.jsonl line 15), not 100 * 1014.
        """
        if self.inverse:
            lot = self.spec.lot_size
            if qty % lot:
                return round(self.mult * qty / price)
            return (qty // lot) * round(self.mult * lot / price)
        return round(qty * price * self.mult)

    def notionals(self, size: int, price: float) -> tuple[int, float, float]:
        """``(grossValue, homeNotional, foreignNotional)`` of a trade of ``size`` at ``price``."""
        if self.inverse:
            gross = -self.value(size, price)
            return gross, round(gross / 1e8, 8), float(size)
        gross = round(size * price * self.mult)
        if self.linear:
            home = size / self.spec.underlying_to_position
        else:
            home = size * self.mult * XBT_REFERENCE_PRICE / 1e8
        return gross, round(home, 8), round(home * price, 8)

    def entry_price(self, qty: int, cost: int) -> float:
        """Average entry price of ``qty`` contracts that cost ``cost`` (see ``value``)."""
        if qty == 0 or cost == 0:
            return 0.0
        raw = self.mult * qty / cost if self.inverse else cost / (qty * self.mult)
        return self.round_price(raw, 1)


class Instrument:
    """One symbol's ``instrument`` row and funding state; see the module docstring.

    ``row`` is empty until ``open`` fills it (the market draws its book first, then opens the
    instrument at that book's prices).
    """

    __slots__ = ("basis", "contract", "funding_time", "index", "row", "spec", "symbol")

    def __init__(self, spec: InstrumentSpec, contract: Contract) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.contract = contract
        self.basis = 0.0  # index premium over the book's mid, a slow random walk
        self.funding_time = 0.0  # epoch seconds of the next funding
        self.index = 0.0  # the underlying's index price (published by its index instrument)
        self.row: dict[str, Any] = {}

    def open(
        self,
        bid_price: float,
        ask_price: float,
        start: float,
        ts: str,
        fmt: Callable[[float], str],
        rng: Random,
    ) -> None:
        """The first row, at the book's touch ``bid_price``/``ask_price`` and time ``start``."""
        spec = self.spec
        contract = self.contract
        lot = spec.lot_size
        mid = contract.round_price((bid_price + ask_price) / 2, 1)
        self.index = mid
        start_price = contract.round_price(spec.start_price)
        # the next funding time at 04:00, 12:00 or 20:00 UTC
        self.funding_time = (
            (start - 4 * 3600) // FUNDING_INTERVAL + 1
        ) * FUNDING_INTERVAL + 4 * 3600
        open_interest = lot * rng.randrange(spec.typical_lots * 500, spec.typical_lots * 5000)
        underlying = spec.underlying
        self.row = {
            "symbol": spec.symbol, "rootSymbol": underlying, "state": "Open", "typ": "FFWCSX",
            "listing": "2016-05-13T12:00:00.000Z", "front": "2016-05-13T12:00:00.000Z",
            "positionCurrency": "USD" if spec.kind != "linear" else underlying,
            "underlying": underlying, "quoteCurrency": spec.quote_currency,
            "underlyingSymbol": f"{underlying}=", "reference": "BMEX",
            "referenceSymbol": spec.index_symbol, "maxOrderQty": 10_000_000 * lot,
            "maxPrice": 1_000_000.0, "lotSize": lot, "tickSize": spec.tick_size,
            "multiplier": spec.multiplier, "settlCurrency": spec.settl_currency,
            "underlyingToPositionMultiplier": spec.underlying_to_position,
            **self._multipliers(),
            "isQuanto": spec.kind == "quanto", "isInverse": spec.kind == "inverse",
            "initMargin": 0.01, "maintMargin": 0.005, "riskLimit": 20_000_000_000,
            "riskStep": 15_000_000_000, "taxed": True, "deleverage": True,
            "makerFee": MAKER_FEE, "takerFee": TAKER_FEE, "settlementFee": 0.0,
            "fundingBaseSymbol": f".{underlying}BON8H",
            "fundingQuoteSymbol": f".{spec.quote_currency}BON8H",
            "fundingPremiumSymbol": f".{spec.symbol}PI8H",
            "fundingTimestamp": fmt(self.funding_time),
            "fundingInterval": _FUNDING_INTERVAL_TEXT, "fundingRate": 0.0001,
            "indicativeFundingRate": 0.0001, "prevClosePrice": start_price,
            "prevTotalVolume": 0, "totalVolume": 0,
            "volume": 0, "volume24h": 0, "prevTotalTurnover": 0, "totalTurnover": 0,
            "turnover": 0, "turnover24h": 0, "homeNotional24h": 0.0, "foreignNotional24h": 0.0,
            "prevPrice24h": start_price, "vwap": start_price, "highPrice": bid_price,
            "lowPrice": bid_price, "lastPrice": bid_price, "lastPriceProtected": bid_price,
            "lastTickDirection": "ZeroPlusTick", "lastChangePcnt": 0.0, "bidPrice": bid_price,
            "midPrice": mid, "askPrice": ask_price, "impactBidPrice": bid_price,
            "impactMidPrice": mid, "impactAskPrice": ask_price, "hasLiquidity": True,
            "openInterest": open_interest,
            "openValue": abs(contract.value(open_interest, mid)), "fairMethod": "FundingRate",
            "fairBasisRate": 0.1095, "fairBasis": 0.0, "fairPrice": mid, "markMethod": "FairPrice",
            "markPrice": mid, "indicativeSettlePrice": mid, "instantPnl": True,
            "minTick": spec.tick_size / 10, "fundingBaseRate": 0.0003,
            "fundingQuoteRate": 0.0006, "timestamp": ts,
        }  # fmt: skip

    def _multipliers(self) -> dict[str, int]:
        """``underlyingToSettleMultiplier`` (inverse: the multiplier) or
        ``quoteToSettleMultiplier`` (linear: 10^6 USDt per USDT, as in the 2025 TRXUSDT row);
        BitMEX omitted the one that does not apply (nulls are omitted since 2023)."""
        spec = self.spec
        if spec.kind == "inverse":
            return {"underlyingToSettleMultiplier": spec.multiplier}
        if spec.kind == "linear":
            return {"quoteToSettleMultiplier": spec.multiplier * spec.underlying_to_position}
        return {}

    def update(self, fields: dict[str, Any], ts: str, out: list[Delta]) -> None:
        """Send (and apply) the ``fields`` whose values differ from the row's; nothing if none."""
        row = self.row
        update: dict[str, Any] = {"symbol": self.symbol}
        for name, value in fields.items():
            if row.get(name) != value:
                update[name] = value
        if len(update) > 1:
            update["timestamp"] = ts
            row.update(update)
            out.append(Delta("instrument", "update", self.symbol, [update]))

    def record_trades(
        self,
        last: float,
        direction: str,
        volume: int,
        turnover: int,
        home: float,
        foreign: float,
        ts: str,
        out: list[Delta],
    ) -> None:
        """Trades printed: last price, tick direction, volumes, turnovers and notionals move."""
        row = self.row
        home24 = round(row["homeNotional24h"] + home, 8)
        foreign24 = round(row["foreignNotional24h"] + foreign, 8)
        self.update({
            "lastPrice": last, "lastPriceProtected": last, "lastTickDirection": direction,
            "lastChangePcnt": round(last / row["prevPrice24h"] - 1, 4),
            "highPrice": max(row["highPrice"], last), "lowPrice": min(row["lowPrice"], last),
            "totalVolume": row["totalVolume"] + volume, "volume": row["volume"] + volume,
            "volume24h": row["volume24h"] + volume,
            "totalTurnover": row["totalTurnover"] + turnover,
            "turnover": row["turnover"] + turnover,
            "turnover24h": row["turnover24h"] + turnover, "homeNotional24h": home24,
            "foreignNotional24h": foreign24,
            "vwap": self.contract.round_price(foreign24 / home24, 1) if home24 else last,
        }, ts, out)  # fmt: skip

    def mark_event(
        self, bid_price: float, ask_price: float, rng: Random, ts: str, out: list[Delta]
    ) -> float:
        """Index, fair and mark prices follow the book's mid (plus a drifting basis); now and
        then open interest, the predicted funding rate and the impact prices move too.
        Returns the new mark price."""
        contract = self.contract
        spec = self.spec
        row = self.row
        mid = (bid_price + ask_price) / 2
        self.basis = 0.9 * self.basis + rng.gauss(0.0, 0.0002)
        index = contract.round_price(mid * (1 + self.basis), 1)
        self.index = index
        fair_basis = contract.round_price(index * row["fundingRate"] / 2, 1)
        mark = contract.round_price(index + fair_basis, 1)
        fields: dict[str, Any] = {
            "markPrice": mark, "fairPrice": mark, "fairBasis": fair_basis,
            "indicativeSettlePrice": index,
        }  # fmt: skip
        if rng.random() < 0.3:
            lot = spec.lot_size
            oi = max(lot, row["openInterest"] + lot * int(rng.gauss(0, spec.typical_lots)))
            fields["openInterest"] = oi
            fields["openValue"] = abs(contract.value(oi, mark))
        if rng.random() < 0.15:
            rate = row["indicativeFundingRate"] + rng.gauss(0.0, 0.00002)
            fields["indicativeFundingRate"] = round(max(-0.00375, min(0.00375, rate)), 6)
        if rng.random() < 0.3:
            mid_out = contract.round_price(mid, 1)
            fields.update(bidPrice=bid_price, askPrice=ask_price, midPrice=mid_out,
                          impactBidPrice=bid_price, impactAskPrice=ask_price,
                          impactMidPrice=mid_out)  # fmt: skip
        self.update(fields, ts, out)
        return mark

    def funding_row(self, fmt: Callable[[float], str], when: float) -> dict[str, Any]:
        """The ``funding`` row of a payment at ``when`` at the current rate. The daily rate is
        the rate times 3 in floating point, unrounded, as BitMEX computed it (2024-05 funding
        partial: ``"fundingRateDaily":3.0000000000000003E-4``, roq-bitmex line 7)."""
        rate = self.row["fundingRate"]
        return {
            "timestamp": fmt(when), "symbol": self.symbol,
            "fundingInterval": _FUNDING_INTERVAL_TEXT, "fundingRate": rate,
            "fundingRateDaily": rate * 3,
        }  # fmt: skip

    def funding_event(
        self, rng: Random, fmt: Callable[[float], str], ts: str, out: list[Delta]
    ) -> dict[str, Any]:
        """Funding is paid at the current rate at ``funding_time`` (04:00, 12:00 or 20:00 UTC):
        a ``funding`` insert dated then, then the next funding time, rate and predicted rate.
        Returns (a copy of) the funding row."""
        row = self.row
        funding = self.funding_row(fmt, self.funding_time)
        kept = dict(funding)
        out.append(Delta("funding", "insert", self.symbol, [funding]))
        self.funding_time += FUNDING_INTERVAL
        next_rate = row["indicativeFundingRate"]
        predicted = round(max(-0.00375, min(0.00375, 0.0001 + rng.gauss(0, 0.0001))), 6)
        self.update({
            "fundingTimestamp": fmt(self.funding_time), "fundingRate": next_rate,
            "indicativeFundingRate": predicted,
        }, ts, out)  # fmt: skip
        return kept
