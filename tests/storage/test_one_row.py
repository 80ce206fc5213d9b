"""One-row order-book deltas (a fast path in ``_book``) agree with the general path.

A one-row ``update``/``insert``/``delete`` is read once and applied without grouping; anything
unusual is handed back to the general path. Here each case is applied twice to equal stores:
alone (the one-row path) and with a second row for a symbol that has had no partial (so the
general path runs, and that row is only counted as dropped). Both must raise the same error, or
give the same result but for that one dropped row, and leave the same rows and books, on every
core that is built.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bitmex_trio_websocket import RemoteProtocolError
from bitmex_trio_websocket._storage import _core, _store

from .helpers import BOOK_KEYS, partial

TS = "2025-01-01T00:00:00.000Z"
TS2 = "2025-01-01T00:00:01.000Z"
OTHER = {"symbol": "NOPARTIAL", "id": 1, "side": "Buy", "size": 1, "price": 1.0}

CORES: dict[str, Callable[[], Any]] = {"pure": _store.Storage}
_compiled, _ = _core.compiled_module()
if _compiled is not None:
    CORES["compiled"] = _compiled.Storage


def row(level_id: int, side: str, size: Any, price: Any, **extra: Any) -> dict[str, Any]:
    base = {"symbol": "XBTUSD", "id": level_id, "side": side, "size": size, "price": price}
    return {**base, "timestamp": TS2, "transactTime": TS2, **extra}


def without(item: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in fields}


def book() -> list[dict[str, Any]]:
    extra = {**row(4, "Sell", 5, 102.0), "timestamp": TS, "transactTime": TS, "note": "kept"}
    return [
        {**row(1, "Sell", 10, 101.0), "timestamp": TS, "transactTime": TS},
        {**row(2, "Buy", 20, 99.0), "timestamp": TS, "transactTime": TS},
        {**row(3, "Buy", 30, 99.0), "timestamp": TS, "transactTime": TS},
        extra,
    ]


class Odd(float):
    """A float subclass: not a JSON number, refused as before."""


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "update size": ("update", row(1, "Sell", 11, 101.0)),
    "update int price": ("update", row(1, "Sell", 11, 101)),
    "update moves": ("update", row(2, "Buy", 21, 98.5)),
    "update crosses": ("update", row(2, "Buy", 21, 101.5)),
    "update shared price": ("update", row(3, "Buy", 31, 99.0)),
    "update unknown id": ("update", row(9, "Sell", 1, 101.0)),
    "update wrong side": ("update", row(1, "Buy", 1, 101.0)),
    "update level with extras": ("update", row(4, "Sell", 6, 102.0)),
    "update extra field": ("update", row(1, "Sell", 11, 101.0, note="new")),
    "update without transactTime": ("update", without(row(1, "Sell", 11, 101.0), "transactTime")),
    "update without price": ("update", without(row(1, "Sell", 11, 101.0), "price")),
    "update same stamp": ("update", {**row(1, "Sell", 11, 101.0), "timestamp": TS}),
    "update bad side": ("update", row(1, "Hold", 11, 101.0)),
    "update bool id": ("update", row(True, "Sell", 11, 101.0)),
    "update string size": ("update", row(1, "Sell", "11", 101.0)),
    "update infinite price": ("update", row(1, "Sell", 11, float("inf"))),
    "update huge int size": ("update", row(1, "Sell", 10**400, 101.0)),
    "update float subclass": ("update", row(1, "Sell", 11, Odd(101.0))),
    "update not a dict": ("update", [1, "Sell"]),  # type: ignore[dict-item]
    "insert": ("insert", row(5, "Buy", 1, 98.0)),
    "insert crosses": ("insert", row(5, "Buy", 1, 103.0)),
    "insert at a held price": ("insert", row(5, "Buy", 1, 99.0)),
    "insert duplicate": ("insert", row(1, "Sell", 1, 101.0)),
    "insert without size": ("insert", without(row(5, "Buy", 1, 98.0), "size")),
    "insert extra field": ("insert", row(5, "Buy", 1, 98.0, note="x")),
    "insert bad price": ("insert", row(5, "Buy", 1, "98")),
    "delete": ("delete", without(row(1, "Sell", 0, 101.0), "size")),
    "delete without price": ("delete", without(row(2, "Buy", 0, 0), "size", "price")),
    "delete shared price": ("delete", without(row(3, "Buy", 0, 99.0), "size")),
    "delete with extras": ("delete", without(row(4, "Sell", 0, 102.0), "size")),
    "delete unknown": ("delete", without(row(9, "Sell", 0, 101.0), "size")),
    "delete bad size": ("delete", row(1, "Sell", None, 101.0)),
    "delete bad id": ("delete", without(row(1.0, "Sell", 0, 101.0), "size")),  # type: ignore[arg-type]
}


def outcome(storage: Any, message: dict[str, Any]) -> Any:
    try:
        result = storage.apply(message)
    except RemoteProtocolError as exc:
        return ("error", str(exc))
    return ("ok", result.table, result.action, result.changes, result.dropped, result.violations)


def state(storage: Any) -> Any:
    book = storage.book("XBTUSD")
    return storage.rows("orderBookL2"), list(book.bids), list(book.asks)


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("case", CASES)
def test_a_one_row_delta_equals_the_general_path(core: str, case: str) -> None:
    action, item = CASES[case]
    alone, padded = CORES[core](), CORES[core]()
    for storage in (alone, padded):
        storage.apply(partial("orderBookL2", book(), BOOK_KEYS, "XBTUSD"))
    if case == "update crosses":  # then a one-row delete on a crossed book, too
        action, item = "delete", without(row(1, "Sell", 0, 101.0), "size")
        for storage in (alone, padded):
            storage.apply({"table": "orderBookL2", "action": "update", "data": [CASES[case][1]]})
    one = outcome(alone, {"table": "orderBookL2", "action": action, "data": [copy.copy(item)]})
    two = outcome(
        padded, {"table": "orderBookL2", "action": action, "data": [copy.copy(item), OTHER]}
    )
    if one[0] == "ok" and two[0] == "ok":
        assert two[4] == one[4] + 1  # the padding row, dropped
        two = (*two[:4], one[4], *two[5:])
    assert one == two
    assert state(alone) == state(padded)


@pytest.mark.parametrize("core", CORES)
def test_a_one_row_delta_before_its_partial_is_dropped(core: str) -> None:
    storage = CORES[core]()
    storage.apply(partial("orderBookL2", book(), BOOK_KEYS, "XBTUSD"))
    for action in ("update", "insert", "delete"):
        other = {**row(1, "Sell", 1, 1.0), "symbol": "ETHUSD"}
        result = storage.apply({"table": "orderBookL2", "action": action, "data": [other]})
        assert (result.changes, result.dropped, result.violations) == ((), 1, ())


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("whole_table", [False, True], ids=["symbol slice", "whole table"])
def test_one_row_deltas_follow_a_reset_and_a_new_partial(core: str, whole_table: bool) -> None:
    """The one-row path remembers the last symbol it admitted and that symbol's book; a reset
    must make it drop the symbol's rows again, and a new partial must make it use the new book."""
    storage = CORES[core]()
    slice_symbol = None if whole_table else "XBTUSD"
    storage.apply(partial("orderBookL2", book(), BOOK_KEYS, slice_symbol))
    update = {"table": "orderBookL2", "action": "update", "data": [row(1, "Sell", 11, 101.0)]}
    assert storage.apply(copy.deepcopy(update)).changes[0].rows[0]["size"] == 11
    storage.reset("orderBookL2", "XBTUSD")
    for action, item in [
        ("update", row(1, "Sell", 12, 101.0)),
        ("insert", row(7, "Buy", 1, 98.0)),
        ("delete", without(row(1, "Sell", 0, 101.0), "size")),
    ]:
        result = storage.apply({"table": "orderBookL2", "action": action, "data": [item]})
        assert (result.changes, result.dropped) == ((), 1), action
    assert storage.rows("orderBookL2") == []
    fresh = [{**row(1, "Sell", 50, 105.0), "timestamp": TS, "transactTime": TS}]
    storage.apply(partial("orderBookL2", fresh, BOOK_KEYS, "XBTUSD"))
    result = storage.apply(copy.deepcopy(update))
    assert result.changes[0].rows[0]["price"] == 101.0 and not result.violations
    assert list(storage.book("XBTUSD").asks) == [(101.0, 11)]
