"""The values users receive (``_events``): the fast constructor builds the very same objects."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

import bitmex_trio_websocket as btw
from bitmex_trio_websocket import ApplyResult, Change, Violation
from bitmex_trio_websocket._events import fast_constructor, new_change, new_result


def test_fast_constructed_objects_are_indistinguishable_from_ordinary_ones() -> None:
    rows = ({"symbol": "XBTUSD", "id": 1},)
    fast = new_change("orderBookL2", "update", "XBTUSD", rows)
    slow = Change("orderBookL2", "update", "XBTUSD", rows)
    assert type(fast) is Change and fast == slow
    assert repr(fast) == repr(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.symbol = "ETHUSD"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(fast)) == slow and copy.deepcopy(fast) == slow
    violation = Violation("unknown_key", "orderBookL2", "XBTUSD", ("XBTUSD", 1, "Buy"), "update")
    result = new_result("orderBookL2", "update", (fast,), 2, (violation,))
    assert result == ApplyResult("orderBookL2", "update", (slow,), 2, (violation,))
    assert type(result) is ApplyResult and dataclasses.asdict(result)["dropped"] == 2


def test_fast_constructor_refuses_what_it_cannot_copy_safely() -> None:
    @dataclasses.dataclass(frozen=True)
    class WithDict:  # no __slots__: the twin would not share its layout
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Slotted:
        a: int
        b: str

    with pytest.raises(TypeError):
        fast_constructor(WithDict)
    with pytest.raises(TypeError):
        fast_constructor(dict)
    make = fast_constructor(Slotted)
    assert make(1, "x") == Slotted(1, "x") and type(make(1, "x")) is Slotted


def test_lifecycle_union_has_a_name_that_does_not_shadow_trio_event() -> None:
    assert btw.LifecycleEvent == btw.Event == btw.Disconnected | btw.Reconnected | btw.Resyncing
