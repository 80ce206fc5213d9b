"""One keep-alive HTTP/1.1 connection over a trio stream, with h11 (BitMEX's advice: reuse it).

Theory of operation: ``HttpConnection`` sends one request at a time (BitMEX's load balancers
did not promise pipelining) and reads its whole response with an h11 client state machine. A
reader task owns the stream's receiving side for the connection's whole life, so a server that
closes an idle keep-alive connection (BitMEX's load balancers did after 90 s; the emulator's
``drop_rest_connections`` fault does at once) is noticed while idle: ``usable`` turns false and
the client opens a new connection *before* sending, instead of learning it from a request that
vanished. Bytes arriving while no request waits are a protocol breach and end the connection.

Failures are sorted by what they mean for the request:

* ``_ConnectionLost``: the transport ended before a complete response. ``sent`` tells whether
  any of the request may have reached the server (then its fate is unknown); the caller decides
  whether sending it again is safe.
* ``h11`` protocol errors become ``RemoteProtocolError`` and end the connection.

Timeouts are the caller's (a cancel scope around ``request``); a cancelled request leaves the
connection unusable, since its response may still arrive. ``open_stream`` opens TCP, or TLS
verified with ``ssl.create_default_context()`` (certificate and host name) for https.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import h11
import trio

from .._exceptions import RemoteProtocolError
from .._tls import open_tls_stream

__all__ = ["HttpConnection", "HttpResponse", "open_stream"]

RECEIVE_BYTES: Final = 64 * 1024
MAX_HEAD: Final = 64 * 1024
USER_AGENT: Final = b"bitmex-trio-websocket"


class _ConnectionLost(Exception):  # internal: the client makes it a retry or an error
    """The transport ended before a whole response (``sent``: the request may have arrived)."""

    def __init__(self, sent: bool, detail: str) -> None:
        super().__init__(detail)
        self.sent = sent


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


async def open_stream(
    scheme: str, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> trio.abc.Stream:
    """TCP for http, verified TLS for https (handshake done here, so a bad certificate fails
    now, as ``ssl.SSLCertVerificationError``, not in the first request)."""
    if scheme == "http":
        return await trio.open_tcp_stream(host, port)
    return await open_tls_stream(host, port, ssl_context)


class HttpConnection:
    """See the module docstring. Start ``run_reader`` in a nursery before the first request."""

    def __init__(self, stream: trio.abc.Stream, authority: str) -> None:
        self._stream = stream
        self._host = authority.encode("idna") if not authority.isascii() else authority.encode()
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        send, receive = trio.open_memory_channel[bytes](64)
        self._incoming_send = send
        self._incoming = receive
        self._eof = False
        self._waiting = False
        self._broken = False
        self._reader_scope = trio.CancelScope()
        self.requests = 0

    @property
    def usable(self) -> bool:
        """Whether a request may be sent on this connection now."""
        return not (self._eof or self._broken) and self._conn.our_state is h11.IDLE

    async def run_reader(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Receive until the server closes (or the connection is closed)."""
        task_status.started()
        with self._reader_scope:
            try:
                while True:
                    try:
                        data = await self._stream.receive_some(RECEIVE_BYTES)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                    if not data:
                        self._eof = True
                        break
                    if not self._waiting:
                        self._broken = True  # unsolicited bytes: the framing is lost
                        break
                    await self._incoming_send.send(bytes(data))
            finally:
                self._eof = True
                self._incoming_send.close()

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> HttpResponse:
        """Send one request and read its whole response."""
        if not self.usable:
            raise _ConnectionLost(False, "the connection was closed before the request")
        all_headers = [
            (b"Host", self._host),
            (b"User-Agent", USER_AGENT),
            (b"Accept", b"application/json"),
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers),
        ]
        if body or method in ("POST", "PUT", "DELETE"):
            all_headers.append((b"Content-Length", str(len(body)).encode()))
        conn = self._conn
        data = conn.send(h11.Request(method=method, target=target, headers=all_headers)) or b""
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        self.requests += 1
        self._waiting = True
        try:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._broken = True
                raise _ConnectionLost(True, f"sending failed: {exc!r}") from exc
            return await self._read_response()
        except BaseException:
            self._broken = True  # cancelled or failed mid-exchange: never reuse
            raise
        finally:
            self._waiting = False

    async def _read_response(self) -> HttpResponse:
        conn = self._conn
        status = 0
        headers: dict[str, str] = {}
        body = bytearray()
        ended = False
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if ended:  # a body cut short by the close
                    raise _ConnectionLost(True, "the connection closed mid-response") from exc
                raise RemoteProtocolError(f"malformed HTTP response: {exc}") from exc
            if event is h11.NEED_DATA:
                try:
                    chunk = await self._incoming.receive()
                except trio.EndOfChannel:
                    chunk = b""
                if not chunk:
                    if status == 0:
                        raise _ConnectionLost(True, "the connection closed before an answer")
                    ended = True  # h11 decides: the end of a close-delimited body, or cut short
                conn.receive_data(chunk)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {
                    name.decode("latin-1").lower(): value.decode("latin-1")
                    for name, value in event.headers
                }
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise _ConnectionLost(True, "the server closed the connection mid-response")
            # h11.InformationalResponse (100 Continue): nothing to do
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            self._broken = True  # Connection: close, or HTTP/1.0: a new connection next time
        return HttpResponse(status, headers, bytes(body))

    async def aclose(self) -> None:
        self._broken = True
        self._reader_scope.cancel()
        await trio.aclose_forcefully(self._stream)
