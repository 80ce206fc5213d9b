"""``open_bitmex_rest``: BitMEX's REST API from trio, on one keep-alive connection.

Theory of operation: ``BitMEXRest`` sends one request at a time (a lock), on one HTTP/1.1
connection (``_http``) kept open between requests as BitMEX advised; a connection the server
closed is replaced before the next request. Each call goes through ``_call``:

1. wait until the rate-limit tracker (``_limits``, fed by every answer's ``x-ratelimit-*``
   headers) says the request will not be refused: the wait is on trio's clock;
2. sign it (``_auth.rest_signature``; ``api-expires`` = the injected wall clock + ``expiry``);
3. send it and read the answer within ``timeout`` (the connection is otherwise closed, as its
   answer may still come, and the attempt has timed out);
4. sort the answer: 2xx is decoded JSON; 429 waits ``Retry-After`` and tries again; 503
   (BitMEX shedding load) tries again after 0.5 s, 1 s, 2 s... but only when a retry is safe
   (``_params.retry_safe``: reads, and new orders, which always carry a ``clOrdID``); any other
   error becomes a ``BitMEXAPIError`` (``AuthenticationError`` for 401) with BitMEX's status,
   name and message and the request without its headers;
5. an attempt that timed out, or whose connection dropped, with the request sent is exactly as
   uncertain either way (it may have been executed): the request is sent again on a new
   connection when safe, else raised (``ConnectionTimeout``, ``ConnectionClosed``), saying it
   may have been executed. One that never left (connecting timed out or failed) is always
   sent again.

At most ``retries`` extra attempts per call, whatever their causes; past them, the last
failure is raised. A new order sent again after an attempt whose fate is unknown may be refused
as ``Duplicate clOrdID``: the first attempt did arrive, so the order is looked up by its
``clOrdID`` and returned, as if the first answer had come.

``open_orders`` pages: BitMEX answers at most ``OPEN_ORDERS_COUNT`` rows a request, so it asks
with ``start`` until a short page, each page a call of its own (see its docstring for what
happens when orders change between pages).

Secrets: the API secret lives in a ``Credentials`` (hidden from its repr) and only ever goes
into the HMAC; errors and logs carry method, path and parameters, never headers.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
import trio
from trio_websocket import CloseReason

from .._auth import Credentials, expires_at, rest_signature
from .._exceptions import (
    AuthenticationError,
    BitMEXAPIError,
    ConnectionClosed,
    ConnectionTimeout,
    ExchangeClosedError,
    Overloaded,
    RateLimited,
    RemoteProtocolError,
)
from .._networks import CLOSED_NOTICE, is_closed_exchange
from ._http import HttpConnection, HttpResponse, _ConnectionLost, open_stream
from ._limits import RateLimit, RateLimitTracker
from ._params import ClOrdIDs, Request, build_request, is_order_route, retry_safe

__all__ = ["REST_NETWORKS", "BitMEXRest", "open_bitmex_rest", "resolve_rest_network"]

log = logging.getLogger("bitmex_trio_websocket.rest")

REST_NETWORKS: Final = {
    "mainnet": "https://www.bitmex.com/api/v1",
    "testnet": "https://testnet.bitmex.com/api/v1",
}
DEFAULT_EXPIRY: Final = 5.0  # api-expires this far ahead (BitMEX's connectors used 5 s)
OVERLOAD_DELAY: Final = 0.5  # BitMEX: wait at least 500 ms before retrying a shed request
DEFAULT_RETRY_AFTER: Final = 1.0  # a 429 without a usable Retry-After
# A page of open orders: BitMEX refused a count above 500, later above 1000; 500 is within both.
OPEN_ORDERS_COUNT: Final = 500
# Rows each page repeats of the one before: up to this many orders may close between two pages
# without a page asked again (see open_orders).
OPEN_ORDERS_OVERLAP: Final = 50

StreamFactory = Callable[[], Awaitable[trio.abc.Stream]]


def resolve_rest_network(network: str) -> str:
    """``mainnet``/``testnet`` or an http(s) base URL (``.../api/v1``) -> base URL."""
    if network in REST_NETWORKS:
        return REST_NETWORKS[network]
    if isinstance(network, str) and network.startswith(("http://", "https://")):
        return network.rstrip("/")
    raise ValueError(
        f"network must be 'mainnet', 'testnet' or an http:// or https:// URL, not {network!r}"
    )


class BitMEXRest:
    """BitMEX's REST API (see the module docstring); made by ``open_bitmex_rest``.

    Methods take BitMEX's field names as keyword arguments and return its rows as dicts (lists
    of them for list routes), like the websocket's rows. ``rate_limit`` holds the latest
    ``x-ratelimit-*`` figures.
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None,
        nursery: trio.Nursery,
        *,
        connect: StreamFactory | None,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
        clock: Callable[[], float],
        expiry: float,
        retries: int,
        cl_ord_ids: ClOrdIDs,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._authority = parts.netloc.rsplit("@", 1)[-1]
        self._prefix = parts.path.rstrip("/")
        self._credentials = credentials
        self._nursery = nursery
        self._connect = connect
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._clock = clock
        self._expiry = expiry
        self._retries = retries
        self._cl_ord_ids = cl_ord_ids
        self._limits = RateLimitTracker()
        self._lock = trio.Lock()
        self._http: HttpConnection | None = None
        self.connections = 0  # connections opened so far (a dropped one is replaced)

    def __repr__(self) -> str:
        key = self._credentials.api_key if self._credentials is not None else None
        return f"<BitMEXRest {self.base_url} api_key={key!r}>"

    @property
    def rate_limit(self) -> RateLimit:
        """The latest ``x-ratelimit-*`` figures BitMEX sent."""
        return self._limits.latest

    # ------------------------------------------------------------------ orders

    async def place_order(
        self,
        *,
        symbol: str,
        side: str | None = None,
        orderQty: float | None = None,  # BitMEX's field names
        price: float | None = None,
        clOrdID: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /order``: the new order's row. Without a ``clOrdID`` one is made up, so the
        order can be sent again safely (see the module docstring)."""
        cl_ord_id = clOrdID or self._cl_ord_ids.next()
        params = {"symbol": symbol, "side": side, "orderQty": orderQty, "price": price}
        result = await self._call("POST", "/order", {**params, **fields, "clOrdID": cl_ord_id})
        return _row(result)

    async def amend_order(
        self,
        *,
        orderID: str | None = None,
        origClOrdID: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``PUT /order``: the amended row (``orderQty``, ``leavesQty``, ``price``...)."""
        if orderID is None and origClOrdID is None:
            raise ValueError("amend_order needs orderID or origClOrdID")
        params = {"orderID": orderID, "origClOrdID": origClOrdID, **fields}
        return _row(await self._call("PUT", "/order", params))

    async def cancel_order(
        self,
        *,
        orderID: str | list[str] | None = None,
        clOrdID: str | list[str] | None = None,
        text: str | None = None,
    ) -> list[dict[str, Any]]:
        """``DELETE /order``: one row per id (an order already closed carries ``error``)."""
        if orderID is None and clOrdID is None:
            raise ValueError("cancel_order needs orderID or clOrdID")
        params = {"orderID": orderID, "clOrdID": clOrdID, "text": text}
        return _rows(await self._call("DELETE", "/order", params))

    async def cancel_all(
        self,
        symbol: str | None = None,
        filter: Mapping[str, Any] | None = None,  # BitMEX's name
        *,
        text: str | None = None,
    ) -> list[dict[str, Any]]:
        """``DELETE /order/all``: the canceled rows."""
        params = {"symbol": symbol, "filter": filter, "text": text}
        return _rows(await self._call("DELETE", "/order/all", params))

    async def cancel_all_after(self, timeout_ms: int) -> dict[str, Any]:
        """``POST /order/cancelAllAfter``: arm (or, with 0, disarm) the dead man's switch."""
        return _row(await self._call("POST", "/order/cancelAllAfter", {"timeout": timeout_ms}))

    async def set_leverage(self, symbol: str, leverage: float) -> dict[str, Any]:
        """``POST /position/leverage`` (0 is cross margin): the position row."""
        params = {"symbol": symbol, "leverage": leverage}
        return _row(await self._call("POST", "/position/leverage", params))

    # ------------------------------------------------------------------ reads

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """``GET /order`` with ``filter={"open": true}``: every open order, oldest first, once.

        BitMEX answers a bounded ``count`` of rows a request (500 asked here, within every
        limit it had), so this asks page after page with ``start`` until a short page. The
        pages are separate requests (each one rate-limited and retried as any call), so the
        list is as of the last page: an order that closed while paging may be listed, with its
        row as last seen; one opened meanwhile is listed last.

        Orders closing between pages move every later one up, so a page at the next ``start``
        would skip as many unseen ones. Each page therefore starts ``OPEN_ORDERS_OVERLAP`` rows
        before the end of the last, and its first row must be one already seen: else the list
        moved further, and the page is asked again that much earlier. Rows are kept by
        ``orderID``, so the overlap never lists an order twice.
        """
        step = OPEN_ORDERS_COUNT - OPEN_ORDERS_OVERLAP
        found: dict[Any, dict[str, Any]] = {}  # by orderID, in the order first seen
        start = 0
        while True:
            params = {"symbol": symbol, "filter": {"open": True}, "count": OPEN_ORDERS_COUNT}
            page = _rows(await self._call("GET", "/order", {**params, "start": start or None}))
            if start and (not page or page[0].get("orderID") not in found):
                # Unseen rows may lie before this page: keeping it would list them out of
                # order or not at all. Ask again further back (0 at worst, always safe).
                start = max(0, start - step)
                continue
            known = len(found)
            for row in page:
                found[row.get("orderID")] = row  # the latest row, at the first row's place
            if len(page) < OPEN_ORDERS_COUNT:
                return list(found.values())
            if start and len(found) == known:
                # A full page past the first brings new rows unless the server ignores
                # ``start``: paging would never end.
                raise RemoteProtocolError(
                    f"GET /order repeated the rows before start={start}: paging cannot end"
                )
            start += step

    async def positions(self) -> list[dict[str, Any]]:
        """``GET /position``: every position row of the account."""
        return _rows(await self._call("GET", "/position", {}))

    async def executions(
        self,
        symbol: str | None = None,
        count: int = 100,
        start_time: datetime | str | None = None,
        *,
        every: bool = False,
        reverse: bool | None = None,
    ) -> list[dict[str, Any]]:
        """``GET /execution/tradeHistory``: balance-affecting executions (fills, funding,
        settlement), oldest first from ``start_time``; ``every=True``: ``GET /execution``,
        every execution (new, canceled...)."""
        if isinstance(start_time, datetime):
            start_time = start_time.isoformat()
        params = {"symbol": symbol, "count": count, "startTime": start_time, "reverse": reverse}
        path = "/execution" if every else "/execution/tradeHistory"
        return _rows(await self._call("GET", path, params))

    async def wallet(self, currency: str = "XBt") -> dict[str, Any]:
        """``GET /user/wallet``: the wallet row of ``currency``."""
        return _row(await self._call("GET", "/user/wallet", {"currency": currency}))

    async def margin(self, currency: str = "XBt") -> dict[str, Any]:
        """``GET /user/margin``: the margin row of ``currency``."""
        return _row(await self._call("GET", "/user/margin", {"currency": currency}))

    async def instruments(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """``GET /instrument?symbol=...``; without a symbol ``GET /instrument/active`` (the
        open contracts: BitMEX's plain list starts with long-expired ones)."""
        if symbol is None:
            return _rows(await self._call("GET", "/instrument/active", {}))
        return _rows(await self._call("GET", "/instrument", {"symbol": symbol}))

    async def order_book(self, symbol: str, depth: int = 25) -> list[dict[str, Any]]:
        """``GET /orderBook/L2``: ``depth`` levels a side (0: all), asks then bids."""
        return _rows(await self._call("GET", "/orderBook/L2", {"symbol": symbol, "depth": depth}))

    async def request(self, method: str, path: str, **params: Any) -> Any:
        """Any other route (``await rest.request("GET", "/trade", symbol="XBTUSD")``), with the
        same signing, limits, retries and errors; ``path`` is under the base URL."""
        return await self._call(method.upper(), "/" + path.lstrip("/"), params)

    # ------------------------------------------------------------------ the machinery

    async def _call(self, method: str, path: str, params: Mapping[str, Any]) -> Any:
        request = build_request(method, self._prefix, path, params)
        order_route = is_order_route(method, path)
        async with self._lock:
            uncertain = False  # an earlier attempt may have been executed
            attempt = 0
            while True:
                await trio.sleep_until(
                    self._limits.ready_at(trio.current_time(), order_route=order_route)
                )
                self._limits.sent(trio.current_time(), order_route=order_route)
                try:
                    response = await self._exchange(request)
                except (_ConnectionLost, _TimedOut) as failed:
                    # A timeout is as uncertain as a drop: both retried by the same rule.
                    uncertain = uncertain or failed.sent
                    unsafe = failed.sent and not retry_safe(request)
                    if attempt >= self._retries or unsafe:
                        raise _failed(request, failed, attempt + 1, uncertain) from None
                    log.warning("%s %s: %s; sending again", method, path, failed)
                    attempt += 1
                    continue
                self._limits.observe(response.headers, trio.current_time())
                status = response.status
                if 200 <= status < 300:
                    return _decode(response, request)
                if status == 429 and attempt < self._retries:
                    wait = _retry_after(response)
                    self._limits.refused(wait, trio.current_time())
                    log.warning("%s %s: rate limited; retrying in %s s", method, path, wait)
                    attempt += 1
                    continue
                if status == 503 and attempt < self._retries and retry_safe(request):
                    delay = OVERLOAD_DELAY * 2**attempt
                    log.warning("%s %s: overloaded (503); retrying in %s s", method, path, delay)
                    uncertain = True
                    attempt += 1
                    await trio.sleep(delay)
                    continue
                error = _api_error(response, request)
                if uncertain and _is_duplicate_cl_ord_id(error, request):
                    found = await self._find_order(str(request.params["clOrdID"]))
                    if found is not None:
                        return found
                raise error

    async def _exchange(self, request: Request) -> HttpResponse:
        """One attempt within ``timeout``: connect if needed, send, read the answer."""
        headers = [("Content-Type", "application/json")] if request.body else []
        if self._credentials is not None:
            expires = expires_at(self._clock(), expiry=self._expiry)
            signature = rest_signature(
                self._credentials.api_secret, request.method, request.target, expires, request.body
            )
            headers += [
                ("api-expires", str(expires)),
                ("api-key", self._credentials.api_key),
                ("api-signature", signature),
            ]
        sent = False
        with trio.move_on_after(self._timeout):
            http = await self._connection()
            sent = True  # from here on some of it may have left (send_all is the first wait)
            return await http.request(request.method, request.target, headers, request.body)
        await self._discard()  # its answer may still come: never reuse it
        if sent:
            raise _TimedOut(True, f"no answer within {self._timeout} s")
        raise _TimedOut(False, f"could not connect within {self._timeout} s")

    async def _connection(self) -> HttpConnection:
        http = self._http
        if http is not None and http.usable:
            return http
        await self._discard()
        try:
            if self._connect is not None:
                stream = await self._connect()
            else:
                stream = await open_stream(self._scheme, self._host, self._port, self._ssl_context)
        except (OSError, ssl.SSLError) as error:
            if self._connect is None and is_closed_exchange(self.base_url):
                raise ExchangeClosedError(f"{CLOSED_NOTICE} ({error})") from error
            raise
        http = HttpConnection(stream, self._authority)
        await self._nursery.start(http.run_reader)
        self._http = http
        self.connections += 1
        return http

    async def _discard(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def _find_order(self, cl_ord_id: str) -> dict[str, Any] | None:
        """The order with this ``clOrdID`` (already under the lock: one plain attempt)."""
        request = build_request("GET", self._prefix, "/order", {"filter": {"clOrdID": cl_ord_id}})
        try:
            response = await self._exchange(request)
        except (_ConnectionLost, _TimedOut) as failed:
            detail = f"placed (a retry was a duplicate clOrdID), but looking up {cl_ord_id}"
            raise _failed(request, type(failed)(failed.sent, f"{detail}: {failed}"), 1) from None
        self._limits.observe(response.headers, trio.current_time())
        if response.status != 200:
            return None
        rows = _decode(response, request)
        return rows[-1] if isinstance(rows, list) and rows else None

    async def aclose(self) -> None:
        """Close the connection (``open_bitmex_rest`` does on exit)."""
        await self._discard()

    async def _connect_first(self) -> None:
        async with self._lock:
            with trio.move_on_after(self._timeout):
                await self._connection()
                return
            if self._connect is None and is_closed_exchange(self.base_url):
                raise ExchangeClosedError(f"{CLOSED_NOTICE} (no connection in {self._timeout} s)")
            raise ConnectionTimeout(f"could not connect within {self._timeout} s")


class _TimedOut(Exception):  # internal: _call makes it a retry or a ConnectionTimeout
    """An attempt got no answer within ``timeout`` (``sent``: the request may have arrived)."""

    def __init__(self, sent: bool, detail: str) -> None:
        super().__init__(detail)
        self.sent = sent


def _failed(
    request: Request, failed: _ConnectionLost | _TimedOut, attempts: int, uncertain: bool = False
) -> ConnectionClosed | ConnectionTimeout:
    """The error for a failed attempt not sent again: ``ConnectionTimeout`` or
    ``ConnectionClosed``, saying whether the request may have been executed."""
    text = f"{request.method} {request.target.split('?', 1)[0]}: {failed}"
    if attempts > 1:
        text += f" ({attempts} attempts)"
    if uncertain and request.method != "GET":
        text += "; not sent again, since it may have been executed (check before repeating it)"
    if isinstance(failed, _TimedOut):
        return ConnectionTimeout(text)
    return ConnectionClosed(CloseReason(1006, text))


def _decode(response: HttpResponse, request: Request) -> Any:
    try:
        return orjson.loads(response.body)
    except orjson.JSONDecodeError as exc:
        raise RemoteProtocolError(
            f"{request.method} {request.path}: the answer is not JSON", response.body
        ) from exc


def _retry_after(response: HttpResponse) -> float:
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER
    return seconds if math.isfinite(seconds) and seconds >= 0 else DEFAULT_RETRY_AFTER


def _api_error(response: HttpResponse, request: Request) -> BitMEXAPIError:
    status = response.status
    message, name = f"HTTP {status}", None
    try:
        error = orjson.loads(response.body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
        text = response.body[:200].decode("utf-8", "replace").strip()
        if text:
            message = text
    if isinstance(error, Mapping):
        message = str(error.get("message") or message)
        name = str(error["name"]) if error.get("name") is not None else None
    elif isinstance(error, str):
        message = error
    described = request.describe()
    if status == 429:
        return RateLimited(
            status, message, retry_after=_retry_after(response), request=described, name=name
        )
    if status == 503:
        return Overloaded(status, message, request=described, name=name)
    if status == 401:
        return AuthenticationError(status, message, request=described, name=name)
    return BitMEXAPIError(status, message, request=described, name=name)


def _is_duplicate_cl_ord_id(error: BitMEXAPIError, request: Request) -> bool:
    return (
        (request.method, request.path) == ("POST", "/order")
        and error.status == 400
        and "Duplicate clOrdID" in error.message
    )


def _row(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    if isinstance(result, list) and len(result) == 1 and isinstance(result[0], dict):
        return result[0]
    raise RemoteProtocolError("expected one row", orjson.dumps(result))


def _rows(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, list):
        return result
    raise RemoteProtocolError("expected a list of rows", orjson.dumps(result))


@asynccontextmanager
async def open_bitmex_rest(
    network: str,
    api_key: str | None = None,
    api_secret: str | None = None,
    *,
    connect: StreamFactory | None = None,
    timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    clock: Callable[[], float] = time.time,
    expiry: float = DEFAULT_EXPIRY,
    retries: int = 3,
    cl_ord_id_prefix: str | None = None,
) -> AsyncIterator[BitMEXRest]:
    """A BitMEX REST client for the ``async with`` block (``"mainnet"``, ``"testnet"``, or an
    http(s) base URL such as the emulator's ``rest_url``).

    Connects before yielding (``ExchangeClosedError`` for mainnet/testnet, which closed on
    2026-09-23; ``ConnectionTimeout`` or the ``OSError`` otherwise). ``connect`` replaces the
    socket with any stream (``emulator.connect_rest_in_memory``); ``timeout`` bounds each
    attempt (connect, send, answer); ``clock`` is the wall clock (UNIX seconds) ``api-expires``
    is counted from, ``expiry`` seconds ahead; ``retries`` bounds the extra attempts of one call
    (429, safe 503s, dropped connections); ``cl_ord_id_prefix`` fixes the prefix of the
    ``clOrdID``\\ s made for orders without one (deterministic runs). TLS is verified with
    ``ssl.create_default_context()`` unless ``ssl_context`` says otherwise.
    """
    base_url = resolve_rest_network(network)
    if (api_key is None) != (api_secret is None):
        raise ValueError("pass both api_key and api_secret, or neither")
    credentials = Credentials(api_key, api_secret) if api_key and api_secret else None
    for name, value in (("timeout", timeout), ("expiry", expiry)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number of seconds")
    if retries < 0:
        raise ValueError("retries must be >= 0")
    cl_ord_ids = ClOrdIDs(cl_ord_id_prefix)
    try:
        async with trio.open_nursery() as nursery:  # the connections' reader tasks
            rest = BitMEXRest(
                base_url, credentials, nursery, connect=connect, timeout=timeout,
                ssl_context=ssl_context, clock=clock, expiry=expiry, retries=retries,
                cl_ord_ids=cl_ord_ids,
            )  # fmt: skip
            try:
                await rest._connect_first()
                yield rest
            finally:
                with trio.CancelScope(shield=True):
                    await rest.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader tasks raise nothing: what is here came from the block or from connecting,
        # and is raised as itself, as the websocket client does.
        raise _unwrap(group) from None


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
