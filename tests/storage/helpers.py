"""Message builders shared by the storage tests."""

from __future__ import annotations

from typing import Any

from bitmex_trio_websocket import Storage

__all__ = ["BOOK_KEYS", "Row", "book_partial", "level", "levels_of", "msg", "partial"]

BOOK_KEYS = ["symbol", "id", "side"]
Row = dict[str, Any]


def partial(
    table: str, data: list[dict[str, Any]], keys: list[str], symbol: str | None = None
) -> dict[str, Any]:
    return {
        "table": table,
        "action": "partial",
        "keys": keys,
        "filter": {} if symbol is None else {"symbol": symbol},
        "data": data,
    }


def msg(table: str, action: str, *rows: dict[str, Any]) -> dict[str, Any]:
    return {"table": table, "action": action, "data": list(rows)}


def level(
    symbol: str, level_id: int, side: str, size: int | None = None, price: float | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {"symbol": symbol, "id": level_id, "side": side}
    if size is not None:
        row["size"] = size
    if price is not None:
        row["price"] = price
    return row


def book_partial(symbol: str, *levels: tuple[int, str, int, float]) -> dict[str, Any]:
    rows = [level(symbol, i, side, size, price) for i, side, size, price in levels]
    return partial("orderBookL2", rows, BOOK_KEYS, symbol)


def levels_of(storage: Storage, symbol: str, table: str = "orderBookL2") -> tuple[list[Any], ...]:
    book = storage.book(symbol, table)
    return list(book.bids), list(book.asks)
