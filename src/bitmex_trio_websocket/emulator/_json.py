"""JSON as BitMEX's serializer wrote it: Java's ``Double.toString`` for every float.

Theory of operation: BitMEX's feed handler was a JVM service, so a float column always has a
decimal point (``"price":94998.0``, never ``94998``) and values below 10^-3 or from 10^7 up use
Java's exponent form (``"fundingRate":1.0E-4``, ``"fundingRateDaily":3.0000000000000003E-4``,
roq-bitmex funding partial of 2024-05, ``../shared/captures/roq-bitmex_tests.jsonl`` line 7;
``"tickSize":1.0E-6`` line 8; whole floats ``"askPrice":97270.0``, jkorf line 3, 2025-02).
Integers (``long`` columns) stay integers.

orjson already writes whole floats with ``.0`` and uses the shortest round-trip digits, as Java
17+ does; only the range outside [10^-3, 10^7) is spelled differently (``0.0001``, ``1e+16``). So
``dumps`` encodes with orjson and rewrites just those number tokens, found by one compiled regex
that cannot match inside a string value unless the string itself looks like ``:0.0001,`` (our
own text never does). Frames without such a number cost one regex scan.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Final

import orjson

__all__ = ["dumps", "encode_table", "java_float"]

# A number token orjson wrote that Java writes differently: below 1e-3 (``0.000...``), in
# exponent form already (``1e16``, ``1.5e-7``), or 1e7 and above with a fraction (``12345678.0``).
_JAVA_DIFFERS: Final = re.compile(
    rb"(?<=[:,\[])-?(?:0\.000\d+|\d+(?:\.\d+)?e[-+]?\d+|[1-9]\d{7,}\.\d+)(?=[,}\]])"
)


def java_float(value: float) -> str:
    """``value`` as Java's ``Double.toString`` writes it (shortest digits)."""
    if value == 0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    power = exponent + len(text) - 1
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{power}"


def _rewrite(match: re.Match[bytes]) -> bytes:
    return java_float(float(match.group())).encode()


def dumps(obj: Any) -> str:
    """``obj`` as compact JSON with BitMEX's (Java's) float spelling."""
    raw = orjson.dumps(obj)
    return _JAVA_DIFFERS.sub(_rewrite, raw).decode()


def encode_table(table: str, action: str, data: list[dict[str, Any]]) -> str:
    """A non-partial table message, as BitMEX wrote it."""
    return dumps({"table": table, "action": action, "data": data})
