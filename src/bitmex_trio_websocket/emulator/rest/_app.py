"""BitMEX's REST API as a sans-IO application: one request in, one ``RestResult`` out.

Theory of operation: ``RestApp.handle(method, target, headers, body, now)`` answers one HTTP
request the way BitMEX's API did, without sockets or clocks (the HTTP server in
``emulator._http`` feeds it and writes the result; ``now`` is the emulator's epoch time). Steps,
in the order a request met them at BitMEX:

1. route: the path under ``/api/v1`` and the verb pick a ``Route`` (``_endpoints.ROUTES``);
   anything else is 404 ``Not Found``;
2. authentication (``_auth.RestAuthenticator``): the account, or anonymous; a private route
   without an account is 401 ``Authorization Required``;
3. rate limits (``_ratelimit.RateLimiter``) per account, or per ``client`` address when
   anonymous: 429 with ``Retry-After``; the ``x-ratelimit-*`` headers go on every later answer;
4. the overload fault (``overload_next``): 503 ``The system is currently overloaded.``, after
   the limiter (BitMEX counted a shed request against the limit) and before any parameter is
   read (the request never reached the engine);
5. parameters (``_params``): decoded from query and body, typed per the route's ``Spec``;
6. the handler, whose refusals (``ExchangeError`` from the exchange, ``RestError`` here) are
   written as ``{"error": {"message", "name"}}`` with their status.

Bodies are JSON with BitMEX's (Java's) float spelling (``emulator._json``). The result carries
the deltas to publish on the websocket and, for ``POST /order/cancelAllAfter``, the
``(account, timeout_ms)`` of the dead man's switch to (re)arm; the caller owns timers.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..._exceptions import BitMEXError
from .._json import dumps
from ._auth import RestAuthenticator
from ._endpoints import ROUTES, Call
from ._errors import AUTHORIZATION_REQUIRED, HTTP_ERROR, NOT_FOUND, OVERLOADED, RestError
from ._params import decode, typed
from ._ratelimit import DEFAULT_REST_LIMITS, RateLimiter, RestLimits

if TYPE_CHECKING:
    from .._handshake import Authenticator
    from ..market._schemas import Delta
    from ..market._venue import Venue

__all__ = ["API_PREFIX", "RestApp", "RestResult"]

API_PREFIX: Final = "/api/v1"
CONTENT_TYPE: Final = ("content-type", "application/json; charset=utf-8")


@dataclass(frozen=True, slots=True)
class RestResult:
    """One response: status, headers (lower-case names), JSON body, and what to do next."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    deltas: list[Delta] = field(default_factory=list)
    switch: tuple[int, int] | None = None  # (account, timeout_ms) from cancelAllAfter

    def json(self) -> Any:
        """The body decoded (a convenience for tests and tools)."""
        return orjson.loads(self.body)


class RestApp:
    """BitMEX's REST API over a ``Venue`` (see the module docstring).

    ``limits`` apply to every account unless ``set_limits`` gave it its own; ``accept_nonce``
    keeps the legacy ``api-nonce`` header working (BitMEX removed it in February 2024).
    """

    def __init__(
        self,
        venue: Venue,
        authenticator: Authenticator,
        *,
        limits: RestLimits = DEFAULT_REST_LIMITS,
        accept_nonce: bool = True,
    ) -> None:
        self.venue = venue
        self.limits = limits
        self._auth = RestAuthenticator(authenticator.accounts, accept_nonce=accept_nonce)
        self._limiter = RateLimiter()
        self._account_limits: dict[int, RestLimits] = {}
        self._overloaded = 0
        self.requests = 0  # every request handled, for tools and benchmarks

    def set_limits(self, account: int, limits: RestLimits | None) -> None:
        """Give ``account`` its own limits (``None``: back to the app's ``limits``)."""
        if limits is None:
            self._account_limits.pop(account, None)
        else:
            self._account_limits[account] = limits

    def overload_next(self, n: int = 1) -> None:
        """The next ``n`` requests that pass the rate limiter get 503 (load shedding)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._overloaded += n

    def handle(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        now: float,
        *,
        client: str = "local",
    ) -> RestResult:
        """Answer one request; ``target`` is the raw request target (path and query)."""
        self.requests += 1
        verb = method.upper()
        path, _, query = target.partition("?")
        route = None
        if path.startswith(API_PREFIX + "/"):
            route = ROUTES.get((verb, urllib.parse.unquote(path[len(API_PREFIX) :]).rstrip("/")))
        if route is None:
            return _error(RestError(404, NOT_FOUND), [])
        by_name = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        try:
            account = self._auth.check(verb, target, by_name, body, now)
        except RestError as error:
            return _error(error, [])
        if route.private and account is None:
            return _error(RestError(401, AUTHORIZATION_REQUIRED), [])
        identity: tuple[str, object] = (
            ("account", account) if account is not None else ("ip", client)
        )
        limits = (
            self._account_limits.get(account, self.limits) if account is not None else self.limits
        )
        try:
            rate_headers = self._limiter.take(identity, limits, route.orders, now)
        except RestError as error:
            return _error(error, [])
        if self._overloaded > 0:
            self._overloaded -= 1
            return _error(RestError(503, OVERLOADED), rate_headers)
        try:
            params = typed(decode(query, by_name, body), route.spec)
            reply = route.handler(Call(self.venue, account, params, now))
        except BitMEXError as error:
            return _error(error, rate_headers)
        return RestResult(
            200,
            [CONTENT_TYPE, *rate_headers],
            dumps(reply.body).encode(),
            list(reply.deltas),
            reply.switch,
        )


def _error(error: BitMEXError, rate_headers: list[tuple[str, str]]) -> RestResult:
    """``error`` as BitMEX wrote it: a ``RestError``, an ``ExchangeError`` (same fields), or any
    other ``BitMEXError`` as a 400 ``HTTPError`` with its text."""
    status = getattr(error, "status", 400)
    name = getattr(error, "name", HTTP_ERROR)
    message = getattr(error, "message", None) or str(error)
    extra = list(getattr(error, "headers", ()))  # a 429 brings its own x-ratelimit-* values
    headers = [CONTENT_TYPE, *(extra or rate_headers)]
    body = dumps({"error": {"message": message, "name": name}}).encode()
    return RestResult(int(status), headers, body)
