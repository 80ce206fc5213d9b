"""Value types, table schemas, instrument specs and formatting for the emulator's market model.

Theory of operation: everything here is plain data and pure functions shared by ``_market``
(the synthetic public market) and ``_accounts`` (private tables). ``Delta`` is one table message
the server should send (never a partial); ``Snapshot`` is everything a partial needs. Table
schemas copy the shapes BitMEX sends (keys/types/foreignKeys/attributes, see the protocol
reference §9 and §16). ``Contract`` does an instrument's arithmetic: prices live as integer
ticks and are converted to JSON numbers only on output, so they never drift, and contract values
follow BitMEX's inverse / quanto / linear formulas. ``TimeFormatter`` turns epoch seconds into
BitMEX's ``YYYY-MM-DDTHH:MM:SS.mmmZ`` with a tiny cache (no clock is ever read here).
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any, Final

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DERIVED_TABLES",
    "KEYLESS_TABLES",
    "LEGACY_BOOK_SCHEMA",
    "PRIVATE_TABLES_SERVED",
    "PUBLIC_TABLES_SERVED",
    "TABLE_SCHEMAS",
    "XBT_REFERENCE_PRICE",
    "Contract",
    "Delta",
    "InstrumentSpec",
    "Snapshot",
    "TableSchema",
    "TimeFormatter",
    "random_guid",
    "spec_for",
    "timespan",
]

DEFAULT_ACCOUNT: Final = 100001
DEFAULT_API_KEY: Final = "emulator-api-key"
DEFAULT_API_SECRET: Final = "emulator-api-secret-do-not-use-in-production"

# Quanto notionals need an XBT/USD rate; a fixed reference keeps every instrument independent.
XBT_REFERENCE_PRICE: Final = 95_000.0


@dataclass(frozen=True, slots=True)
class Delta:
    """One non-partial table message: ``{"table":..,"action":..,"data":rows}``."""

    table: str
    action: str  # "insert" | "update" | "delete" (never "partial")
    symbol: str | None  # None for tables without symbol (margin, wallet)
    rows: list[dict[str, Any]]  # JSON-ready rows exactly as BitMEX sends them
    account: int | None = None  # set on private-table deltas: only that account's subscribers


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a partial needs; ``filter`` is the partial's ``filter`` for the request."""

    keys: list[str]
    types: dict[str, str]
    foreign_keys: dict[str, str]
    attributes: dict[str, str]
    rows: list[dict[str, Any]]
    filter: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TableSchema:
    keys: tuple[str, ...]
    types: dict[str, str]
    foreign_keys: dict[str, str]
    attributes: dict[str, str]

    def snapshot(self, rows: list[dict[str, Any]], filter: dict[str, Any]) -> Snapshot:
        """A fresh ``Snapshot`` (callers may mutate it freely)."""
        return Snapshot(
            list(self.keys), dict(self.types), dict(self.foreign_keys), dict(self.attributes),
            rows, filter,
        )  # fmt: skip


def _types(spec: str) -> dict[str, str]:
    """``"a:long b:float"`` -> ``{"a": "long", "b": "float"}`` (``x:`` is the empty type)."""
    types: dict[str, str] = {}
    for item in spec.split():
        name, _, kind = item.partition(":")
        types[name] = kind
    return types


_BOOK_TYPES = "symbol:symbol id:long side:symbol size:long price:float"
_SIDE_FK = {"symbol": "instrument", "side": "side"}
_TS_SORTED = {"timestamp": "sorted", "symbol": "grouped"}

TABLE_SCHEMAS: Final[dict[str, TableSchema]] = {
    "instrument": TableSchema(
        ("symbol",),
        _types(
            "symbol:symbol rootSymbol:symbol state:symbol typ:symbol listing:timestamp "
            "front:timestamp positionCurrency:symbol underlying:symbol quoteCurrency:symbol "
            "underlyingSymbol:symbol reference:symbol referenceSymbol:symbol calcInterval:timespan "
            "publishInterval:timespan publishTime:timespan maxOrderQty:long maxPrice:float "
            "lotSize:long tickSize:float multiplier:long settlCurrency:symbol "
            "underlyingToPositionMultiplier:long underlyingToSettleMultiplier:long "
            "quoteToSettleMultiplier:long isQuanto:boolean isInverse:boolean initMargin:float "
            "maintMargin:float riskLimit:long riskStep:long limit:float taxed:boolean "
            "deleverage:boolean makerFee:float takerFee:float settlementFee:float "
            "fundingBaseSymbol:symbol fundingQuoteSymbol:symbol fundingPremiumSymbol:symbol "
            "fundingTimestamp:timestamp fundingInterval:timespan fundingRate:float "
            "indicativeFundingRate:float rebalanceTimestamp:timestamp rebalanceInterval:timespan "
            "prevClosePrice:float limitDownPrice:float limitUpPrice:float totalVolume:long "
            "volume:long volume24h:long prevTotalTurnover:long totalTurnover:long turnover:long "
            "turnover24h:long homeNotional24h:float foreignNotional24h:float prevPrice24h:float "
            "vwap:float highPrice:float lowPrice:float lastPrice:float lastPriceProtected:float "
            "lastTickDirection:symbol lastChangePcnt:float bidPrice:float midPrice:float "
            "askPrice:float impactBidPrice:float impactMidPrice:float impactAskPrice:float "
            "hasLiquidity:boolean openInterest:long openValue:long fairMethod:symbol "
            "fairBasisRate:float fairBasis:float fairPrice:float markMethod:symbol markPrice:float "
            "indicativeSettlePrice:float settledPriceAdjustmentRate:float settledPrice:float "
            "instantPnl:boolean minTick:float timestamp:timestamp"
        ),
        {},
        {"symbol": "grouped"},
    ),
    "orderBookL2": TableSchema(
        ("symbol", "id", "side"),
        _types(_BOOK_TYPES + " timestamp:timestamp transactTime:timestamp"),
        dict(_SIDE_FK),
        {"symbol": "grouped"},
    ),
    "orderBookL2_25": TableSchema(
        ("symbol", "id", "side"),
        _types(_BOOK_TYPES + " timestamp:timestamp transactTime:timestamp"),
        dict(_SIDE_FK),
        {"symbol": "grouped"},
    ),
    "orderBook10": TableSchema(
        ("symbol",),
        _types("symbol:symbol bids: asks: timestamp:timestamp"),
        {"symbol": "instrument"},
        {"symbol": "sorted"},
    ),
    "trade": TableSchema(
        (),
        _types(
            "timestamp:timestamp symbol:symbol side:symbol size:long price:float "
            "tickDirection:symbol trdMatchID:guid grossValue:long homeNotional:float "
            "foreignNotional:float trdType:symbol"
        ),
        dict(_SIDE_FK),
        dict(_TS_SORTED),
    ),
    "quote": TableSchema(
        (),
        _types(
            "timestamp:timestamp symbol:symbol bidSize:long bidPrice:float askPrice:float "
            "askSize:long"
        ),
        {"symbol": "instrument"},
        dict(_TS_SORTED),
    ),
    "funding": TableSchema(
        ("timestamp", "symbol"),
        _types(
            "timestamp:timestamp symbol:symbol fundingInterval:timespan fundingRate:float "
            "fundingRateDaily:float"
        ),
        {"symbol": "instrument"},
        dict(_TS_SORTED),
    ),
    "liquidation": TableSchema(
        ("orderID",),
        _types("orderID:guid symbol:symbol side:symbol price:float leavesQty:long"),
        dict(_SIDE_FK),
        {"orderID": "grouped"},
    ),
    "settlement": TableSchema(
        ("timestamp", "symbol"),
        _types(
            "timestamp:timestamp symbol:symbol settlementType:symbol settledPrice:float "
            "optionStrikePrice:float optionUnderlyingPrice:float bankrupt:long taxBase:long "
            "taxRate:float"
        ),
        {"symbol": "instrument"},
        dict(_TS_SORTED),
    ),
    "insurance": TableSchema(
        ("currency", "timestamp"),
        _types("currency:symbol timestamp:timestamp walletBalance:long"),
        {},
        {"currency": "grouped", "timestamp": "sorted"},
    ),
    "order": TableSchema(
        ("orderID",),
        _types(
            "orderID:guid clOrdID:string clOrdLinkID:symbol account:long symbol:symbol "
            "side:symbol orderQty:long price:float displayQty:long stopPx:float "
            "pegOffsetValue:float pegPriceType:symbol currency:symbol settlCurrency:symbol "
            "ordType:symbol timeInForce:symbol execInst:symbol contingencyType:symbol "
            "ordStatus:symbol triggered:symbol workingIndicator:boolean ordRejReason:symbol "
            "leavesQty:long cumQty:long avgPx:float text:string transactTime:timestamp "
            "timestamp:timestamp"
        ),
        {"symbol": "instrument", "side": "side", "ordStatus": "ordStatus"},
        {
            "orderID": "grouped",
            "account": "grouped",
            "ordStatus": "grouped",
            "workingIndicator": "grouped",
        },
    ),
    "execution": TableSchema(
        (),
        _types(
            "execID:guid orderID:guid clOrdID: clOrdLinkID: account:long symbol:symbol "
            "strategy:symbol side:symbol lastQty:long lastPx:float lastLiquidityInd:symbol "
            "orderQty:long price:float displayQty:long stopPx:float pegOffsetValue:float "
            "pegPriceType:symbol currency:symbol settlCurrency:symbol execType:symbol "
            "ordType:symbol timeInForce:symbol execInst:symbol contingencyType:symbol "
            "ordStatus:symbol triggered:symbol workingIndicator:boolean ordRejReason: "
            "leavesQty:long cumQty:long avgPx:float commission:float brokerCommission:float "
            "feeType:symbol tradePublishIndicator:symbol text: trdMatchID:guid execCost:long "
            "execComm:long brokerExecComm:long homeNotional:float foreignNotional:float "
            "transactTime:timestamp timestamp:timestamp realisedPnl:long trdType:symbol"
        ),
        {"symbol": "instrument", "side": "side", "ordStatus": "ordStatus"},
        {
            "execID": "grouped",
            "account": "grouped",
            "execType": "grouped",
            "transactTime": "sorted",
        },
    ),
    "position": TableSchema(
        ("account", "symbol", "strategy"),
        _types(
            "account:long symbol:symbol strategy:symbol currency:symbol underlying:symbol "
            "quoteCurrency:symbol commission:float initMarginReq:float maintMarginReq:float "
            "riskLimit:long leverage:float crossMargin:boolean deleveragePercentile:float "
            "rebalancedPnl:long prevRealisedPnl:long openingQty:long openOrderBuyQty:long "
            "openOrderBuyCost:long openOrderBuyPremium:long openOrderSellQty:long "
            "openOrderSellCost:long openOrderSellPremium:long currentQty:long currentCost:long "
            "currentComm:long realisedCost:long unrealisedCost:long grossOpenPremium:long "
            "isOpen:boolean markPrice:float markValue:long riskValue:long homeNotional:float "
            "foreignNotional:float posState:symbol posCost:long posCross:long posComm:long "
            "posLoss:long posMargin:long posMaint:long initMargin:long maintMargin:long "
            "realisedPnl:long unrealisedPnl:long unrealisedPnlPcnt:float unrealisedRoePcnt:float "
            "avgCostPrice:float avgEntryPrice:float breakEvenPrice:float marginCallPrice:float "
            "liquidationPrice:float bankruptPrice:float timestamp:timestamp"
        ),
        {"symbol": "instrument"},
        {
            "account": "sorted",
            "symbol": "grouped",
            "strategy": "grouped",
            "currency": "grouped",
            "underlying": "grouped",
            "quoteCurrency": "grouped",
        },
    ),
    "margin": TableSchema(
        ("account", "currency"),
        _types(
            "account:long currency:symbol riskLimit:long amount:long prevRealisedPnl:long "
            "grossComm:long grossOpenCost:long grossOpenPremium:long grossExecCost:long "
            "grossMarkValue:long riskValue:long initMargin:long maintMargin:long "
            "targetExcessMargin:long realisedPnl:long unrealisedPnl:long walletBalance:long "
            "marginBalance:long marginLeverage:float marginUsedPcnt:float excessMargin:long "
            "availableMargin:long withdrawableMargin:long makerFeeDiscount:float "
            "takerFeeDiscount:float timestamp:timestamp foreignMarginBalance:long "
            "foreignRequirement:long"
        ),
        {},
        {"account": "sorted", "currency": "grouped"},
    ),
    "wallet": TableSchema(
        ("account", "currency"),
        _types(
            "account:long currency:symbol deposited:long withdrawn:long transferIn:long "
            "transferOut:long amount:long pendingCredit:long pendingDebit:long "
            "confirmedDebit:long timestamp:timestamp addr:symbol script:symbol "
            "withdrawalLock:symbols"
        ),
        {},
        {"account": "sorted", "currency": "grouped"},
    ),
}

# Pre-2023 order-book partials: no timestamp/transactTime, and the 2021 attributes.
LEGACY_BOOK_SCHEMA: Final = TableSchema(
    ("symbol", "id", "side"), _types(_BOOK_TYPES), dict(_SIDE_FK),
    {"symbol": "parted", "id": "sorted"},
)  # fmt: skip

PUBLIC_TABLES_SERVED: Final = frozenset(
    {
        "instrument", "orderBookL2", "orderBookL2_25", "orderBook10", "trade", "quote",
        "funding", "liquidation", "settlement", "insurance",
    }
)  # fmt: skip
PRIVATE_TABLES_SERVED: Final = frozenset({"order", "execution", "position", "margin", "wallet"})
KEYLESS_TABLES: Final = frozenset({"trade", "quote", "execution"})
# Tables computed from the order book only when enabled (someone subscribed).
DERIVED_TABLES: Final = frozenset({"orderBookL2_25", "orderBook10"})


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """A synthetic instrument. ``kind``: ``inverse`` (XBTUSD), ``quanto`` or ``linear`` (USDT).

    ``multiplier`` is BitMEX's (negative for inverse contracts); linear contracts count
    ``underlying_to_position`` position units per unit of the underlying. ``depth`` is the
    number of book levels each side starts with (and hovers around), ``spacing`` the mean gap
    between levels near the top of the book in ticks (the book thins out further down),
    ``typical_lots`` the scale of a level's size, ``weight`` the instrument's share of market
    activity.
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
        if self.start_price / self.tick_size < 20 * self.depth * max(1.0, self.spacing):
            raise ValueError(f"start price of {self.symbol!r} is too few ticks above zero")


_KNOWN_SPECS: Final = {
    spec.symbol: spec
    for spec in (
        InstrumentSpec("XBTUSD", 0.1, 100, 95_000.0, "inverse", -100_000_000, "XBT",
                       depth=500, spacing=6.0, typical_lots=200, weight=5.0, legacy_index=88,
                       legacy_tick=0.01),
        InstrumentSpec("ETHUSD", 0.05, 1, 3_300.0, "quanto", 100, "ETH", depth=400,
                       spacing=2.0, typical_lots=300, weight=3.0, legacy_index=297),
        InstrumentSpec("SOLUSD", 0.01, 1, 190.0, "quanto", 100, "SOL", depth=300,
                       typical_lots=200, weight=2.0, legacy_index=330),
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
        """The JSON price of ``tick``: an int when whole, as BitMEX writes ``11584``."""
        whole, rest = divmod(tick, self._inv)
        return whole if rest == 0 else tick / self._inv

    def tick_of(self, price: float) -> int:
        """The tick of ``price``; ``ValueError`` unless it is a positive multiple of the tick."""
        tick = round(price * self._inv)
        if tick <= 0 or abs(tick / self._inv - price) > 1e-9 * max(1.0, abs(price)):
            raise ValueError(f"price {price} is not a positive multiple of {self.tick_size}")
        return tick

    def round_price(self, price: float, extra_decimals: int = 0) -> float:
        value = round(price, self.decimals + extra_decimals)
        return int(value) if value == int(value) else value

    def value(self, qty: int, price: float) -> int:
        """Signed value of ``qty`` contracts at ``price`` in settlement units (XBt / USDt).

        BitMEX's convention: ``multiplier * qty / price`` for inverse contracts (negative for a
        long, the per-contract value rounded first), ``multiplier * qty * price`` otherwise.
        """
        if self.inverse:
            return qty * round(self.mult / price)
        return round(qty * price * self.mult)

    def notionals(self, size: int, price: float) -> tuple[int, float, float]:
        """``(grossValue, homeNotional, foreignNotional)`` of a trade of ``size`` at ``price``."""
        if self.inverse:
            gross = size * round(-self.mult / price)
            return gross, round(gross / 1e8, 8), size
        gross = round(size * price * self.mult)
        if self.linear:
            home = size / self.spec.underlying_to_position
        else:
            home = size * self.mult * XBT_REFERENCE_PRICE / 1e8
        return gross, round(home, 8), round(home * price, 8)

    def entry_price(self, qty: int, cost: int) -> float:
        """Average entry price of ``qty`` contracts that cost ``cost`` (see ``value``)."""
        if qty == 0 or cost == 0:
            return 0
        raw = self.mult * qty / cost if self.inverse else cost / (qty * self.mult)
        return self.round_price(raw, 1)


class TimeFormatter:
    """Epoch seconds -> ``2025-01-01T00:00:00.000Z``; caches the last millisecond and second."""

    __slots__ = ("_ms", "_prefix", "_sec", "_text")

    _EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

    def __init__(self) -> None:
        self._ms = -1
        self._sec = -1
        self._text = ""
        self._prefix = ""

    def __call__(self, now: float) -> str:
        ms = round(now * 1000)
        if ms == self._ms:
            return self._text
        sec, milli = divmod(ms, 1000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = (self._EPOCH + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
        self._ms = ms
        self._text = f"{self._prefix}.{milli:03d}Z"
        return self._text


def timespan(seconds: float) -> str:
    """A BitMEX ``timespan`` value: a timestamp offset from 2000-01-01 (``08:00`` = 8 hours)."""
    moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def random_guid(rng: Random) -> str:
    """A lower-case version-4 GUID drawn from ``rng`` (deterministic for a seeded ``rng``)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
