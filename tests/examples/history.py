"""A small hand-made BitMEX history for backtesting the examples: five minutes of XBTUSD.

The frames are shaped like the real captures in ``../shared/captures`` (the 2024+ format of
roq-bitmex's and nautilus_trader's rows: ``orderBookL2`` levels with ``price``, ``timestamp`` and
``transactTime``, trades with ``trdMatchID``, ``grossValue``, ``homeNotional`` and ``trdType``,
an ``instrument`` partial with the contract's fields), but every value is made up here, so
each test knows what the market did:

* 0-90 s, rising: the mid climbs one tick every two seconds; five buys of 100 and one sell of
  100 print each second (trade flow +0.67), and every fifth second a buy of 300 sweeps two
  ticks past the best ask;
* 90-180 s, falling: the mirror image (flow -0.67);
* 180-200 s, a squeeze: the mid jumps 25 USD in twenty seconds on balanced trades (flow 0);
* 200-300 s, quiet: the mid stands still, one buy and one sell a second.

The book is five 1,000-contract levels a side around the mid, one tick of spread; trades print
at the touch (buys at the best ask, sells at the best bid) but for the sweeps, which print
through orders resting a tick or two behind the touch, as does the squeeze's jump. An
``instrument`` update follows each second's trades with the last price and the mark (the mid).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from ..replay.helpers import Frame, write_slices

T0: Final = 1_735_689_600.0  # 2025-01-01T00:00:00Z
TICK: Final = 0.5
LEVELS: Final = 5
LEVEL_SIZE: Final = 1_000
START_MID: Final = 10_000.25  # best bid 10000.0, best ask 10000.5
DURATION: Final = 300


def iso(t: float) -> str:
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def message(table: str, action: str, data: list[dict[str, Any]], **extra: Any) -> str:
    return orjson.dumps({"table": table, "action": action, **extra, "data": data}).decode()


INSTRUMENT: Final = {
    "symbol": "XBTUSD", "rootSymbol": "XBT", "state": "Open", "typ": "FFWCSX",
    "positionCurrency": "USD", "underlying": "XBT", "quoteCurrency": "USD",
    "underlyingSymbol": "XBT=", "reference": "BMEX", "referenceSymbol": ".BXBT",
    "maxOrderQty": 10_000_000, "maxPrice": 1_000_000, "lotSize": 100, "tickSize": TICK,
    "multiplier": -100_000_000, "settlCurrency": "XBt", "isQuanto": False, "isInverse": True,
    "initMargin": 0.01, "maintMargin": 0.0035, "makerFee": -0.00025, "takerFee": 0.00075,
    "fundingInterval": "2000-01-01T08:00:00.000Z", "fundingRate": 0.0001,
    "lastPrice": START_MID - TICK / 2, "markPrice": START_MID, "indicativeSettlePrice": START_MID,
    "timestamp": iso(T0),
}  # fmt: skip


def mid_at(second: int) -> float:
    """The market's mid at each second (see the module docstring)."""
    if second <= 90:
        return START_MID + (second // 2) * TICK
    top = START_MID + 45 * TICK
    if second <= 180:
        return top - ((second - 90) // 2) * TICK
    if second <= 200:
        return START_MID + (second - 180) * 2.5 // TICK * TICK
    return START_MID + 50.0


def trades_at(second: int) -> list[tuple[str, int, int]]:
    """The trades that print in ``second``: (aggressor side, ticks past the touch, size)."""
    if second <= 90:
        trades = [("Buy", 0, 100)] * 5 + [("Sell", 0, 100)]
        return [*trades, ("Buy", 2, 300)] if second % 5 == 0 else trades
    if second <= 180:
        trades = [("Sell", 0, 100)] * 5 + [("Buy", 0, 100)]
        return [*trades, ("Sell", 2, 300)] if second % 5 == 0 else trades
    if second <= 200:
        return [("Buy", 0, 100), ("Sell", 0, 100)] * 2
    return [("Buy", 0, 100), ("Sell", 0, 100)]


def book_at(mid: float) -> dict[tuple[str, float], int]:
    bid, ask = mid - TICK / 2, mid + TICK / 2
    levels = {("Buy", bid - i * TICK): LEVEL_SIZE for i in range(LEVELS)}
    levels.update({("Sell", ask + i * TICK): LEVEL_SIZE for i in range(LEVELS)})
    return levels


def level_row(side: str, price: float, size: int | None, t: float) -> dict[str, Any]:
    # Level ids are opaque since 2023; a price's id here is its number of ticks.
    row: dict[str, Any] = {"symbol": "XBTUSD", "id": int(price / TICK), "side": side}
    if size is not None:
        row["size"] = size
    return {**row, "price": price, "timestamp": iso(t), "transactTime": iso(t)}


def frames(seed: int = 0) -> Iterator[Frame]:
    ids = uuid.UUID(int=seed)
    book = book_at(START_MID)
    types = {"symbol": "symbol", "id": "long", "side": "symbol", "size": "long",
             "price": "float", "timestamp": "timestamp", "transactTime": "timestamp"}  # fmt: skip
    yield T0, message("instrument", "partial", [INSTRUMENT], keys=["symbol"], filter={})
    yield T0, message(
        "orderBookL2", "partial", [level_row(s, p, n, T0) for (s, p), n in sorted(book.items())],
        keys=["symbol", "id", "side"], types=types, filter={"symbol": "XBTUSD"},
    )  # fmt: skip
    yield T0, message("trade", "partial", [], keys=[], filter={"symbol": "XBTUSD"})
    matches = 0
    for second in range(1, DURATION + 1):
        t = T0 + second
        new = book_at(mid_at(second))
        if new != book:
            gone = [level_row(s, p, None, t) for s, p in sorted(book.keys() - new.keys())]
            added = [
                level_row(s, p, n, t) for (s, p), n in sorted(new.items()) if (s, p) not in book
            ]
            if gone:
                yield t, message("orderBookL2", "delete", gone)
            if added:
                yield t, message("orderBookL2", "insert", added)
            book = new
        bid = max(p for s, p in book if s == "Buy")
        ask = min(p for s, p in book if s == "Sell")
        rows = []
        for i, (side, past, size) in enumerate(trades_at(second)):
            matches += 1
            price = ask + past * TICK if side == "Buy" else bid - past * TICK
            rows.append({
                "timestamp": iso(t + i / 1000), "symbol": "XBTUSD", "side": side, "size": size,
                "price": price, "tickDirection": "ZeroPlusTick",
                "trdMatchID": str(uuid.UUID(int=ids.int + matches)),
                "grossValue": round(size / price * 1e8), "homeNotional": size / price,
                "foreignNotional": size, "trdType": "Regular",
            })  # fmt: skip
        yield t + 0.5, message("trade", "insert", rows)
        # As BitMEX did after trades: the last price (stops with LastPrice watch it), the mark.
        update = {"symbol": "XBTUSD", "lastPrice": rows[-1]["price"], "markPrice": mid_at(second),
                  "fairPrice": mid_at(second), "timestamp": iso(t + 0.5)}  # fmt: skip
        yield t + 0.5, message("instrument", "update", [update])


def write_history(path: Path) -> Path:
    """The history as a Tardis slice file (what ``open_bitmex_replay`` and the runner read)."""
    return write_slices(path, list(frames()))
