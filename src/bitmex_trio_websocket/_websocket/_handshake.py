"""Sans-IO opening handshake for the client role (RFC 6455 section 4): the HTTP/1.1 upgrade.

Theory of operation
-------------------
``ClientHandshake(host, target, nonce)`` holds the upgrade request (``request_bytes()``); the
caller writes it, then feeds every byte it reads to ``receive_data`` until an outcome:

* ``Accepted(trailing)``: a valid ``101 Switching Protocols``. ``trailing`` holds the bytes read
  past the response: frames the server sent at once, for the ``FrameReader``.
* ``Rejected(status_code, headers, body)``: any other final response. The body is read (up to
  ``MAX_REJECTION_BODY``) because BitMEX explains a refusal there, and its ``Retry-After`` header
  says when to come back.

HTTP is parsed by h11, the parser wsproto itself uses; interim 1xx responses are skipped. A 101
is valid only with ``Upgrade: websocket``, a ``Connection`` header naming ``Upgrade``, the
``Sec-WebSocket-Accept`` token derived from our key (``accept_token``), and no extension or
subprotocol (none is offered, so a compressed frame would be garbage). Anything else, or a
response that is not HTTP, raises ``FramingError(1002, reason)``. The 16-byte nonce comes from
the caller: no randomness, no I/O, no clock here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import h11

from ._frames import FramingError

__all__ = ["MAX_REJECTION_BODY", "Accepted", "ClientHandshake", "Rejected", "accept_token"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A rejection's body is only read for its error text (BitMEX's is a short JSON object).
MAX_REJECTION_BODY = 64 * 1024


def accept_token(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value a server derives from our ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


@dataclass(frozen=True, slots=True)
class Accepted:
    """The upgrade succeeded; ``trailing`` is what the server sent after its response."""

    trailing: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """The server answered the upgrade with an HTTP response other than 101."""

    status_code: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


class ClientHandshake:
    """The opening handshake; ``nonce`` is 16 random bytes from the caller."""

    def __init__(self, host: str, target: str, nonce: bytes) -> None:
        key = base64.b64encode(nonce)
        self._expected_accept = accept_token(key)
        self._http = h11.Connection(h11.CLIENT)
        self._rejection: tuple[int, tuple[tuple[bytes, bytes], ...]] | None = None
        self._body = bytearray()
        request = self._http.send(
            h11.Request(
                method="GET",
                target=target,
                headers=[
                    (b"Host", host.encode("idna")),
                    (b"Upgrade", b"websocket"),
                    (b"Connection", b"Upgrade"),
                    (b"Sec-WebSocket-Key", key),
                    (b"Sec-WebSocket-Version", b"13"),
                ],
            )
        )
        assert request is not None  # h11 returns None only for ConnectionClosed
        self._request = request

    def request_bytes(self) -> bytes:
        return self._request

    def receive_data(self, data: bytes) -> Accepted | Rejected | None:
        """Feed bytes (``b""`` for end of stream); the outcome once known, else ``None``.

        Raises ``FramingError`` (1002) for a response that is not HTTP or not a valid upgrade.
        """
        try:
            self._http.receive_data(data)
            while True:
                event = self._http.next_event()
                if event is h11.NEED_DATA:
                    if not data:
                        raise FramingError(1002, "connection closed during the handshake")
                    return None
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        self._check_upgrade(event.headers)
                        return Accepted(bytes(self._http.trailing_data[0]))
                    continue
                if isinstance(event, h11.Response):
                    headers = tuple((bytes(k), bytes(v)) for k, v in event.headers)
                    self._rejection = (event.status_code, headers)
                elif isinstance(event, h11.Data):
                    room = MAX_REJECTION_BODY - len(self._body)
                    self._body += bytes(event.data[:room])
                    if room <= len(event.data):
                        return self._rejected()
                elif event is h11.PAUSED or isinstance(
                    event, h11.EndOfMessage | h11.ConnectionClosed
                ):
                    return self._rejected()
        except h11.RemoteProtocolError as exc:
            if self._rejection is not None:  # a rejection with a malformed body is still one
                return self._rejected()
            raise FramingError(1002, f"bad handshake response: {exc}") from None

    def _rejected(self) -> Rejected:
        assert self._rejection is not None
        status, headers = self._rejection
        return Rejected(status, headers, bytes(self._body))

    def _check_upgrade(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        seen = {bytes(name).lower(): bytes(value) for name, value in headers}
        if seen.get(b"upgrade", b"").lower() != b"websocket":
            raise FramingError(1002, "handshake response without 'Upgrade: websocket'")
        tokens = [t.strip().lower() for t in seen.get(b"connection", b"").split(b",")]
        if b"upgrade" not in tokens:
            raise FramingError(1002, "handshake response without 'Connection: Upgrade'")
        if seen.get(b"sec-websocket-accept") != self._expected_accept:
            raise FramingError(1002, "handshake response with a wrong Sec-WebSocket-Accept")
        if seen.get(b"sec-websocket-extensions") or seen.get(b"sec-websocket-protocol"):
            raise FramingError(1002, "handshake response accepts an extension never offered")
