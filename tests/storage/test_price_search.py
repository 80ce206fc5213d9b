"""The compiled core's own binary searches of the price index agree with ``bisect``.

The compiled ``_book`` searches sorted keys with its own loops (floats compared unboxed); pure
Python uses ``bisect``. Both must give the same insertion points for every key, including keys
equal to runs of held keys, ints among floats, and keys beyond either end.
"""

from __future__ import annotations

import importlib
from bisect import bisect_left, bisect_right
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitmex_trio_websocket._storage import _book, _core

_compiled, _ = _core.compiled_module()
MODULES: dict[str, Any] = {"pure": _book}
if _compiled is not None:
    MODULES["compiled"] = importlib.import_module("bitmex_trio_websocket._compiled._book")

prices = st.one_of(
    st.integers(-50, 50).map(lambda n: n * 0.5),  # floats on a tick, so runs of equal keys
    st.integers(-25, 25),  # ints equal to some of those floats
)


def test_the_compiled_copy_uses_its_own_loops() -> None:
    assert _book._COMPILED is False
    if "compiled" in MODULES:
        assert MODULES["compiled"]._COMPILED is True


@pytest.mark.parametrize("core", MODULES)
@given(keys=st.lists(prices, max_size=60), key=prices)
def test_insertion_points_are_bisects(core: str, keys: list[Any], key: Any) -> None:
    keys.sort()
    module = MODULES[core]
    assert module._bisect(keys, key, False) == bisect_left(keys, key)
    assert module._bisect(keys, key, True) == bisect_right(keys, key)


@pytest.mark.parametrize("core", MODULES)
@given(keys=st.lists(prices, max_size=40))
def test_the_arrival_order_check_is_strict(core: str, keys: list[Any]) -> None:
    expected = all(a < b for a, b in pairwise(keys))
    assert MODULES[core]._strictly_ascending(keys) == expected
    same = 1.5
    assert MODULES[core]._strictly_ascending([same, same]) is False  # one object twice
