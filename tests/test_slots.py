"""The compiled core's C constructors (``_storage/_slots.c``) build exactly what the classes do.

The compiled ``Storage`` builds every ``Change`` and ``ApplyResult`` with them, so an instance
they make must be indistinguishable from one made by the dataclass: equal, same hash and repr,
frozen, tracked by the garbage collector, picklable, and holding its own references (the values
outlive the caller's). Classes they cannot fill safely are refused when the constructor is made.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import importlib
import pickle
import sys
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitmex_trio_websocket import ApplyResult, Change, Violation
from bitmex_trio_websocket._storage import _core

COMPILED, WHY = _core.compiled_module()
pytestmark = pytest.mark.skipif(COMPILED is None, reason=f"no compiled core: {WHY}")


class Name(str):
    pass


def slots_module() -> Any:
    return importlib.import_module("bitmex_trio_websocket._compiled._slots")


def test_the_compiled_book_uses_the_c_constructors_and_pure_python_does_not() -> None:
    compiled_book = importlib.import_module("bitmex_trio_websocket._compiled._book")
    from bitmex_trio_websocket._storage import _book

    assert "slot constructor of Change" in repr(compiled_book._MAKE_CHANGE)
    assert "slot constructor of ApplyResult" in repr(compiled_book._MAKE_RESULT)
    assert _book._MAKE_CHANGE is None and _book._MAKE_RESULT is None


def test_an_instance_is_the_one_the_dataclass_builds() -> None:
    make_change = slots_module().constructor(Change)
    make_result = slots_module().constructor(ApplyResult)
    rows = ({"symbol": "XBTUSD", "id": 1, "side": "Buy", "size": 5, "price": 1.5},)
    change = make_change("orderBookL2", "update", "XBTUSD", rows)
    expected = Change("orderBookL2", "update", "XBTUSD", rows)
    assert type(change) is Change
    assert change == expected and repr(change) == repr(expected)
    empty = make_change("trade", "insert", None, ())
    assert hash(empty) == hash(Change("trade", "insert", None, ()))
    assert dataclasses.astuple(change) == dataclasses.astuple(expected)
    violation = Violation("crossed_book", "orderBookL2", "XBTUSD", None, "crossed")
    result = make_result("orderBookL2", "update", (change,), 2, (violation,))
    assert result == ApplyResult("orderBookL2", "update", (expected,), 2, (violation,))
    assert result.dropped == 2 and result.changes[0] is change
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.dropped = 3
    assert pickle.loads(pickle.dumps(result)) == result
    assert copy.deepcopy(result) == result
    assert dataclasses.replace(change, symbol="ETHUSD").symbol == "ETHUSD"


def test_an_instance_owns_its_references_and_the_collector_sees_it() -> None:
    make_change = slots_module().constructor(Change)

    class Marker:
        pass

    rows: Any = (Marker(),)
    before = sys.getrefcount(rows)
    change = make_change("t", "a", None, rows)
    assert sys.getrefcount(rows) == before + 1
    watched = weakref.ref(rows[0])
    del rows
    assert change.rows[0] is watched()  # kept alive by the instance alone
    assert gc.is_tracked(change)
    # A cycle through the instance is collected: the collector can see into it.
    holder = Marker()
    looped = make_change("t", "a", None, (holder,))
    holder.change = looped  # type: ignore[attr-defined]
    gone = weakref.ref(holder)
    del holder, looped, change
    gc.collect()
    assert gone() is None and watched() is None


def test_calls_with_the_wrong_arguments_are_refused() -> None:
    make_change = slots_module().constructor(Change)
    with pytest.raises(TypeError, match="exactly 4 positional"):
        make_change("t", "a", None)
    with pytest.raises(TypeError, match="exactly 4 positional"):
        make_change("t", "a", None, (), ())
    with pytest.raises(TypeError, match="exactly 4 positional"):
        make_change("t", "a", None, rows=())


class Plain:
    pass


class WithDict:
    __slots__ = ("__dict__", "a")


@dataclasses.dataclass(frozen=True, slots=True)
class WithPostInit:
    a: int

    def __post_init__(self) -> None:
        pass


@dataclasses.dataclass(frozen=True, slots=True, weakref_slot=True)
class WithWeakref:
    a: int


class Derived(Change):
    __slots__ = ("extra",)


@pytest.mark.parametrize(
    "cls", [Plain, WithDict, WithPostInit, WithWeakref, Derived, int, tuple, dict]
)
def test_classes_whose_instances_are_not_exactly_their_slots_are_refused(cls: type) -> None:
    with pytest.raises(TypeError):
        slots_module().constructor(cls)


def test_only_classes_are_accepted() -> None:
    with pytest.raises(TypeError, match="takes a class"):
        slots_module().constructor(Change("t", "a", None, ()))


def test_one_change_builds_the_result_of_a_one_row_message() -> None:
    module = slots_module()
    make = module.one_change(module.constructor(Change), module.constructor(ApplyResult))
    row = {"symbol": "XBTUSD", "id": 1, "side": "Sell", "size": 3, "price": 2.5}
    result = make("orderBookL2", "delete", "XBTUSD", row)
    expected = Change("orderBookL2", "delete", "XBTUSD", (row,))
    assert result == ApplyResult("orderBookL2", "delete", (expected,), 0, ())
    assert result.changes[0].rows[0] is row and gc.is_tracked(result.changes[0])
    with pytest.raises(TypeError, match="exactly 4 positional"):
        make("orderBookL2", "delete", "XBTUSD")
    with pytest.raises(TypeError, match="4-field and a 5-field"):
        module.one_change(module.constructor(ApplyResult), module.constructor(Change))
    with pytest.raises(TypeError, match="4-field and a 5-field"):
        module.one_change(Change, ApplyResult)


def test_standard_fields_reads_only_rows_in_bitmex_order() -> None:
    read = slots_module().standard_fields
    names = ["symbol", "id", "side", "size", "price", "timestamp", "transactTime"]
    values = ["XBTUSD", 7, "Buy", 5, 100.5, "2025-01-01T00:00:00.000Z", "2025-01-01T00:00:00Z"]
    assert read(dict(zip(names, values, strict=True))) == tuple(values)
    # Keys built at run time (not the interned names) are compared by value, then remembered.
    built = {"".join(name): value for name, value in zip(names, values, strict=True)}
    assert read(built) == tuple(values) and read(dict(built)) == tuple(values)

    odd_rows = [
        dict(zip(reversed(names), values, strict=True)),  # another order
        {**dict(zip(names[:6], values[:6], strict=True)), "note": 1},  # another field
        dict(zip(names[:6], values[:6], strict=True)),  # one short
        {Name(k) if k == "side" else k: v for k, v in zip(names, values, strict=True)},
        {("side" if k == "side" else k): v for k, v in zip(names, values, strict=True)} | {1: 2},
    ]
    for row in odd_rows:
        assert read(row) is None, row
    assert read([1, 2]) is None and read(None) is None


# Values of each type the store may meet in a row's field, for the C checks against Python's.
FIELD_VALUES: list[Any] = [
    "XBTUSD", "Buy", "Sell", "buy", "", "2025-01-01T00:00:00.000Z", 0, 7, -3, True, False,
    1 << 60, -(1 << 60), (1 << 60) + 1, 1 << 80, 10**400, 100.5, -0.0, float("nan"),
    float("inf"), float("-inf"), 1e308, None, [], {}, Name("Buy"),
]  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(range(len(FIELD_VALUES))), min_size=7, max_size=7))
def test_standard_fields_accepts_exactly_the_rows_python_accepts(picks: list[int]) -> None:
    """The C reader checks the field types itself: it may leave a row to Python (None), never
    accept one that Python's ``_standard_row`` refuses, and never change a value."""
    from bitmex_trio_websocket._storage import _book  # the pure core: no C reader

    assert _book._STANDARD_FIELDS is None
    names = ["symbol", "id", "side", "size", "price", "timestamp", "transactTime"]
    row = dict(zip(names, [FIELD_VALUES[i] for i in picks], strict=True))
    by_python = _book._standard_row(row)
    by_c = slots_module().standard_fields(row)
    assert by_c is None or by_c == by_python
    if by_c is not None:
        assert all(a is b for a, b in zip(by_c, row.values(), strict=True))


def test_standard_fields_takes_the_rows_bitmex_sends() -> None:
    read = slots_module().standard_fields
    for side, size, price in [("Buy", 1, 100.5), ("Sell", 0, 7), ("Sell", 1 << 60, -0.5)]:
        row = {"symbol": "XBTUSD", "id": 8, "side": side, "size": size, "price": price}
        row |= {"timestamp": "2025-01-01T00:00:00.000Z", "transactTime": "x"}
        assert read(row) == tuple(row.values())
