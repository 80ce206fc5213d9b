"""Hand-written BitMEX history for the paper-exchange tests: one XBTUSD instrument and book.

An inverse XBTUSD at 100.0 with a 0.5 tick and a 100 lot, two asks and two bids (``BOOK``), stamped
``TS`` (2025-01-01, ``T0``); ``msg`` writes a table message as BitMEX's 2024+ feed did. Tests write
these through ``tests/replay/helpers.write_slices`` and trade against them.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

T0: Final = 1_735_689_600.0  # 2025-01-01T00:00:00Z
TS: Final = "2025-01-01T00:00:00.000Z"


def msg(table: str, action: str, data: list[dict[str, Any]], **extra: Any) -> str:
    return orjson.dumps({"table": table, "action": action, **extra, "data": data}).decode()


def level(id_: int, side: str, size: int, price: float) -> dict[str, Any]:
    return {"symbol": "XBTUSD", "id": id_, "side": side, "size": size, "price": price,
            "timestamp": TS, "transactTime": TS}  # fmt: skip


INSTRUMENT: Final = {
    "symbol": "XBTUSD", "state": "Open", "typ": "FFWCSX", "tickSize": 0.5, "lotSize": 100,
    "multiplier": -100_000_000, "isInverse": True, "isQuanto": False, "underlying": "XBT",
    "quoteCurrency": "USD", "settlCurrency": "XBt", "referenceSymbol": ".BXBT",
    "lastPrice": 100.0, "markPrice": 100.0, "indicativeSettlePrice": 100.0,
    "makerFee": -0.00025, "takerFee": 0.00075, "timestamp": TS,
}  # fmt: skip
BOOK: Final = [
    level(1, "Sell", 300, 101.0),
    level(2, "Sell", 200, 100.5),
    level(3, "Buy", 100, 100.0),
    level(4, "Buy", 400, 99.5),
]
