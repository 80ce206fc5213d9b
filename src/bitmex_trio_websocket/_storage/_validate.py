"""Validation of table messages: what the store refuses before it changes anything.

Theory of operation
-------------------
``Storage.apply`` checks a whole message before mutating, so that a message it refuses with
``RemoteProtocolError`` leaves the store exactly as it was. This module holds those checks:

* every row is a JSON object, and its ``symbol``, when present, a string (``check_row``);
* order-book rows (``orderBookL2``, ``orderBookL2_25``) carry a string symbol, an integer id, a
  side of ``Buy``/``Sell``, and a price and size that are finite numbers within float range
  (required in partials and inserts, checked when present in updates and deletes);
* ``orderBook10`` rows carry lists of ``[price, size]`` pairs of such numbers;
* keys (the partial's key columns) are strings or finite numbers, and one key position never mixes
  strings and numbers across a table, since the keys of one ``SortedDict`` must be comparable.

Everything else a row carries is BitMEX's business and is stored as sent. The error text names
what is wrong and carries a bounded ``repr`` of the offending value: decoded JSON may nest about
1000 deep and hold megabytes, and the server chooses the table and key names the message embeds.

``check_levels`` is the hot path's check: the well-formed row is tested inline, and only a row
that fails goes to ``check_level`` for the explanation. ``BookTable.update`` carries its own copy
of that inline test (the most common message; a call per message costs a measurable share).
"""

from __future__ import annotations

import reprlib
import sys
from typing import Any, Final

from .._events import Row
from .._exceptions import RemoteProtocolError

__all__ = [
    "FMAX",
    "KIND",
    "NFMAX",
    "NUMBER",
    "SIDES",
    "bad",
    "check_book10",
    "check_level",
    "check_levels",
    "check_row",
    "finite",
    "is_side",
    "row_key",
]

SIDES: Final = ("Buy", "Sell")
NUMBER: Final = (int, float)
# Prices become floats, so an integer beyond float range is as malformed as inf.
FMAX: Final = sys.float_info.max
NFMAX: Final = -FMAX
# The kind of a key value: strings (0) or numbers (1); other types are not keys.
KIND: Final[dict[type, int]] = {str: 0, int: 1, float: 1}
_INF: Final = float("inf")
_NINF: Final = -_INF
_UNSET: Final[Any] = object()

# Bounded repr for error text: decoded JSON may nest ~1000 deep, beyond what repr() survives.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring = 4, 12, 12, 80
_MAX_WHAT: Final = 300  # messages embed names the server chose (tables, keys, symbols): bound them


def bad(what: str, thing: Any = _UNSET) -> RemoteProtocolError:
    """The error for a malformed message: ``what`` is wrong, ``thing`` is the culprit."""
    if len(what) > _MAX_WHAT:
        what = what[: _MAX_WHAT - 3] + "..."
    return RemoteProtocolError(what, None if thing is _UNSET else _REPR.repr(thing))


_WHOLE: Final = 1 << 60  # an int within this is finite (compared unboxed in the compiled core)


def finite(value: Any) -> bool:
    """A JSON number usable as a float price or size (not NaN, inf or beyond float range)."""
    if type(value) is float:  # narrowed first: the compiled core compares them unboxed
        number: float = value
        return NFMAX <= number <= FMAX
    if type(value) is int:
        whole: int = value
        if -_WHOLE <= whole <= _WHOLE:
            return True
    # Not "type(value) is int" alone: a huge int must be compared exactly, never converted.
    return type(value) in NUMBER and NFMAX <= value <= FMAX


def is_side(value: Any) -> bool:
    """``value in SIDES``; a str is compared unboxed in the compiled core."""
    if type(value) is str:
        name: str = value
        return name == "Buy" or name == "Sell"
    return value in SIDES


def check_row(row: Any) -> Any:
    """Validate a row's container and symbol type; return its symbol (``None`` if absent)."""
    if type(row) is not dict and not isinstance(row, dict):
        raise bad("table row is not an object", row)
    symbol = row.get("symbol")
    if symbol is not None and type(symbol) is not str:
        raise bad("row symbol is not a string", row)
    return symbol


def check_level(row: Any, full: bool) -> None:
    """Validate an L2 row; ``full`` rows (partial, insert) must carry price and size."""
    if type(row) is not dict and not isinstance(row, dict):
        raise bad("order book row is not an object", row)
    if type(row.get("symbol")) is not str or type(row.get("id")) is not int:
        raise bad("order book row needs a string symbol and an integer id", row)
    if row.get("side") not in SIDES:
        raise bad("order book row side is not Buy/Sell", row)
    for field in ("price", "size"):
        value = row.get(field, _UNSET)
        if (full or value is not _UNSET) and not finite(value):
            raise bad(f"order book {field} is not a finite number", row)


def check_levels(data: list[Any], full: bool) -> None:
    """Validate the rows of an L2 message; the common well-formed row is checked inline."""
    for row in data:
        if type(row) is dict:
            try:
                if (
                    type(row["symbol"]) is str
                    and type(row["id"]) is int
                    and is_side(row["side"])
                    and (
                        # Full rows carry both (a KeyError leaves it to check_level); delete
                        # rows mostly carry neither, so they are looked for first.
                        finite(row["price"]) and finite(row["size"])
                        if full
                        else ("price" not in row or finite(row["price"]))
                        and ("size" not in row or finite(row["size"]))
                    )
                ):
                    continue
            except (KeyError, TypeError):
                pass
        check_level(row, full)  # raises, explaining what is wrong


def check_book10(row: Row) -> None:
    """Validate the ``bids``/``asks`` of an ``orderBook10`` row (a side may be left out)."""
    for side in ("bids", "asks"):
        levels = row.get(side, [])  # a side with no levels is left out (2023 listings)
        if type(levels) is not list or not all(
            type(lv) is list and len(lv) == 2 and finite(lv[0]) and finite(lv[1]) for lv in levels
        ):
            raise bad(f"orderBook10 {side} is not a list of [price, size]", row)


def row_key(row: Row, keys: list[str], kinds: list[int | None]) -> tuple[Any, ...]:
    """Build and validate a row's key; fills unset positions of ``kinds`` (pass a copy)."""
    try:
        key = (row[keys[0]],) if len(keys) == 1 else tuple([row[k] for k in keys])
    except KeyError as exc:
        error = bad(f"row lacks key field {exc}", row)
        error.__cause__ = None  # ``from None`` by hand: compiled, mypyc ignores it
        raise error from None
    for i, value in enumerate(key):
        kind = KIND.get(type(value))
        if kind is None or (kind and not _NINF < value < _INF):
            raise bad(f"key field {keys[i]!r} is not a string or finite number", row)
        held = kinds[i]
        if held != kind:
            if held is not None:
                raise bad(f"key field {keys[i]!r} mixes strings and numbers", row)
            kinds[i] = kind
    return key
