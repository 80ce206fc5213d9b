"""One-row updates of keyed tables (a fast path in ``_store``) agree with the general path.

A one-row ``update`` of a table keyed by one column (``instrument`` by symbol, ``order`` by
orderID, a numeric key) is read once and merged once; anything unusual is handed back to the
general path. Each case is applied to two equal stores: alone (the one-row path) and with a
second row of a symbol outside every partial (so the general path runs and that row is only
counted as dropped). Both must raise the same error, or give the same result but for that one
dropped row, and leave the same tables, on every core that is built. Also here: a delta row of a
keyed table with a null ``symbol`` is refused (it would have been merged into the stored row).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bitmex_trio_websocket import RemoteProtocolError
from bitmex_trio_websocket._storage import _core, _store

from .helpers import msg, partial

CORES: dict[str, Callable[..., Any]] = {"pure": _store.Storage}
_compiled, _ = _core.compiled_module()
if _compiled is not None:
    CORES["compiled"] = _compiled.Storage

TS = "2025-01-01T00:00:00.000Z"
LATER = "2025-01-01T00:05:00.000Z"


class Row(dict[str, Any]):
    """A dict subclass: accepted by the general path as before."""


def instruments() -> list[dict[str, Any]]:
    return [
        {"symbol": "XBTUSD", "state": "Open", "lastPrice": 100.0, "timestamp": TS},
        {"symbol": "ETHUSD", "state": "Open", "lastPrice": 3.5, "timestamp": TS},
    ]


def orders() -> list[dict[str, Any]]:
    base = {"symbol": "XBTUSD", "side": "Buy", "ordStatus": "New", "timestamp": TS}
    return [{**base, "orderID": "A", "price": 1.0}, {**base, "orderID": "B", "price": 2.0}]


def levels() -> list[dict[str, Any]]:
    return [{"id": 1, "symbol": "XBTUSD", "qty": 1}, {"id": 2.5, "symbol": "XBTUSD", "qty": 2}]


# table -> (keys, rows, the partial's symbol, a row of the same table for a slice never covered)
SETUPS: dict[str, tuple[list[str], Callable[[], list[dict[str, Any]]], str | None, Any]] = {
    "instrument": (["symbol"], instruments, None, {"symbol": "NOPARTIAL", "lastPrice": 1.0}),
    "order": (["orderID"], orders, "XBTUSD", {"orderID": "Z", "symbol": "NOPARTIAL"}),
    "numbered": (["id"], levels, "XBTUSD", {"id": 9, "symbol": "NOPARTIAL"}),
}

CASES: dict[str, tuple[str, Any]] = {
    "instrument price": ("instrument", {"symbol": "XBTUSD", "lastPrice": 101.5}),
    "instrument new field": ("instrument", {"symbol": "ETHUSD", "fundingRate": 0.0001}),
    "instrument unknown symbol": ("instrument", {"symbol": "SOLUSD", "lastPrice": 1.0}),
    "instrument reset symbol": ("instrument", {"symbol": "NOPARTIAL", "lastPrice": 2.0}),
    "instrument null symbol": ("instrument", {"symbol": None, "lastPrice": 1.0}),
    "instrument numeric symbol": ("instrument", {"symbol": 5, "lastPrice": 1.0}),
    "instrument without its key": ("instrument", {"lastPrice": 1.0}),
    "instrument not an object": ("instrument", ["XBTUSD"]),
    "instrument dict subclass": ("instrument", Row(symbol="XBTUSD", lastPrice=7.0)),
    "order without symbol": ("order", {"orderID": "A", "price": 1.5, "timestamp": LATER}),
    "order with symbol": ("order", {"orderID": "B", "symbol": "XBTUSD", "price": 2.5}),
    "order null symbol": ("order", {"orderID": "A", "symbol": None, "price": 1.5}),
    "order symbol not a string": ("order", {"orderID": "A", "symbol": 1, "price": 1.5}),
    "order to an uncovered symbol": ("order", {"orderID": "A", "symbol": "ETHUSD"}),
    "order unknown": ("order", {"orderID": "Q", "price": 9.0}),
    "order unknown with symbol": ("order", {"orderID": "Q", "symbol": "XBTUSD"}),
    "order closes": ("order", {"orderID": "A", "ordStatus": "Filled", "timestamp": TS}),
    "order closes undated": ("order", {"orderID": "B", "ordStatus": "Canceled"}),
    "order numeric key": ("order", {"orderID": 7, "price": 1.0}),
    "numbered int key": ("numbered", {"id": 1, "qty": 5}),
    "numbered float key": ("numbered", {"id": 2.5, "qty": 6}),
    "numbered float equal to an int key": ("numbered", {"id": 1.0, "qty": 7}),
    "numbered bool key": ("numbered", {"id": True, "qty": 1}),
    "numbered nan key": ("numbered", {"id": float("nan"), "qty": 1}),
    "numbered infinite key": ("numbered", {"id": float("inf"), "qty": 1}),
    "numbered huge int key": ("numbered", {"id": 10**400, "qty": 1}),
    "numbered string key": ("numbered", {"id": "1", "qty": 1}),
}


def outcome(storage: Any, message: dict[str, Any]) -> Any:
    try:
        result = storage.apply(message)
    except RemoteProtocolError as exc:
        return ("error", str(exc))
    return ("ok", result.table, result.action, result.changes, result.dropped, result.violations)


def state(storage: Any, table: str) -> Any:
    store = storage.data[table]
    return list(store.items()), storage.rows(table), storage._kinds.get(table)


def prepared(core: str, table: str) -> Any:
    keys, rows, symbol, _ = SETUPS[table]
    storage = CORES[core]()
    storage.apply(partial(table, rows(), keys, symbol))
    if symbol is None:
        storage.reset(table, "NOPARTIAL")  # carved out of the whole-table slice
    return storage


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("case", CASES)
def test_a_one_row_keyed_update_equals_the_general_path(core: str, case: str) -> None:
    table, item = CASES[case]
    padding = SETUPS[table][3]
    alone, padded = prepared(core, table), prepared(core, table)
    before = state(alone, table)
    one = outcome(alone, msg(table, "update", copy.copy(item)))
    two = outcome(padded, msg(table, "update", copy.copy(item), dict(padding)))
    if one[0] == "error":
        assert one == two
        assert state(alone, table) == state(padded, table) == before
    else:
        assert two[0] == "ok", two
        assert one[:4] == two[:4] and one[5] == two[5]
        assert two[4] == one[4] + 1
        assert state(alone, table) == state(padded, table)
    # Later messages see the same store (closed orders leave both tables alike, too).
    later = {"orderID": "B", "price": 3.0, "timestamp": LATER} if table == "order" else None
    if later is not None:
        assert outcome(alone, msg(table, "update", dict(later))) == outcome(
            padded, msg(table, "update", dict(later))
        )
        assert state(alone, table) == state(padded, table)


@pytest.mark.parametrize("core", CORES)
def test_an_update_hands_out_a_merged_copy_and_keeps_earlier_rows(core: str) -> None:
    storage = prepared(core, "instrument")
    held = storage.data["instrument"][("XBTUSD",)]
    snapshot = dict(held)
    sent = {"symbol": "XBTUSD", "lastPrice": 102.0}
    result = storage.apply(msg("instrument", "update", sent))
    (change,) = result.changes
    (row,) = change.rows
    assert (change.symbol, change.action) == ("XBTUSD", "update")
    assert row == {**snapshot, "lastPrice": 102.0}
    assert row is storage.data["instrument"][("XBTUSD",)]
    assert held == snapshot  # the row handed out before is a snapshot
    assert sent == {"symbol": "XBTUSD", "lastPrice": 102.0}
    storage.data["instrument"]._check()


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("action", ["insert", "update", "delete"])
def test_a_null_symbol_in_a_keyed_delta_row_is_refused(core: str, action: str) -> None:
    # The anomaly the fuzzer found: an order update setting symbol to null was merged, so the
    # change under the stored row's symbol carried symbol None. BitMEX never sends a null symbol
    # (a symbol-scoped table's rows always name theirs; since 2023 nulls are not sent at all),
    # so such a row is malformed: refused, the store unchanged. Absent is fine (order rows).
    storage = prepared(core, "order")
    before = state(storage, "order")
    row = {"orderID": "A" if action != "insert" else "C", "symbol": None, "price": 1.0}
    with pytest.raises(RemoteProtocolError, match=f"order {action} row has a null symbol"):
        storage.apply(msg("order", action, row, {"orderID": "B", "price": 2.5}))
    with pytest.raises(RemoteProtocolError, match="null symbol"):
        storage.apply(msg("order", action, row))
    assert state(storage, "order") == before
    without = {k: v for k, v in row.items() if k != "symbol"}
    if action == "insert":
        without["symbol"] = "XBTUSD"
    result = storage.apply(msg("order", action, without))
    assert [(c.symbol, len(c.rows)) for c in result.changes] == [("XBTUSD", 1)]


@pytest.mark.parametrize("core", CORES)
def test_a_null_symbol_is_still_accepted_where_nothing_is_merged(core: str) -> None:
    # Keyless tables store rows as sent (nothing merged) and partials set the table afresh: a
    # null symbol there is gated like an absent one, as before.
    storage = CORES[core]()
    storage.apply(partial("trade", [], [], None))
    result = storage.apply(msg("trade", "insert", {"symbol": None, "price": 1.0}))
    sent = {"symbol": None, "price": 1.0}
    assert [(c.symbol, c.rows) for c in result.changes] == [(None, (sent,))]
