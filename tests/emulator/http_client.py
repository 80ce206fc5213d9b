"""A minimal HTTP/1.1 client over any trio stream (h11), for the emulator's REST tests.

It sends one request at a time on one keep-alive connection and reads whole responses; tests
that need pipelining or malformed bytes write to the stream themselves and read responses with
``read_response``. BitMEX's signature (``sign``) is computed here from the published recipe, not
with the library's own helper, so a mistake in one cannot hide a mistake in the other.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import h11
import orjson
import trio


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def sign(secret: str, verb: str, target: str, expires: int, body: bytes) -> str:
    """BitMEX's api-signature: hex HMAC-SHA256(secret, verb + path-with-query + expires + body)."""
    message = verb.encode() + target.encode() + str(expires).encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def auth_headers(
    key: str, secret: str, verb: str, target: str, body: bytes, expires: int
) -> list[tuple[str, str]]:
    return [
        ("api-expires", str(expires)),
        ("api-key", key),
        ("api-signature", sign(secret, verb, target, expires, body)),
    ]


class HttpClient:
    """One keep-alive connection; ``closed`` once the server ended it."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.closed = False

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        json: Any = None,
    ) -> Reply:
        if json is not None:
            body = orjson.dumps(json)
        hdrs = [("Host", "emulator"), *(headers or [])]
        if json is not None:
            hdrs.append(("Content-Type", "application/json"))
        if body or method in ("POST", "PUT", "DELETE"):
            hdrs.append(("Content-Length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        data = (data or b"") + (self.conn.send(h11.Data(data=body)) or b"") if body else data
        data = (data or b"") + (self.conn.send(h11.EndOfMessage()) or b"")
        await self.stream.send_all(data)
        reply = await read_response(self.stream, self.conn)
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        else:
            self.closed = True
        return reply


async def read_response(stream: trio.abc.Stream, conn: h11.Connection | None = None) -> Reply:
    """The next whole response on ``stream`` (``conn``: the client state, else a fresh one)."""
    if conn is None:
        conn = h11.Connection(h11.CLIENT)
        # A fresh client state must have "sent" a request to accept a response.
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
    status = 0
    headers: dict[str, str] = {}
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return Reply(status, headers, bytes(body))
        elif isinstance(event, h11.InformationalResponse):
            continue
        else:
            raise AssertionError(f"unexpected {event!r}")


async def read_to_eof(stream: trio.abc.Stream) -> bytes:
    """Everything the server still sends, until it closes."""
    out = bytearray()
    while data := await stream.receive_some(65536):
        out += data
    return bytes(out)
