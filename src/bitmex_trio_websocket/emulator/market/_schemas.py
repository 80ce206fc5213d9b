"""What the market's messages look like: deltas, partial images, table schemas, text formats.

Theory of operation: everything here is plain data and pure functions shared by the market's
modules. ``Delta`` is one table message the server should send (never a partial); ``Snapshot``
is everything a partial needs. Table schemas copy the shapes BitMEX sent last (keys and
types; the captures each comes from are named at ``TABLE_SCHEMAS``), and the
``*_TABLES_SERVED`` sets say which tables the synthetic market keeps. ``TimeFormatter`` turns
epoch seconds into BitMEX's ``YYYY-MM-DDTHH:MM:SS.mmmZ`` with a tiny cache, ``timespan`` writes
BitMEX's ``timespan`` values and ``random_guid`` draws ids from a seeded ``Random`` (no clock
and no global randomness are ever read here).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any, Final

from ..._exceptions import BitMEXError

__all__ = [
    "BIN_TABLES",
    "DERIVED_TABLES",
    "KEYLESS_TABLES",
    "LEGACY_BOOK_SCHEMA",
    "PRIVATE_TABLES_SERVED",
    "PUBLIC_TABLES_SERVED",
    "TABLE_SCHEMAS",
    "Delta",
    "Snapshot",
    "TableSchema",
    "TimeFormatter",
    "UnknownTableError",
    "random_guid",
    "timespan",
]


class UnknownTableError(BitMEXError, KeyError, ValueError):
    """A table the synthetic market does not serve (a ``KeyError`` and a ``ValueError`` too)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


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
    foreign_keys: dict[str, str]  # empty but in the legacy (pre-2023) book form
    attributes: dict[str, str]  # empty but in the legacy (pre-2023) book form
    rows: list[dict[str, Any]]
    filter: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TableSchema:
    keys: tuple[str, ...]
    types: dict[str, str]
    foreign_keys: dict[str, str] = field(default_factory=dict)  # pre-2023 partials only
    attributes: dict[str, str] = field(default_factory=dict)  # pre-2023 partials only

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
_BIN_TYPES = (
    "timestamp:timestamp symbol:symbol open:float high:float low:float close:float trades:long "
    "volume:long vwap:float lastSize:long turnover:long homeNotional:float foreignNotional:float"
)
_QUOTE_TYPES = (
    "timestamp:timestamp symbol:symbol bidSize:long bidPrice:float askPrice:float askSize:long"
)

# Types as the 2024-2025 partials list them (roq-bitmex captures, ../shared/captures/
# roq-bitmex_tests.jsonl: execution line 6, funding 7, instrument 8, liquidation 9, margin 10,
# orderBookL2 11, position 12, quote 13, settlement 14, trade 16). Tables no 2024+ partial shows
# (order, wallet, insurance, the bins) follow the swagger row definitions (protocol reference
# section 9). Since 2023 a partial carries keys, types and filter only: no foreignKeys/attributes.
TABLE_SCHEMAS: Final[dict[str, TableSchema]] = {
    "instrument": TableSchema(
        ("symbol",),
        _types(
            "symbol:symbol rootSymbol:symbol state:symbol typ:symbol listing:timestamp "
            "front:timestamp expiry:timestamp settle:timestamp listedSettle:timestamp "
            "relistInterval:timespan positionCurrency:symbol underlying:symbol "
            "quoteCurrency:symbol underlyingSymbol:symbol reference:symbol referenceSymbol:symbol "
            "calcInterval:timespan publishInterval:timespan publishTime:timespan maxOrderQty:long "
            "maxPrice:float lotSize:long tickSize:float multiplier:long settlCurrency:symbol "
            "underlyingToPositionMultiplier:long underlyingToSettleMultiplier:long "
            "quoteToSettleMultiplier:long isQuanto:boolean isInverse:boolean initMargin:float "
            "maintMargin:float riskLimit:long riskStep:long limit:float taxed:boolean "
            "deleverage:boolean makerFee:float takerFee:float settlementFee:float "
            "fundingBaseSymbol:symbol fundingQuoteSymbol:symbol fundingPremiumSymbol:symbol "
            "fundingTimestamp:timestamp fundingInterval:timespan fundingRate:float "
            "indicativeFundingRate:float rebalanceTimestamp:timestamp rebalanceInterval:timespan "
            "prevClosePrice:float limitDownPrice:float limitUpPrice:float prevTotalVolume:long "
            "totalVolume:long volume:long volume24h:long prevTotalTurnover:long "
            "totalTurnover:long turnover:long turnover24h:long homeNotional24h:float "
            "foreignNotional24h:float prevPrice24h:float vwap:float highPrice:float "
            "lowPrice:float lastPrice:float lastPriceProtected:float lastTickDirection:symbol "
            "lastChangePcnt:float bidPrice:float midPrice:float askPrice:float "
            "impactBidPrice:float impactMidPrice:float impactAskPrice:float hasLiquidity:boolean "
            "openInterest:long openValue:long fairMethod:symbol fairBasisRate:float "
            "fairBasis:float fairPrice:float markMethod:symbol markPrice:float "
            "indicativeSettlePrice:float settledPriceAdjustmentRate:float settledPrice:float "
            "instantPnl:boolean minTick:float fundingBaseRate:float fundingQuoteRate:float "
            "timestamp:timestamp"
        ),
    ),
    "orderBookL2": TableSchema(
        ("symbol", "id", "side"),
        _types(_BOOK_TYPES + " timestamp:timestamp transactTime:timestamp"),
    ),
    "orderBookL2_25": TableSchema(
        ("symbol", "id", "side"),
        _types(_BOOK_TYPES + " timestamp:timestamp transactTime:timestamp"),
    ),
    "orderBook10": TableSchema(
        ("symbol",), _types("symbol:symbol bids: asks: timestamp:timestamp")
    ),
    "trade": TableSchema(
        (),
        _types(
            "timestamp:timestamp symbol:symbol side:symbol size:long price:float "
            "tickDirection:symbol trdMatchID:guid grossValue:long homeNotional:float "
            "foreignNotional:float trdType:symbol"
        ),
    ),
    "quote": TableSchema((), _types(_QUOTE_TYPES)),
    "funding": TableSchema(
        ("timestamp", "symbol"),
        _types(
            "timestamp:timestamp symbol:symbol fundingInterval:timespan fundingRate:float "
            "fundingRateDaily:float"
        ),
    ),
    "liquidation": TableSchema(
        ("orderID",),
        _types("orderID:guid symbol:symbol side:symbol price:float leavesQty:long"),
    ),
    "settlement": TableSchema(
        ("timestamp", "symbol"),
        _types(
            "timestamp:timestamp symbol:symbol settlementType:symbol settledPrice:float "
            "optionStrikePrice:float optionUnderlyingPrice:float bankrupt:long taxBase:long "
            "taxRate:float"
        ),
    ),
    "insurance": TableSchema(
        ("currency", "timestamp"),
        _types("currency:symbol timestamp:timestamp walletBalance:long"),
    ),
    **{f"tradeBin{size}": TableSchema((), _types(_BIN_TYPES)) for size in ("1m", "5m", "1h", "1d")},
    **{
        f"quoteBin{size}": TableSchema((), _types(_QUOTE_TYPES))
        for size in ("1m", "5m", "1h", "1d")
    },
    "order": TableSchema(
        ("orderID",),
        _types(
            "orderID:guid clOrdID:string clOrdLinkID:symbol account:long symbol:symbol "
            "strategy:symbol side:symbol orderQty:long price:float displayQty:long stopPx:float "
            "pegOffsetValue:float pegPriceType:symbol currency:symbol settlCurrency:symbol "
            "ordType:symbol timeInForce:symbol execInst:symbol contingencyType:symbol "
            "ordStatus:symbol triggered:symbol workingIndicator:boolean ordRejReason:symbol "
            "leavesQty:long cumQty:long avgPx:float text:string transactTime:timestamp "
            "timestamp:timestamp"
        ),
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
    ),
    "position": TableSchema(
        ("account", "symbol", "strategy"),
        _types(
            "account:long symbol:symbol strategy:symbol currency:symbol underlying:symbol "
            "quoteCurrency:symbol commission:float initMarginReq:float maintMarginReq:float "
            "riskLimit:long leverage:float crossMargin:boolean deleveragePercentile:float "
            "rebalancedPnl:long prevRealisedPnl:long prevUnrealisedPnl:long openingQty:long "
            "openOrderBuyQty:long openOrderBuyCost:long openOrderBuyPremium:long "
            "openOrderSellQty:long openOrderSellCost:long openOrderSellPremium:long "
            "currentQty:long currentCost:long currentComm:long realisedCost:long "
            "unrealisedCost:long grossOpenPremium:long isOpen:boolean markPrice:float "
            "markValue:long riskValue:long homeNotional:float foreignNotional:float "
            "posState:symbol posCost:long posCross:long posComm:long posLoss:long "
            "posMargin:long posMaint:long posInit:long initMargin:long maintMargin:long "
            "realisedPnl:long unrealisedPnl:long unrealisedPnlPcnt:float "
            "unrealisedRoePcnt:float avgCostPrice:float avgEntryPrice:float "
            "breakEvenPrice:float marginCallPrice:float liquidationPrice:float "
            "bankruptPrice:float timestamp:timestamp"
        ),
    ),
    "margin": TableSchema(
        ("account", "currency"),
        _types(
            "account:long currency:symbol riskLimit:long state:symbol amount:long "
            "prevRealisedPnl:long grossComm:long grossOpenCost:long grossOpenPremium:long "
            "grossExecCost:long grossMarkValue:long riskValue:long initMargin:long "
            "maintMargin:long targetExcessMargin:long realisedPnl:long unrealisedPnl:long "
            "walletBalance:long marginBalance:long marginLeverage:float marginUsedPcnt:float "
            "excessMargin:long availableMargin:long withdrawableMargin:long "
            "systemWithdrawableMargin:long makerFeeDiscount:float takerFeeDiscount:float "
            "timestamp:timestamp foreignMarginBalance:long foreignRequirement:long"
        ),
    ),
    "wallet": TableSchema(
        ("account", "currency"),
        _types(
            "account:long currency:symbol deposited:long withdrawn:long transferIn:long "
            "transferOut:long amount:long pendingCredit:long pendingDebit:long "
            "confirmedDebit:long timestamp:timestamp addr:symbol script:symbol "
            "withdrawalLock:symbols"
        ),
    ),
}

# Pre-2023 order-book partials: no timestamp/transactTime, and the 2021 attributes.
LEGACY_BOOK_SCHEMA: Final = TableSchema(
    ("symbol", "id", "side"), _types(_BOOK_TYPES), {"symbol": "instrument", "side": "side"},
    {"symbol": "parted", "id": "sorted"},
)  # fmt: skip

BIN_TABLES: Final = frozenset(
    f"{kind}Bin{size}" for kind in ("trade", "quote") for size in ("1m", "5m", "1h", "1d")
)
PUBLIC_TABLES_SERVED: Final = frozenset(
    {
        "instrument", "orderBookL2", "orderBookL2_25", "orderBook10", "trade", "quote",
        "funding", "liquidation", "settlement", "insurance",
    }
    | BIN_TABLES
)  # fmt: skip
PRIVATE_TABLES_SERVED: Final = frozenset({"order", "execution", "position", "margin", "wallet"})
KEYLESS_TABLES: Final = frozenset({"trade", "quote", "execution"} | BIN_TABLES)
# Tables computed from the order book only when enabled (someone subscribed).
DERIVED_TABLES: Final = frozenset({"orderBookL2_25", "orderBook10"})


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
