"""Typed columns for table rows: which kind each field is, and each value made to fit it.

Theory of operation: a Parquet file has one fixed schema, while BitMEX rows are JSON objects whose
fields may be missing (newer messages omit nulls) and whose numbers are spelled as the server
liked (``11584`` and ``11584.5`` in one price column). So a column's *kind* is decided once, then
every value is made to fit it:

1. **Declared**: a BitMEX partial declares every field's type (``"types": {"price": "float",
   "timestamp": "timestamp", ...}``); ``declared_kind`` maps those names, and a declared field is
   a column even if no row so far carried it.
2. **Inferred** for the rest, from the first batch of rows: ``kind_of`` classifies one value and
   ``merge`` joins two kinds (an int and a float make a float; strings that all read as UTC
   timestamps make a timestamp; anything else mixed is kept losslessly as JSON text).

``fit`` then cleans one column of a batch: values of the column's kind pass untouched (checked a
whole column at a time, by the set of value types); a value that does not fit (a fractional
number in an integer column, a word in a timestamp column) becomes a null and is counted, so the
caller can say how many there were instead of writing a wrong number. Sans-IO and free of
pyarrow: this module decides, ``_parquet`` writes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson

__all__ = ["Kind", "declared_kind", "fit", "infer_kinds", "kind_of", "merge", "timestamp_text"]


class Kind(enum.Enum):
    """A column's type, in the terms a Parquet column needs."""

    NULL = "null"  # no value seen yet: decided later, or a column of nulls
    BOOL = "bool"
    INT = "int64"
    FLOAT = "float64"
    TIMESTAMP = "timestamp"  # UTC, microseconds
    STRING = "string"
    JSON = "json"  # lists, objects and mixed values, kept as their JSON text


# BitMEX's type names (the partial's "types") and what each becomes. "timespan" values are
# durations written as a timestamp past 2000-01-01 (e.g. fundingInterval): kept as their text.
_DECLARED: Final[Mapping[str, Kind]] = {
    "timestamp": Kind.TIMESTAMP,
    "long": Kind.INT,
    "integer": Kind.INT,
    "int": Kind.INT,
    "float": Kind.FLOAT,
    "number": Kind.FLOAT,
    "boolean": Kind.BOOL,
    "symbol": Kind.STRING,
    "guid": Kind.STRING,
    "string": Kind.STRING,
    "timespan": Kind.STRING,
}

# BitMEX's timestamps: "2021-07-22T10:00:00.123Z" (fractions of 0 to 9 digits; always UTC).
_TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z\Z")

# The value types each kind takes as they are (bool is not an int here, unlike in Python).
_FITS: Final[Mapping[Kind, frozenset[type]]] = {
    Kind.BOOL: frozenset({bool, type(None)}),
    Kind.INT: frozenset({int, type(None)}),
    Kind.FLOAT: frozenset({float, int, type(None)}),
    Kind.TIMESTAMP: frozenset({str, type(None)}),
    Kind.STRING: frozenset({str, type(None)}),
    Kind.NULL: frozenset({type(None)}),
}


def declared_kind(bitmex_type: object) -> Kind | None:
    """The kind for a type name from a partial's ``types`` (``None``: unknown, infer it)."""
    if not isinstance(bitmex_type, str):
        return None
    return _DECLARED.get(bitmex_type)


def kind_of(value: object) -> Kind:
    """The narrowest kind that holds ``value``."""
    if value is None:
        return Kind.NULL
    kind = type(value)
    if kind is bool:
        return Kind.BOOL
    if kind is int:
        return Kind.INT
    if kind is float:
        return Kind.FLOAT
    if isinstance(value, str) and kind is str:
        return Kind.TIMESTAMP if _TIMESTAMP.match(value) else Kind.STRING
    return Kind.JSON


def merge(a: Kind, b: Kind) -> Kind:
    """The narrowest kind that holds the values of both kinds."""
    if a is b or b is Kind.NULL:
        return a
    if a is Kind.NULL:
        return b
    pair = {a, b}
    if pair == {Kind.INT, Kind.FLOAT}:
        return Kind.FLOAT
    if pair == {Kind.TIMESTAMP, Kind.STRING}:
        return Kind.STRING
    return Kind.JSON


def infer_kinds(
    rows: Iterable[Mapping[str, Any]], declared: Mapping[str, object] | None = None
) -> dict[str, Kind]:
    """Each field's kind: declared ones first (in declared order), then the rest as first seen.

    A field seen only as nulls is a ``STRING`` column (nulls fit anything; text is the widest).
    """
    kinds: dict[str, Kind] = {}
    fixed: set[str] = set()
    for name, bitmex_type in (declared or {}).items():
        kind = declared_kind(bitmex_type)
        kinds[name] = Kind.NULL if kind is None else kind
        if kind is not None:
            fixed.add(name)
    for row in rows:
        for name, value in row.items():
            if name in fixed:
                continue
            kinds[name] = merge(kinds.get(name, Kind.NULL), kind_of(value))
    return {name: Kind.STRING if kind is Kind.NULL else kind for name, kind in kinds.items()}


def fit(kind: Kind, values: Sequence[object], *, strict: bool = False) -> tuple[list[object], int]:
    """``values`` made to fit a column of ``kind``, and how many had to become null.

    Timestamps stay as text (the writer parses a whole column at once). Text columns are taken
    as they are unless ``strict``, which also checks each one reads as a BitMEX timestamp: the
    writer asks for that only when parsing the whole column failed.
    """
    if kind is Kind.JSON:
        return [None if v is None else orjson.dumps(v).decode() for v in values], 0
    if set(map(type, values)) <= _FITS[kind] and not (strict and kind is Kind.TIMESTAMP):
        return list(values), 0
    out: list[object] = []
    unfit = 0
    for value in values:
        cleaned = _fit_one(kind, value)
        if cleaned is None and value is not None:
            unfit += 1
        out.append(cleaned)
    return out, unfit


def _fit_one(kind: Kind, value: object) -> object:
    if value is None:
        return None
    if kind is Kind.STRING:
        return value if type(value) is str else orjson.dumps(value).decode()
    if kind is Kind.TIMESTAMP:
        return value if type(value) is str and _TIMESTAMP.match(value) else None
    if kind is Kind.INT:
        if type(value) is int:
            return value
        if type(value) is float and value.is_integer():
            return int(value)
        return None
    if kind is Kind.FLOAT:
        return float(value) if type(value) in (int, float) else None  # type: ignore[arg-type]
    if kind is Kind.BOOL:
        return value if type(value) is bool else None
    return None


def timestamp_text(epoch_seconds: float) -> str:
    """``epoch_seconds`` as BitMEX writes a timestamp (UTC, milliseconds, ``Z``)."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
