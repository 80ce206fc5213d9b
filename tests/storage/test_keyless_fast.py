"""Keyless tables (trade, quote...) append and evict on their ``SortedDict`` directly.

``Storage`` adds arrival keys at the end of the ``SortedList`` inside ``storage.data[table]`` and
drops the oldest rows from its front itself (``_store._push``), not through SortedDict's
methods. Here, on every core that is built, after every message: the sortedcontainers
invariants hold (``SortedDict._check``, which runs ``SortedList._check``), the table equals a
``SortedDict`` fed the same rows through its public methods, the bound holds exactly, and what a
user may call on the table (iteration, ``keys()[i]``, ``peekitem``, ``bisect``, ``index``,
``popitem``, ``del``, ``in``) answers as on that reference. A small load factor
(``SortedList._reset``) makes sublists split and merge every few rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sortedcontainers import SortedDict

from bitmex_trio_websocket._storage import _core, _store

from .helpers import msg, partial

CORES: dict[str, Callable[..., Any]] = {"pure": _store.Storage}
_compiled, _ = _core.compiled_module()
if _compiled is not None:
    CORES["compiled"] = _compiled.Storage


def trade(n: int, symbol: str = "XBTUSD") -> dict[str, Any]:
    return {"timestamp": "2025-01-01T00:00:00.000Z", "symbol": symbol, "size": n, "price": 1.0}


def same_as(table: SortedDict, reference: SortedDict) -> None:
    table._check()  # SortedList invariants, and the dict and the list hold the same keys
    assert table == reference
    assert list(table.items()) == list(reference.items())
    assert len(table) == len(reference) == len(table.keys())
    if not reference:
        return
    size = len(reference)
    for i in (0, 1, size // 2, size - 1, -1):
        if -size <= i < size:
            assert table.keys()[i] == reference.keys()[i]  # builds SortedList's positional index
            assert table.peekitem(i) == reference.peekitem(i)
    assert table.values()[-1] is reference.values()[-1]
    middle = reference.keys()[size // 2]
    assert table.index(middle) == reference.index(middle)
    assert table.bisect_left(middle) == reference.bisect_left(middle)
    assert table.bisect_right((0,)) == 0 and table.bisect_right((10**9,)) == size
    assert list(table.irange(middle)) == list(reference.irange(middle))
    assert middle in table and (0,) not in table


def run(
    core: str,
    limit: int,
    batches: list[int],
    load: int | None = None,
    poke: Callable[[SortedDict, SortedDict], None] | None = None,
) -> None:
    """Apply ``batches`` (rows per insert) and check the table against a reference each time."""
    storage = CORES[core](max_table_len=limit)
    first = [trade(0)]
    storage.apply(partial("trade", first, [], None))
    table = storage.data["trade"]
    assert type(table) is SortedDict
    if load is not None:
        table._list._reset(load)
    reference = SortedDict(zip(list(table.keys()), first, strict=True))
    sent = 1
    for count in batches:
        rows = [trade(sent + i) for i in range(count)]
        sent += count
        result = storage.apply(msg("trade", "insert", *rows))
        assert [r for change in result.changes for r in change.rows] == rows
        last = table.keys()[-1][0]  # arrival keys are consecutive: (n,), (n + 1,)...
        for n, row in enumerate(rows, last - count + 1):
            reference[(n,)] = row
        while len(reference) > limit:
            reference.popitem(0)
        if poke is None:
            assert len(table) == min(sent, limit)
            oldest = max(0, sent - limit)
            assert [row["size"] for row in table.values()] == list(range(oldest, sent))
        same_as(table, reference)
        if poke is not None:
            poke(table, reference)
            same_as(table, reference)


BATCHES = [1] * 30 + [3, 7, 1, 12, 1, 1, 25, 2, 40, 1, 1, 1, 9, 100, 1]


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("limit", [1, 2, 5, 17, 64, 1000])
@pytest.mark.parametrize("load", [None, 4, 5, 1000])
def test_appends_and_evictions_keep_sortedcontainers_invariants(
    core: str, limit: int, load: int | None
) -> None:
    run(core, limit, BATCHES, load)


@pytest.mark.parametrize("core", CORES)
def test_a_batch_larger_than_the_table_and_many_sublists(core: str) -> None:
    # Load 4: sublists of 2..8 keys, so one message fills, splits and evicts whole sublists.
    run(core, 50, [1, 200, 1, 49, 50, 51, 3, 1000, 1], load=4)
    run(core, 3000, [2500, 1, 2500, 7, 600], load=None)
    run(core, 3000, [2500, 1, 2500, 7, 600], load=1000)  # SortedList's default load


@pytest.mark.parametrize("core", CORES)
def test_tables_a_user_changed_between_messages(core: str) -> None:
    # A user's own changes through SortedDict's methods stay consistent with later arrivals.
    def poke(table: SortedDict, reference: SortedDict) -> None:
        if len(reference) > 3:
            key = reference.keys()[1]
            del table[key]
            del reference[key]
            assert table.popitem() == reference.popitem()

    run(core, 20, [1] * 20 + [5, 1, 30, 1], load=4, poke=poke)


@pytest.mark.parametrize("core", CORES)
def test_a_key_the_store_did_not_make_is_kept_in_order(core: str) -> None:
    # A user stored a key beyond the arrival counter: arrivals fall back to SortedDict's own
    # methods (new keys sort before it), and the bound still holds.
    storage = CORES[core](max_table_len=5)
    storage.apply(partial("trade", [trade(0)], [], None))
    table = storage.data["trade"]
    table[(10**9,)] = trade(-1)
    for n in range(1, 8):
        storage.apply(msg("trade", "insert", trade(n)))
        table._check()
        assert len(table) == min(n + 2, 5)
    assert table.keys()[-1] == (10**9,)
    assert [row["size"] for row in table.values()] == [4, 5, 6, 7, -1]


@pytest.mark.parametrize("core", CORES)
def test_per_table_limits_and_gated_rows(core: str) -> None:
    storage = CORES[core](max_table_len=1000, table_limits={"quote": 3})
    storage.apply(partial("quote", [], [], "XBTUSD"))
    for n in range(10):
        result = storage.apply(msg("quote", "insert", trade(n), trade(n, "ETHUSD")))
        assert result.dropped == 1
        assert [(c.symbol, len(c.rows)) for c in result.changes] == [("XBTUSD", 1)]
        one = storage.apply(msg("quote", "insert", trade(100 + n, "ETHUSD")))
        assert (one.changes, one.dropped) == ((), 1)
    table = storage.data["quote"]
    table._check()
    assert [row["size"] for row in table.values()] == [7, 8, 9]
