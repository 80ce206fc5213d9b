"""A scripted HTTP/1.1 server over in-memory streams, for exact REST client assertions.

The emulator is the realistic BitMEX; this one shows a test every byte the client sent, with
the virtual time it arrived, and answers exactly as the test's ``script`` says: a response, or
one of the misbehaviours a REST client must survive (``DROP``: close the connection with the
request unanswered; ``SILENT``: never answer). ``connect`` is the client's ``connect=``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import h11
import orjson
import trio
import trio.testing

DROP: Final = "drop"
SILENT: Final = "silent"


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as it arrived: ``raw`` is every byte of it (head and body)."""

    connection: int
    at: float
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: Sequence[tuple[str, str]] = ()

    def encoded(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else orjson.dumps(self.body)


Script = Callable[[Seen], "Answer | str"]


def error(status: int, message: str, name: str = "HTTPError", **headers: str) -> Answer:
    """BitMEX's error body with ``status`` (``headers`` with ``_`` for ``-``)."""
    extra = [(key.replace("_", "-"), value) for key, value in headers.items()]
    return Answer(status, {"error": {"message": message, "name": name}}, extra)


@dataclass
class ScriptedHttpServer:
    """Serves each new connection in ``nursery`` with ``script`` (default: ``{}`` for all)."""

    nursery: trio.Nursery
    script: Script = lambda seen: Answer()
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        index = self.connections
        self.connections += 1
        self.nursery.start_soon(self._serve, server, index)
        await trio.lowlevel.checkpoint()
        return client

    async def _serve(self, stream: trio.abc.Stream, index: int) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                raw = bytearray()
                head: h11.Request | None = None
                body = bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        raw += data
                        conn.receive_data(bytes(data))
                    elif isinstance(event, h11.Request):
                        head = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
                assert head is not None
                seen = Seen(
                    index,
                    trio.current_time(),
                    head.method.decode(),
                    head.target.decode(),
                    {k.decode().lower(): v.decode() for k, v in head.headers},
                    bytes(body),
                    bytes(raw),
                )
                self.seen.append(seen)
                answer = self.script(seen)
                if answer == DROP:
                    return
                if answer == SILENT:
                    await trio.sleep_forever()
                assert isinstance(answer, Answer)
                payload = answer.encoded()
                headers = [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(payload))),
                    *answer.headers,
                ]
                out = conn.send(h11.Response(status_code=answer.status, headers=headers)) or b""
                out += conn.send(h11.Data(data=payload)) or b""
                out += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(out)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    def requests(self, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if method is None or s.method == method]
