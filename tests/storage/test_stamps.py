"""Stamps as milliseconds: exact round trips, and stored levels hand out their rows as sent.

Stored order-book levels keep canonical stamps (``YYYY-MM-DDTHH:MM:SS.mmmZ``) as milliseconds
since the epoch and an ``int`` size unboxed (``_storage/_book``); any other value is kept as
sent. What a user sees must not change: every row handed out (a delete's, ``rows()``, the
``storage.data`` views, a merged update, a copy of the store) has the same keys, order, values
and types as the rows BitMEX sent. The conversions exist twice (``_stamps`` for pure Python,
``_slots.c`` for the compiled core); both must agree on every input.
"""

from __future__ import annotations

import copy
import importlib
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitmex_trio_websocket._storage import _book, _core, _stamps, _store
from bitmex_trio_websocket._storage._stamps import MAX_MS, stamp_ms, stamp_text

from .helpers import BOOK_KEYS, msg, partial

COMPILED, WHY = _core.compiled_module()
needs_compiled = pytest.mark.skipif(COMPILED is None, reason=f"no compiled core: {WHY}")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Functions = tuple[Callable[[str], int], Callable[[int], str]]  # (stamp_ms, stamp_text)


def c_functions() -> Functions:
    slots = importlib.import_module("bitmex_trio_websocket._compiled._slots")
    return slots.stamp_ms, slots.stamp_text


def implementations() -> list[Functions]:
    found: list[Functions] = [(stamp_ms, stamp_text)]
    if COMPILED is not None:
        found.append(c_functions())
    return found


def cores() -> list[Any]:
    found: list[Any] = [_store.Storage]
    if COMPILED is not None:
        found.append(COMPILED.Storage)
    return found


CORES = pytest.mark.parametrize("make", cores(), ids=["pure", "compiled"][: len(cores())])


# -- the conversions -------------------------------------------------------------------------


def test_known_stamps() -> None:
    for to_ms, to_text in implementations():
        assert to_ms("1970-01-01T00:00:00.000Z") == 0
        assert to_ms("9999-12-31T23:59:59.999Z") == MAX_MS
        assert to_text(0) == "1970-01-01T00:00:00.000Z"
        assert to_text(MAX_MS) == "9999-12-31T23:59:59.999Z"
        when = datetime(2024, 11, 24, 8, 26, 22, 356_000, tzinfo=UTC)
        ms = (when - EPOCH) // timedelta(milliseconds=1)
        assert to_ms("2024-11-24T08:26:22.356Z") == ms
        assert to_text(ms) == "2024-11-24T08:26:22.356Z"
        assert to_ms("2024-02-29T23:59:59.999Z") > 0  # a leap day
        assert to_ms("2000-02-29T00:00:00.000Z") > 0  # divisible by 400: a leap year


NOT_CANONICAL = [
    "",
    "2024-11-24T08:26:22.356",  # no zone
    "2024-11-24T08:26:22.356z",  # lowercase z
    "2024-11-24t08:26:22.356Z",
    "2024-11-24 08:26:22.356Z",
    "2024-11-24T08:26:22,356Z",
    "2024-11-24T08:26:22.356+00:00",  # offsets
    "2024-11-24T08:26:22.356+05",
    "2024-11-24T08:26:22+05:00Z",
    "2024-11-24T08:26:22.356123Z",  # microseconds
    "2024-11-24T08:26:22.35Z",
    "2024-11-24T08:26:22Z",
    "2024-11-24T08:26:22.356Z ",
    " 2024-11-24T08:26:22.356Z",
    "2024-02-30T00:00:00.000Z",  # no such day
    "2023-02-29T00:00:00.000Z",  # not a leap year
    "2100-02-29T00:00:00.000Z",  # divisible by 100, not 400
    "2024-04-31T00:00:00.000Z",
    "2024-00-10T00:00:00.000Z",
    "2024-13-10T00:00:00.000Z",
    "2024-11-00T00:00:00.000Z",
    "2024-11-24T24:00:00.000Z",  # 24:00
    "2024-11-24T23:60:00.000Z",
    "2016-12-31T23:59:60.000Z",  # a leap second
    "1969-12-31T23:59:59.999Z",  # before the epoch
    "0000-01-01T00:00:00.000Z",
    "+024-11-24T08:26:22.356Z",  # signs, spaces, underscores where digits go
    "2024-+1-24T08:26:22.356Z",
    "2024-11-24T08:26:22.-56Z",
    "2024-11-24T 8:26:22.356Z",
    "2_24-11-24T08:26:22.356Z",
    "\uff12\uff10\uff12\uff14-11-24T08:26:22.356Z",  # fullwidth digits
    "2024-11-24T08:26:22.\u0663\u0665\u0666Z",  # Arabic-Indic digits
    "2024-11-24T08:26:22.356\u017a",
    "timestamp",
]


@pytest.mark.parametrize("text", NOT_CANONICAL)
def test_non_canonical_text_is_refused(text: str) -> None:
    for to_ms, _ in implementations():
        assert to_ms(text) == -1


def test_a_cached_day_or_minute_does_not_admit_a_bad_rest() -> None:
    # Both implementations remember the last day (C) or minute (Python) they worked out.
    for to_ms, to_text in implementations():
        for bad in (
            "2016-12-31T23:59:60.000Z",
            "2016-12-31T23:59:5\u0669.000Z",
            "2016-12-31T23:59:59.99\u00b2Z",
            "2016-12-31T23:59:59+000Z",
            "2016-12-31T23:59:59.000+",
            "2016-12-31T24:00:00.000Z",
        ):
            assert to_text(to_ms("2016-12-31T23:59:59.999Z")) == "2016-12-31T23:59:59.999Z"
            assert to_ms(bad) == -1
        assert to_ms("2016-12-31T23:59:59.000Z") == to_ms("2017-01-01T00:00:00.000Z") - 1000


def test_milliseconds_outside_the_canonical_years_are_refused() -> None:
    for _, to_text in implementations():
        for ms in (-1, MAX_MS + 1, 2**70, -(2**70)):
            with pytest.raises(ValueError, match="outside"):
                to_text(ms)


@given(st.integers(0, MAX_MS))
def test_every_valid_ms_round_trips_in_both_implementations(ms: int) -> None:
    text = stamp_text(ms)
    expected = EPOCH + timedelta(milliseconds=ms)
    assert text == expected.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    assert stamp_ms(text) == ms
    for to_ms, to_text in implementations():
        assert to_text(ms) == text
        assert to_ms(text) == ms


STAMP_CHARS = st.sampled_from("0123456789-T:.Z z+\u0663\uff10/")


@st.composite
def near_stamps(draw: st.DrawFn) -> str:
    """A canonical stamp with a few characters replaced, removed or added."""
    chars = list(stamp_text(draw(st.integers(0, MAX_MS))))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(chars)))
        what = draw(st.sampled_from(["replace", "delete", "insert"]))
        if what == "insert" or at == len(chars):
            chars.insert(at, draw(STAMP_CHARS))
        elif what == "delete":
            del chars[at]
        else:
            chars[at] = draw(STAMP_CHARS)
    return "".join(chars)


@given(st.one_of(st.text(), st.text(STAMP_CHARS, min_size=24, max_size=24), near_stamps()))
def test_both_implementations_agree_on_any_text(text: str) -> None:
    ms = stamp_ms(text)
    for to_ms, to_text in implementations():
        assert to_ms(text) == ms
        if ms >= 0:  # canonical: the text comes back exactly
            assert to_text(ms) == text
    if ms >= 0:
        assert datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z") == EPOCH + timedelta(
            milliseconds=ms
        )
    else:
        assert ms == -1


def test_each_core_uses_its_own_conversions() -> None:
    assert _book._STAMP_MS is _stamps.stamp_ms and _book._STAMP_TEXT is _stamps.stamp_text
    if COMPILED is not None:
        compiled_book = importlib.import_module("bitmex_trio_websocket._compiled._book")
        assert c_functions() == (compiled_book._STAMP_MS, compiled_book._STAMP_TEXT)


# -- stored levels hand out their rows as sent --------------------------------------------


def book_row(level_id: int, side: str, price: float, **fields: Any) -> dict[str, Any]:
    row = {"symbol": "XBTUSD", "id": level_id, "side": side, "size": 100, "price": price}
    row.update(timestamp="2024-11-24T08:26:22.356Z", transactTime="2024-11-24T08:26:22.275Z")
    row.update(fields)
    return {k: v for k, v in row.items() if v is not ABSENT}


ABSENT: Any = object()
# Rows no compact level can hold exactly, each kept as sent; and standard ones for contrast.
ODD_ROWS = [
    book_row(1, "Buy", 99.0, timestamp="2024-11-24T08:26:22.356+00:00"),
    book_row(2, "Buy", 98.5, size=100.0),  # a float size stays a float
    book_row(3, "Buy", 98.0, timestamp="2016-12-31T23:59:60.000Z", transactTime=None),
    book_row(4, "Buy", 97.5, timestamp=1_732_436_782_356),
    book_row(5, "Sell", 100.5, transactTime="2024-11-24T08:26:22.275123Z"),
    book_row(6, "Sell", 101.0, timestamp="1969-12-31T23:59:59.999Z"),
    book_row(7, "Sell", 101.5, timestamp="2024-11-24T08:26:22.356z", extra=[1]),
]
STANDARD_ROWS = [
    book_row(8, "Buy", 97.0),
    book_row(9, "Buy", 96.5, timestamp=ABSENT),
    book_row(10, "Sell", 102.0, transactTime=ABSENT),
    book_row(11, "Sell", 102.5, timestamp=ABSENT, transactTime=ABSENT),
    book_row(12, "Sell", 103.0, transactTime="2024-11-24T08:26:22.356Z"),
    book_row(13, "Sell", 103.5, size=2**40),
]


def exactly(row: dict[str, Any]) -> list[tuple[str, type, Any]]:
    """A row's keys in order, with each value's type: what ``==`` alone would not compare."""
    return [(key, type(value), value) for key, value in row.items()]


def stored(storage: Any, row: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = storage.data["orderBookL2"]["XBTUSD"][row["side"]][row["id"]]
    return view


@CORES
def test_levels_hand_out_their_rows_as_sent(make: Any) -> None:
    storage = make()
    rows = ODD_ROWS + STANDARD_ROWS
    storage.apply(partial("orderBookL2", [dict(row) for row in rows], BOOK_KEYS, "XBTUSD"))
    for row in rows:
        assert exactly(stored(storage, row)) == exactly(row)
    by_id = {row["id"]: row for row in storage.rows("orderBookL2")}
    assert {level_id: exactly(row) for level_id, row in by_id.items()} == {
        row["id"]: exactly(row) for row in rows
    }
    for copied in (copy.deepcopy(storage), pickle.loads(pickle.dumps(storage))):
        for row in rows:
            assert exactly(stored(copied, row)) == exactly(row)
    # A delete hands out the stored row.
    for row in rows:
        gone = {"symbol": "XBTUSD", "id": row["id"], "side": row["side"]}
        (change,) = storage.apply(msg("orderBookL2", "delete", gone)).changes
        assert [exactly(out) for out in change.rows] == [exactly(row)]
    assert storage.rows("orderBookL2") == []


@CORES
def test_inserts_and_updates_keep_values_as_sent(make: Any) -> None:
    storage = make()
    storage.apply(partial("orderBookL2", [], BOOK_KEYS, "XBTUSD"))
    for row in ODD_ROWS + STANDARD_ROWS:  # one-row inserts (the fast path where it applies)
        storage.apply(msg("orderBookL2", "insert", dict(row)))
        assert exactly(stored(storage, row)) == exactly(row)
    # Updates turn standard levels odd and odd ones standard; each merged row is what is stored.
    standard = {k: v for k, v in STANDARD_ROWS[0].items() if k not in ("id", "side", "price")}
    odd = {k: v for k, v in ODD_ROWS[1].items() if k not in ("id", "side", "price")}
    for row, fields in [(ODD_ROWS[1], standard), (STANDARD_ROWS[0], odd)]:
        for changes in (fields, {"size": 7}, {"size": 7.5, "timestamp": "x"}, {"timestamp": 0}):
            update = {"symbol": "XBTUSD", "id": row["id"], "side": row["side"], **changes}
            expected = {**stored(storage, row), **changes}
            (change,) = storage.apply(msg("orderBookL2", "update", update)).changes
            assert [exactly(out) for out in change.rows] == [exactly(expected)]
            assert exactly(stored(storage, row)) == exactly(expected)
            full = {**expected, "size": 9, "timestamp": "2024-11-24T08:26:23.000Z"}
            (change,) = storage.apply(msg("orderBookL2", "update", full)).changes
            assert exactly(stored(storage, row)) == exactly(full) == exactly(change.rows[0])


@CORES
def test_standard_levels_are_stored_compactly_and_odd_ones_as_sent(make: Any) -> None:
    storage = make()
    rows = ODD_ROWS + STANDARD_ROWS
    storage.apply(partial("orderBookL2", [dict(row) for row in rows], BOOK_KEYS, "XBTUSD"))
    book = storage._books["orderBookL2"].books["XBTUSD"]
    kinds = {
        level_id: type(level).__name__
        for side in book.values()
        for level_id, level in side.ids.items()
    }
    assert kinds == {row["id"]: "_LevelX" for row in ODD_ROWS} | {
        row["id"]: "_Level" for row in STANDARD_ROWS
    }
