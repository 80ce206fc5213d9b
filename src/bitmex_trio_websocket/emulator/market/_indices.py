"""Index instruments (``.BXBT`` and friends): their ``instrument`` rows and Referential trades.

Theory of operation: every contract references an index (``referenceSymbol``); the market keeps
one ``IndexInstrument`` per index, which publishes the contract's current index price every
``INDEX_PUBLISH_INTERVAL`` seconds on the clock (the market calls ``publish`` when the time
comes): an ``instrument`` update (``lastPrice``, ``markPrice``, ``lastChangePcnt``,
``timestamp``) and a ``trade`` insert with ``size`` 0 and ``trdType``
``Referential``. Row shapes follow the 2025 captures: the ``.BPENGUT_NEXT`` instrument row
(``typ`` ``MRCXXX``, ``state`` ``Unlisted``, ``reference`` ``BMI``, ``markMethod`` ``LastPrice``;
roq-bitmex instrument partial, ``../shared/captures/roq-bitmex_tests.jsonl`` line 8) and its
Referential trades (no ``trdMatchID``, ``grossValue`` or notionals; line 16). BitMEX's own
publication interval of ``.BXBT`` is not in any capture: 5 seconds is our choice (the 2025
``_NEXT`` indices show one minute).
"""

from __future__ import annotations

from typing import Any, Final

from ._instruments import Instrument
from ._schemas import Delta, timespan

__all__ = ["INDEX_PUBLISH_INTERVAL", "IndexInstrument"]

INDEX_PUBLISH_INTERVAL: Final = 5.0
INDEX_TICK: Final = 0.01  # index prices are published to the cent


def _round(price: float) -> float:
    return float(round(price, 2))


class IndexInstrument:
    """One index, fed by the contract ``source`` (its ``Instrument.index``)."""

    __slots__ = ("direction", "last", "row", "source", "symbol", "trade")

    def __init__(self, source: Instrument, ts: str) -> None:
        spec = source.spec
        self.source = source
        self.symbol = spec.index_symbol
        price = _round(source.index)
        self.last = price
        self.direction = "ZeroPlusTick"  # of the Referential prints (the row has none)
        quote = spec.quote_currency
        self.row: dict[str, Any] = {
            "symbol": self.symbol, "rootSymbol": spec.underlying, "state": "Unlisted",
            "typ": "MRCXXX", "underlying": spec.underlying, "quoteCurrency": quote,
            "underlyingSymbol": f"{spec.underlying}{'T' if quote == 'USDT' else ''}=",
            "reference": "BMI", "referenceSymbol": self.symbol,
            "publishInterval": timespan(INDEX_PUBLISH_INTERVAL), "tickSize": INDEX_TICK,
            "isQuanto": False, "isInverse": False, "taxed": False, "deleverage": False,
            "prevPrice24h": price, "lastPrice": price, "lastChangePcnt": 0.0,
            "hasLiquidity": False, "markMethod": "LastPrice", "markPrice": price,
            "instantPnl": False, "timestamp": ts,
        }  # fmt: skip
        self.trade: dict[str, Any] = {
            "timestamp": ts, "symbol": self.symbol, "side": "Buy", "size": 0, "price": price,
            "tickDirection": "ZeroPlusTick", "trdType": "Referential",
        }  # fmt: skip

    def publish(self, ts: str, out: list[Delta]) -> float:
        """Publish the source's index price now: ``instrument`` update and Referential trade.
        Returns the price published."""
        price = _round(self.source.index)
        row = self.row
        if price > self.last:
            direction = "PlusTick"
        elif price < self.last:
            direction = "MinusTick"
        else:
            direction = (
                "ZeroPlusTick"
                if self.direction in ("PlusTick", "ZeroPlusTick")
                else "ZeroMinusTick"
            )
        self.last = price
        self.direction = direction
        update: dict[str, Any] = {"symbol": self.symbol, "lastPrice": price, "markPrice": price,
                                  "lastChangePcnt": round(price / row["prevPrice24h"] - 1, 4),
                                  "timestamp": ts}  # fmt: skip
        row.update(update)
        out.append(Delta("instrument", "update", self.symbol, [update]))
        self.trade = {
            "timestamp": ts, "symbol": self.symbol, "side": "Buy", "size": 0, "price": price,
            "tickDirection": direction, "trdType": "Referential",
        }  # fmt: skip
        out.append(Delta("trade", "insert", self.symbol, [dict(self.trade)]))
        return price
