"""A test double of tardis-machine's BitMEX ``/ws-replay``, written from its documented behaviour.

What it does (``../shared/replay-sources.md``): on connect it sends nothing (no welcome, never an
ack). It reads ``{"op":"subscribe","args":[...]}`` commands; anything else is ignored (a text
``ping`` is not JSON: no ``pong``). Two seconds after the connection opened the replay starts with
the subscribes received by then: none is a close 1011 ``Error: No subscriptions received for
websocket connection``; a private or unknown table a close 1011 ``Error: Invalid
"filters[].channel" argument: ...``; a subscribe arriving later the same 1011 as none. The recorded
frames of the subscribed tables and symbols are then sent unchanged, as fast as the client reads
(``pace`` adds a pause between frames, so a replay lasts in virtual time), and the end of the data
is a close 1000 ``WS replay finished``. It pings every 30 s and cuts a connection whose pong does
not come within the next 30 s. Every connection replays the window from its start.

``cut_after`` drops the TCP connection after that many data frames (a drop mid-replay). Runs in
memory (``connect``) so trio's virtual clock drives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
import trio.testing
import trio_websocket

from bitmex_trio_websocket import _protocol as proto

WINDOW = 2.0
PING_INTERVAL = 30.0
NO_SUBSCRIPTIONS = "Error: No subscriptions received for websocket connection"
URL = "ws://tardis-machine.test:8001/ws-replay?exchange=bitmex&from=2021-07-22&to=2021-07-23"


def _reason(text: str) -> str:
    return text.encode()[:123].decode(errors="ignore")  # close reasons are cut to 123 bytes


@dataclass
class TardisMachine:
    """Serves ``frames`` (the window's recorded BitMEX texts) to every connection."""

    nursery: trio.Nursery
    frames: list[str]
    pace: float = 0.0
    cut_after: int | None = None
    connections: int = 0
    received: list[tuple[float, str]] = field(default_factory=list)
    pongs: int = 0
    sent: int = 0

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._serve, server)
        return client

    async def _serve(self, stream: trio.abc.Stream) -> None:
        request = await trio_websocket.wrap_server_stream(self.nursery, stream)
        ws = await request.accept()
        self.connections += 1
        opened = trio.current_time()
        filters: dict[str, set[str] | None] = {}
        late = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, ws, opened, filters, late)
                nursery.start_soon(self._ping, ws, stream)
                await trio.sleep_until(opened + WINDOW)
                await self._replay(ws, stream, filters, late)
                nursery.cancel_scope.cancel()
        except* (
            trio_websocket.ConnectionClosed,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ):
            pass  # the client left, or we cut the connection

    async def _read(
        self,
        ws: trio_websocket.WebSocketConnection,
        opened: float,
        filters: dict[str, set[str] | None],
        late: trio.Event,
    ) -> None:
        while True:
            frame = await ws.get_message()
            assert isinstance(frame, str)
            self.received.append((trio.current_time(), frame))
            try:
                command = orjson.loads(frame)
            except orjson.JSONDecodeError:
                continue  # e.g. "ping": logged by tardis-machine, never answered
            if not isinstance(command, dict) or command.get("op") != "subscribe":
                continue  # unsubscribe and the rest are ignored
            if trio.current_time() > opened + WINDOW:
                late.set()
                continue
            for topic in command.get("args") or []:
                table, symbol = proto.parse_topic(topic)
                if symbol is None:
                    filters[table] = None
                else:
                    symbols = filters.setdefault(table, set())
                    if symbols is not None:
                        symbols.add(symbol)

    async def _ping(self, ws: trio_websocket.WebSocketConnection, stream: trio.abc.Stream) -> None:
        while True:
            await trio.sleep(PING_INTERVAL)
            with trio.move_on_after(PING_INTERVAL):
                await ws.ping()
                self.pongs += 1
                continue
            await trio.aclose_forcefully(stream)  # no pong: cut
            return

    async def _replay(
        self,
        ws: trio_websocket.WebSocketConnection,
        stream: trio.abc.Stream,
        filters: dict[str, set[str] | None],
        late: trio.Event,
    ) -> None:
        if not filters:
            await ws.aclose(1011, _reason(NO_SUBSCRIPTIONS))
            return
        for table in filters:
            if table not in proto.PUBLIC_TABLES:
                await ws.aclose(
                    1011,
                    _reason(
                        f'Error: Invalid "filters[].channel" argument: {table}. Allowed values: '
                        + ", ".join(sorted(proto.PUBLIC_TABLES))
                    ),
                )
                return
        data = 0
        for text in self.frames:
            if late.is_set():
                await ws.aclose(1011, _reason(NO_SUBSCRIPTIONS))
                return
            if not _matches(orjson.loads(text), filters):
                continue
            if self.cut_after is not None and data >= self.cut_after:
                await trio.aclose_forcefully(stream)
                return
            await ws.send_message(text)
            data += 1
            self.sent += 1
            if self.pace:
                await trio.sleep(self.pace)
        await ws.aclose(1000, "WS replay finished")


def _matches(message: Any, filters: dict[str, set[str] | None]) -> bool:
    if not isinstance(message, dict) or message.get("table") not in filters:
        return False
    symbols = filters[message["table"]]
    if symbols is None:
        return True
    named = (message.get("filter") or {}).get("symbol")
    if named is not None:
        return named in symbols
    return any(isinstance(row, dict) and row.get("symbol") in symbols for row in message["data"])
