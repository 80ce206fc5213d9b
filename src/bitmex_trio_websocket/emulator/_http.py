"""HTTP/1.1 on the emulator's port: websocket upgrades told apart from REST, keep-alive serving.

Theory of operation: BitMEX served its REST API (``/api/v1``) and its realtime websocket
(``/realtime``) on one host and port, and so does the emulator. ``read_first_head`` reads a new
connection's bytes with an h11 server until the first request head is complete and keeps every
byte it read. ``wants_websocket`` decides from that head: an ``Upgrade: websocket`` request, or
any request for a ``/realtime*`` path (which trio-websocket refuses with 400 when it is not an
upgrade, as before this module existed), goes to the websocket path; the stream is then wrapped in
``PrefixedStream``, which yields the bytes already read before reading on, so trio-websocket
parses the handshake exactly as if it had read it itself. Everything else is plain HTTP.

``HttpConnection`` serves one plain-HTTP connection with the same h11 state machine that read its
first head: one request at a time (a pipelining client's next request waits in h11's buffer until
the response before it is written, so responses go out in request order), the body read in full
(by ``Content-Length`` or chunked; ``413`` past ``max_body``; ``100 Continue`` sent when the
client waits for it), the response written with ``Content-Length``, and the connection kept open
for the next request unless either side said ``Connection: close`` (h11 keeps that bookkeeping,
HTTP/1.0 included). A connection idle between requests for ``idle_timeout`` seconds is closed
(BitMEX's load balancers kept idle keep-alive connections for 90 s); a request head or body that
stalls for that long is too. A request h11 cannot parse gets ``400`` with BitMEX's JSON error
shape and the connection closes, as h11 allows nothing else after a protocol error.

The handler is synchronous: it sees a whole ``HttpRequest`` and returns an ``HttpResponse``, with
no ``await`` in between, so what it publishes (the REST app's websocket deltas) goes out in the
order the requests were served. Paths outside ``/api/v1`` are answered here with ``404``.

``drop`` is the dropped keep-alive connection fault: the transport closes under the connection
(no response to a request in flight, no ``Connection: close``), which is what a client with a
connection pool sees when a load balancer drops an idle connection it was about to reuse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import h11
import orjson
import trio

__all__ = [
    "API_PREFIX",
    "IDLE_TIMEOUT",
    "HttpConnection",
    "HttpRequest",
    "HttpResponse",
    "PrefixedStream",
    "error_response",
    "peer_address",
    "read_first_head",
    "wants_websocket",
]

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
IDLE_TIMEOUT: Final = 90.0  # seconds an idle keep-alive connection is kept
MAX_HEAD: Final = 64 * 1024  # request line + headers (long subscribe= queries fit)
MAX_BODY: Final = 1024 * 1024
RECEIVE_BYTES: Final = 64 * 1024
SERVER_NAME: Final = b"bitmex-trio-websocket-emulator"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One whole request: ``target`` is the raw request target (path and query, as sent);
    ``client`` the peer's address (``"local"`` in memory), for per-address limits."""

    method: str
    target: str
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes
    client: str = "local"

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


def error_response(status: int, message: str, name: str = "HTTPError") -> HttpResponse:
    """A response with BitMEX's error body, ``{"error": {"message", "name"}}``."""
    body = orjson.dumps({"error": {"message": message, "name": name}})
    return HttpResponse(status, [("Content-Type", "application/json; charset=utf-8")], body)


def _lower_headers(headers: Sequence[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in headers}


def wants_websocket(target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether a request head belongs to the websocket path (see the module docstring)."""
    upgrade = _lower_headers(headers).get(b"upgrade", b"")
    if b"websocket" in [token.strip().lower() for token in upgrade.split(b",")]:
        return True
    return target.split(b"?", 1)[0].startswith(b"/realtime")


class PrefixedStream(trio.abc.Stream):
    """``transport``, with ``prefix`` (bytes already read from it) received first."""

    def __init__(self, transport: trio.abc.Stream, prefix: bytes) -> None:
        self.transport = transport
        self._prefix = prefix

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            size = len(self._prefix) if max_bytes is None else max_bytes
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            return chunk
        return await self.transport.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.transport.aclose()


async def read_first_head(
    transport: trio.abc.Stream,
) -> tuple[h11.Connection, h11.Request | None, bytes]:
    """Read until the first request head is complete: ``(h11 state, head, every byte read)``.

    The head is ``None`` when the client closed or sent something h11 cannot parse as a head
    (the state then tells which); the caller bounds the wait.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    read = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return conn, None, bytes(read)
        if isinstance(event, h11.Request):
            return conn, event, bytes(read)
        if event is h11.NEED_DATA:
            try:
                data = await transport.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            read += data
            conn.receive_data(bytes(data))
        else:  # ConnectionClosed (EOF before a head)
            return conn, None, bytes(read)


Handler = Callable[[HttpRequest], HttpResponse]


class HttpConnection:
    """One plain-HTTP keep-alive connection (see the module docstring).

    ``requests`` counts requests answered; ``idle`` is true between requests; ``dropped`` once
    ``drop`` closed it.
    """

    def __init__(
        self,
        transport: trio.abc.Stream,
        conn: h11.Connection,
        handler: Handler,
        *,
        index: int,
        idle_timeout: float = IDLE_TIMEOUT,
        max_body: int = MAX_BODY,
        client: str = "local",
    ) -> None:
        self.index = index
        self.client = client
        self.requests = 0
        self.idle = True
        self.dropped = False
        self._transport = transport
        self._conn = conn
        self._handler = handler
        self._idle_timeout = idle_timeout
        self._max_body = max_body
        self._cancel = trio.CancelScope()

    def __repr__(self) -> str:
        return f"<HttpConnection #{self.index} requests={self.requests}>"

    def drop(self) -> None:
        """Close the transport abruptly, even in the middle of a request."""
        self.dropped = True
        self._cancel.cancel()

    async def serve(self, first: h11.Request | None) -> None:
        """Serve requests until either side closes; ``first`` is the head already read."""
        with self._cancel:
            await self._serve(first)
        await trio.aclose_forcefully(self._transport)

    async def _serve(self, head: h11.Request | None) -> None:
        conn = self._conn
        while True:
            if head is None:
                if conn.their_state is h11.ERROR:
                    await self._answer_bad_request()
                    return
                with trio.move_on_after(self._idle_timeout):
                    head = await self._next_head()
                if head is None:
                    if conn.their_state is h11.ERROR:
                        await self._answer_bad_request()
                    return  # closed by the client, or idle too long
            self.idle = False
            request = await self._read_request(head)
            if request is None:
                return
            response = self._respond(request)
            self.requests += 1
            if not await self._send(response):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # Connection: close (either side), or HTTP/1.0
            conn.start_next_cycle()
            self.idle = True
            head = None

    async def _next_head(self) -> h11.Request | None:
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Request):
                return event
            if event is None or isinstance(event, h11.ConnectionClosed):
                return None

    async def _next_event(self) -> h11.Event | None:
        """The next h11 event, reading as needed; ``None`` on a protocol error or a dead peer."""
        conn = self._conn
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return None
            if event is h11.PAUSED:  # a protocol switch proposed (h2c...): declined, so done
                return None
            if event is not h11.NEED_DATA:
                assert isinstance(event, h11.Event)
                return event
            try:
                data = await self._transport.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            conn.receive_data(bytes(data))

    async def _read_request(self, head: h11.Request) -> HttpRequest | None:
        """The body of ``head`` read in full (``None``: answered with an error, or gone)."""
        conn = self._conn
        headers = _lower_headers(head.headers)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            await self._send(_too_large(self._max_body))
            return None
        if conn.they_are_waiting_for_100_continue:
            await self._send_raw(h11.InformationalResponse(status_code=100, headers=[]))
        body = bytearray()
        with trio.move_on_after(self._idle_timeout):
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > self._max_body:  # chunked, no length announced
                        await self._send(_too_large(self._max_body))
                        return None
                elif isinstance(event, h11.EndOfMessage):
                    return HttpRequest(
                        head.method.decode("ascii", "replace"),
                        head.target.decode("latin-1"),
                        list(head.headers.raw_items()),
                        bytes(body),
                        self.client,
                    )
                else:
                    if conn.their_state is h11.ERROR:
                        await self._answer_bad_request()
                    return None
        return None  # the body stalled

    def _respond(self, request: HttpRequest) -> HttpResponse:
        if request.path != API_PREFIX and not request.path.startswith(API_PREFIX + "/"):
            return error_response(404, "Not Found")
        try:
            return self._handler(request)
        except Exception:
            # A bug in the app: answer as BitMEX did on its own errors rather than take the
            # whole emulator down with one connection; the log keeps the traceback.
            log.exception("REST handler failed on %s %s", request.method, request.path)
            return error_response(500, "Internal Server Error")

    async def _answer_bad_request(self) -> None:
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            await self._send(error_response(400, "Bad Request"))

    async def _send(self, response: HttpResponse) -> bool:
        """Write a whole response; ``False`` if the client is gone."""
        headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
        ]
        headers.append((b"Content-Length", str(len(response.body)).encode()))
        headers.append((b"Server", SERVER_NAME))
        try:
            data = self._conn.send(h11.Response(status_code=response.status, headers=headers))
            data = (data or b"") + (self._conn.send(h11.Data(data=response.body)) or b"")
            data += self._conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return False
        return await self._write(data)

    async def _send_raw(self, event: h11.InformationalResponse) -> bool:
        return await self._write(self._conn.send(event) or b"")

    async def _write(self, data: bytes) -> bool:
        try:
            await self._transport.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True


def peer_address(transport: trio.abc.Stream) -> str:
    """The peer's IP address of a socket stream, ``"local"`` for anything else."""
    if isinstance(transport, trio.SocketStream):
        try:
            peer = transport.socket.getpeername()
        except OSError:
            return "unknown"
        return str(peer[0]) if isinstance(peer, tuple) else str(peer)
    return "local"


def _too_large(limit: int) -> HttpResponse:
    return error_response(413, f"Request body larger than {limit} bytes.")
