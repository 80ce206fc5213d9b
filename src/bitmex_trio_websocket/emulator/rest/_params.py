"""Request parameters as BitMEX read them: query string, JSON body or form body, then typed.

Theory of operation: BitMEX's swagger-described API took a route's parameters from wherever the
client put them: the query string (``GET``, and ``POST /order?symbol=...`` as ccxt once sent,
ccxt #368), a JSON body (``Content-Type: application/json``, the official connectors) or a
form body (``application/x-www-form-urlencoded``, the swagger explorer and many scripts).
``decode`` merges them, body over query, into ``{name: [values]}`` (a JSON body's values stay
typed, in a one-item list). A body whose content type says form is read as a form even if it
holds JSON text, which is how a PHP user with a misspelt ``Content-Type`` header got BitMEX's
``'symbol' is a required arg.`` (api-connectors #324); without a content type a body starting
with ``{`` is read as JSON.

``typed`` then applies a route's ``Spec`` (name -> kind, required names) and returns plain
Python values: ``int`` (integral numbers only, ``100.0`` is 100), ``float`` (finite), ``bool``
(``true``/``false``), ``str``, ``json`` (an object or array, given as JSON text or already
decoded), ``time`` (ISO 8601 date or date-time, as epoch seconds; naive means UTC) and ``ids``
(one id, a JSON array of ids, or repeated parameters, as a list). A value that does not fit
gives 400 ``ValidationError`` ``Invalid <name>`` (BitMEX's form, e.g. ``Invalid side``); a
missing required one 400 ``'<name>' is a required arg.``. Names the route does not know are
dropped, as BitMEX ignored them. Empty strings count as absent, as form clients send them.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ._errors import VALIDATION_ERROR, RestError, required_text

__all__ = ["KINDS", "Spec", "decode", "typed"]

KINDS: Final = frozenset({"int", "float", "bool", "str", "json", "time", "ids"})

Raw = dict[str, list[Any]]


@dataclass(frozen=True, slots=True)
class Spec:
    """A route's parameters: ``kinds`` name -> kind (one of ``KINDS``), ``required`` names."""

    kinds: Mapping[str, str] = field(default_factory=dict)
    required: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = {kind for kind in self.kinds.values() if kind not in KINDS}
        if unknown or not self.required <= set(self.kinds):
            raise ValueError(f"bad spec: kinds {sorted(unknown)}, required {self.required}")


def decode(query: str, headers: Mapping[str, str], body: bytes) -> Raw:
    """Every parameter of a request, body over query string (see the module docstring)."""
    params: Raw = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        params.setdefault(name, []).append(value)
    if not body.strip():
        return params
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    as_json = content_type.endswith("json") or (not content_type and body.lstrip().startswith(b"{"))
    from_body: Raw = {}
    if as_json:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RestError(400, "Unable to parse JSON body", name=VALIDATION_ERROR) from None
        if not isinstance(obj, dict):
            raise RestError(400, "Request body must be a JSON object", name=VALIDATION_ERROR)
        from_body = {str(name): [value] for name, value in obj.items()}
    else:
        text = body.decode("utf-8", errors="replace")
        for name, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
            from_body.setdefault(name, []).append(value)
    params.update(from_body)
    return params


def typed(raw: Raw, spec: Spec) -> dict[str, Any]:
    """The route's parameters, typed (see the module docstring); absent ones are left out."""
    out: dict[str, Any] = {}
    for name, kind in spec.kinds.items():
        values = [v for v in raw.get(name, ()) if v is not None and v != ""]
        if not values:
            continue
        out[name] = _ids(name, values) if kind == "ids" else _one(name, kind, values[-1])
    for name in spec.required:
        if name not in out:
            raise RestError(400, required_text(name))
    return out


def _invalid(name: str) -> RestError:
    return RestError(400, f"Invalid {name}", name=VALIDATION_ERROR)


def _one(name: str, kind: str, value: Any) -> Any:
    if kind == "str":
        if isinstance(value, (dict, list)):
            raise _invalid(name)
        return value if isinstance(value, str) else _json_scalar_text(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _invalid(name)
    if kind in ("int", "float"):
        number = _number(name, value)
        if kind == "float":
            return number
        if not number.is_integer():
            raise _invalid(name)
        return int(number)
    if kind == "json":
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise _invalid(name) from None
        if not isinstance(value, (dict, list)):
            raise _invalid(name)
        return value
    # kind == "time"
    if not isinstance(value, str):
        raise _invalid(name)
    return _time(name, value)


def _json_scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _invalid(name)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _invalid(name) from None
    else:
        raise _invalid(name)
    if not math.isfinite(number):
        raise _invalid(name)
    return number


def _time(name: str, text: str) -> float:
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise _invalid(name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _ids(name: str, values: list[Any]) -> list[str]:
    ids: list[str] = []
    for value in values:
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise _invalid(name) from None
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, str) or not item:
                raise _invalid(name)
            ids.append(item)
    return ids
