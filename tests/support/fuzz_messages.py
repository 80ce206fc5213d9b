"""Real-shaped BitMEX table messages for the fuzzers: valid rows of every modelled table.

Theory of operation: every fuzz input starts as a message BitMEX could send. ``make_row(table,
symbol, n)`` is a valid full row whose key is a function of ``n`` (and the symbol), so a sequence
can name rows it issued before; ``update_row`` and ``delete_row`` are valid deltas for such a row,
and ``table_message`` wraps rows in the envelope (with ``keys`` and ``filter`` for a partial).
Order-book prices never cross: bids sit below 1000, asks above. Nothing here draws from
hypothesis; ``fuzz_strategies`` does the choosing and the damage.
"""

from __future__ import annotations

from typing import Any, Final

from bitmex_trio_websocket import Storage
from bitmex_trio_websocket._storage import BOOK_TABLES

__all__ = [
    "BOOK10",
    "KEYS",
    "NEW_SYMBOL",
    "ORDER_STATUSES",
    "SYMBOLS",
    "TABLES",
    "Row",
    "delete_row",
    "make_row",
    "populated_storage",
    "table_message",
    "ts",
    "update_row",
]

Row = dict[str, Any]
SYMBOLS: Final = ("XBTUSD", "ETHUSD", "SOLUSD")
NEW_SYMBOL: Final = "XRPUSD"
BOOK10: Final = "orderBook10"
KEYS: Final[dict[str, list[str]]] = {
    "orderBookL2": ["symbol", "id", "side"],
    "orderBookL2_25": ["symbol", "id", "side"],
    BOOK10: ["symbol"],
    "instrument": ["symbol"],
    "funding": ["timestamp", "symbol"],
    "trade": [],
    "execution": [],
    "order": ["orderID"],
    "position": ["account", "symbol", "currency"],
}
TABLES: Final = tuple(KEYS)
ORDER_STATUSES: Final = ("New", "New", "PartiallyFilled", "Filled", "Canceled", "New", "Rejected")


def ts(n: int) -> str:
    return f"2025-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.{n * 7 % 1000:03d}Z"


def _book_side(n: int) -> str:
    return "Buy" if n % 2 else "Sell"


def _book_price(n: int) -> float:
    step = (n // 2 % 400 + 1) * 0.5
    return 1000.0 - step if n % 2 else 1000.0 + step


def _levels(n: int, buy: bool) -> list[list[float | int]]:
    sign = -1 if buy else 1
    return [[1000.0 + sign * (i + 1) * 0.5, 10 + (n + i) % 90] for i in range(10)]


def make_row(table: str, symbol: str, n: int) -> Row:
    """A valid full row of ``table`` whose key is a function of ``n`` (and ``symbol``)."""
    if table in BOOK_TABLES:
        return {
            "symbol": symbol,
            "id": 8_800_000_000 + n,
            "side": _book_side(n),
            "size": 1 + n * 7 % 1000,
            "price": _book_price(n),
            "timestamp": ts(n),
        }
    if table == BOOK10:
        return {
            "symbol": symbol,
            "bids": _levels(n, True),
            "asks": _levels(n, False),
            "timestamp": ts(n),
        }
    if table == "instrument":
        return {
            "symbol": symbol,
            "state": "Open",
            "lastPrice": 1000.0 + n,
            "markPrice": 1000.25 + n,
            "openInterest": 1_000_000 + n,
            "timestamp": ts(n),
        }
    if table == "funding":
        return {
            "timestamp": ts(n),
            "symbol": symbol,
            "fundingInterval": "2000-01-01T08:00:00.000Z",
            "fundingRate": 0.0001 * (n % 7 - 3),
        }
    if table in ("trade", "execution"):
        return {
            "timestamp": ts(n),
            "symbol": symbol,
            "side": _book_side(n),
            "size": 100 + n,
            "price": 1000.0 + n * 0.5,
            "trdMatchID": f"{n:08x}-0000-4000-8000-{n:012x}",
        }
    if table == "order":
        return {
            "orderID": f"{n:08x}-{SYMBOLS.index(symbol) if symbol in SYMBOLS else 9:04x}"
            f"-4000-8000-{n:012x}",
            "account": 1,
            "symbol": symbol,
            "side": _book_side(n),
            "orderQty": 100 * (n % 5 + 1),
            "price": 990.0 + n,
            "ordStatus": ORDER_STATUSES[n % len(ORDER_STATUSES)],  # some arrive closed
            "timestamp": ts(n),
        }
    if table == "position":
        return {
            "account": n % 3,
            "symbol": symbol,
            "currency": "XBt",
            "currentQty": n * 10 - 50,
            "avgEntryPrice": 1000.0 + n,
            "timestamp": ts(n),
        }
    # A table we do not model: keyed by "symbol" and "n".
    return {"symbol": symbol, "n": n, "value": n * 1.5}


def update_row(table: str, symbol: str, n: int, variant: int) -> Row:
    """A valid update row for the row ``make_row(table, symbol, n)``."""
    full = make_row(table, symbol, n)
    keys = KEYS.get(table, ["symbol", "n"])
    row = {k: full[k] for k in keys}
    if table in BOOK_TABLES:
        row["size"] = 1 + (n + variant) * 13 % 1000
        if variant % 3 == 1:  # the level moves (price changes, never crossing the book)
            row["price"] = _book_price(n + 2 * (variant % 5 + 1))
        elif variant % 3 == 0:  # legacy (pre-2023) form: no price
            pass
        else:
            row["price"] = full["price"]
        return row
    if table == BOOK10:
        return make_row(table, symbol, n + variant)
    if table == "instrument":
        row["lastPrice"] = 1000.0 + n + variant
    elif table == "funding":
        row["fundingRate"] = 0.0002
    elif table == "order":  # BitMEX repeats account and symbol in order updates
        row.update(account=1, symbol=symbol)
        row["ordStatus"] = "Filled" if variant % 2 else "PartiallyFilled"
        if variant % 3 == 0:  # later, so closed orders' time runs out (update rows may be undated)
            row["timestamp"] = ts(n + 4 * variant)
    elif table == "position":
        row["currentQty"] = variant
    else:
        row["value"] = variant
    return row


def delete_row(table: str, symbol: str, n: int) -> Row:
    full = make_row(table, symbol, n)
    row = {k: full[k] for k in KEYS.get(table, ["symbol", "n"])}
    if table in BOOK_TABLES and n % 2:
        row["price"] = full["price"]
    return row


def table_message(
    table: str,
    action: str,
    rows: list[Row],
    symbol: str | None = None,
    keys: list[str] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"table": table, "action": action}
    if action == "partial":
        message["keys"] = list(KEYS.get(table, ["symbol", "n"]) if keys is None else keys)
        message["types"] = {"symbol": "symbol"}
        message["filter"] = {} if symbol is None else {"symbol": symbol}
        if table in ("order", "position", "execution"):
            message["filter"]["account"] = 1
        message["attributes"] = {"symbol": "grouped"}
    message["data"] = rows
    return message


def populated_storage() -> Storage:
    """A store with a small partial of every modelled table (fresh rows every call)."""
    storage = Storage()
    for table in TABLES:
        rows = [make_row(table, "XBTUSD", n) for n in range(4 if table != BOOK10 else 1)]
        storage.apply(table_message(table, "partial", rows, "XBTUSD"))
    return storage
