"""Requests in BitMEX's own terms, sans-IO: parameters, targets, bodies, clOrdIDs, safety.

Theory of operation: methods take keyword arguments under BitMEX's field names (``orderQty``,
``clOrdID``, ``execInst``...) and pass them through untouched but for ``None`` (left out, so a
default stays BitMEX's). ``filter`` and ``columns`` go as JSON, as BitMEX's swagger says. A GET
sends its parameters in the query string; POST, PUT and DELETE send a JSON body, as BitMEX's own
connectors did, and the signature covers exactly the target and body bytes built here.

``ClOrdIDs`` names orders the user did not name: ``PREFIX-N`` with a counter, so a retry of a
shed or interrupted order carries the same ``clOrdID`` and BitMEX refuses a second copy
(``Duplicate clOrdID``) instead of filling it twice. The prefix is random per client by
default (BitMEX kept clOrdIDs per account, so two runs must not collide) and can be fixed for
deterministic runs (backtests). BitMEX allowed 36 characters.

``retry_safe`` says which requests may be sent again when their first attempt's fate is
unknown (a 503 that may have been shed late, a connection dropped with the request in flight):
reads, and new orders carrying a ``clOrdID``. Everything else (amends, cancels, leverage, the
dead man's switch) is raised to the caller, who knows whether sending it again is right.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "CL_ORD_ID_MAX",
    "ClOrdIDs",
    "Request",
    "build_request",
    "is_order_route",
    "retry_safe",
]

CL_ORD_ID_MAX: Final = 36
_JSON_PARAMS: Final = frozenset({"filter", "columns"})
# BitMEX's order routes: the ones drawing on the 10-a-second bucket as well.
_ORDER_ROUTES: Final = frozenset(
    {
        ("POST", "/order"),
        ("PUT", "/order"),
        ("DELETE", "/order"),
        ("DELETE", "/order/all"),
        ("POST", "/position/leverage"),
    }
)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as it goes on the wire: ``target`` is the path with its query, exactly as
    signed; ``params`` what the caller asked for (kept for errors: no credentials in it)."""

    method: str
    path: str  # under the API prefix: "/order"
    target: str  # "/api/v1/order?symbol=XBTUSD"
    body: bytes
    params: Mapping[str, Any]

    def describe(self) -> dict[str, Any]:
        """What an error keeps of this request: method, path, parameters (never headers)."""
        return {
            "method": self.method,
            "path": self.target.split("?", 1)[0],
            "params": dict(self.params),
        }


def _query_value(name: str, value: Any) -> str:
    if name in _JSON_PARAMS or isinstance(value, dict | list | tuple):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def build_request(method: str, prefix: str, path: str, params: Mapping[str, Any]) -> Request:
    """The wire form of ``method path`` with ``params`` (``None`` values left out)."""
    given = {name: value for name, value in params.items() if value is not None}
    target = prefix + path
    body = b""
    if method == "GET":
        if given:
            query = urllib.parse.urlencode(
                [(name, _query_value(name, value)) for name, value in given.items()]
            )
            target = f"{target}?{query}"
    elif given:
        body = orjson.dumps(given)
    return Request(method, path, target, body, given)


def is_order_route(method: str, path: str) -> bool:
    return (method, path) in _ORDER_ROUTES


def retry_safe(request: Request) -> bool:
    """Whether sending ``request`` twice cannot do anything twice (see the module docstring)."""
    if request.method == "GET":
        return True
    return (request.method, request.path) == ("POST", "/order") and bool(
        request.params.get("clOrdID")
    )


class ClOrdIDs:
    """``PREFIX-1``, ``PREFIX-2``...: a random 12-hex-digit prefix unless one is given."""

    def __init__(self, prefix: str | None = None) -> None:
        if prefix is None:
            prefix = "btw" + os.urandom(6).hex()
        if not prefix or len(prefix) > CL_ORD_ID_MAX - 8:
            raise ValueError(f"cl_ord_id_prefix must be 1 to {CL_ORD_ID_MAX - 8} characters")
        self.prefix = prefix
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return f"{self.prefix}-{self._count}"
