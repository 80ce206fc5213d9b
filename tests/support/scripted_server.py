"""The BitMEX stand-in for exact client-protocol assertions: scripted, and raw.

The emulator is the realistic server; this one exists so client tests can see every frame the
client sent, with the virtual time it arrived, and script replies precisely:

* ``ScriptedServer`` answers like BitMEX (welcome, acks and partials, auth, cancelAllAfter, ping)
  over in-memory streams. Fields script the deviations: topics to refuse, commands to refuse
  (``refuse_commands``) or never answer (``ignore_commands``), pongs withheld, and
  ``lockstep=True`` for streams where a send waits until the peer has read it (TCP with tiny
  buffers, so a slow client pushes the server back). Subclasses override ``_answer`` for scripts
  that need more.
* ``RawServer`` speaks just enough websocket (a wsproto handshake, then hand-made frames) to
  misbehave below the level a websocket library allows: frames that never finish, frames over
  any limit, close frames never answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
import trio.testing
import trio_websocket
import wsproto
import wsproto.events

from bitmex_trio_websocket import _protocol as proto
from bitmex_trio_websocket._auth import realtime_signature

API_KEY = "test-key"
API_SECRET = "test-secret-never-logged"


@dataclass
class ScriptedServer:
    """Answers like BitMEX: welcome, acks + partials, auth, cancelAllAfter, ping."""

    nursery: trio.Nursery
    partials: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)  # topic -> status, error
    keys: dict[str, list[str]] = field(default_factory=dict)
    answer_pings: bool = True
    refuse_commands: dict[str, tuple[int, str]] = field(default_factory=dict)  # op -> refusal
    ignore_commands: set[str] = field(default_factory=set)  # ops never answered
    lockstep: bool = False
    received: list[tuple[float, str]] = field(default_factory=list)
    connections: list[trio_websocket.WebSocketConnection] = field(default_factory=list)
    on_command: Callable[[proto.ClientCommand], None] | None = None

    def commands(self, op: str) -> list[tuple[float, Any]]:
        out = []
        for at, frame in self.received:
            if frame == "ping":
                if op == "ping":
                    out.append((at, None))
                continue
            decoded = orjson.loads(frame)
            if decoded.get("op") == op:
                out.append((at, decoded.get("args")))
        return out

    async def connect(self) -> trio.abc.Stream:
        client: trio.abc.Stream
        server: trio.abc.Stream
        if self.lockstep:
            client, server = trio.testing.lockstep_stream_pair()
        else:
            client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._serve, server)
        return client

    async def _serve(self, stream: trio.abc.Stream) -> None:
        request = await trio_websocket.wrap_server_stream(self.nursery, stream)
        ws = await request.accept()
        self.connections.append(ws)
        await ws.send_message(proto.encode_welcome("2025-01-01T00:00:00.000Z", limit_remaining=719))
        try:
            while True:
                frame = await ws.get_message()
                assert isinstance(frame, str)
                self.received.append((trio.current_time(), frame))
                await self._answer(ws, proto.decode_client_frame(frame))
        except trio_websocket.ConnectionClosed:
            pass

    async def push(self, message: dict[str, Any], connection: int = -1) -> None:
        await self.connections[connection].send_message(orjson.dumps(message).decode())

    async def _answer(
        self, ws: trio_websocket.WebSocketConnection, cmd: proto.ClientCommand
    ) -> None:
        if self.on_command is not None:
            self.on_command(cmd)
        request = getattr(cmd, "request", None)
        op = "ping" if isinstance(cmd, proto.Ping) else _op_of(request)
        if op in self.ignore_commands:
            return
        if op in self.refuse_commands:
            status, error = self.refuse_commands[op]
            await ws.send_message(proto.encode_error(status, error, request=request))
            return
        if isinstance(cmd, proto.Ping):
            if self.answer_pings:
                await ws.send_message(proto.PONG)
        elif isinstance(cmd, proto.Subscribe):
            for topic in cmd.topics:
                if topic in self.refuse:
                    status, error = self.refuse[topic]
                    await ws.send_message(proto.encode_error(status, error, request=cmd.request))
                    continue
                await ws.send_message(proto.encode_subscribe_ack(topic, cmd.request))
                table, symbol = proto.parse_topic(topic)
                rows = self.partials.get(topic, [])
                await ws.send_message(
                    proto.encode_table(
                        table,
                        "partial",
                        rows,
                        keys=self.keys.get(table, ["symbol"]),
                        filter={"symbol": symbol} if symbol else {},
                    )
                )
        elif isinstance(cmd, proto.Unsubscribe):
            for topic in cmd.topics:
                await ws.send_message(proto.encode_unsubscribe_ack(topic, cmd.request))
        elif isinstance(cmd, proto.AuthKeyExpires):
            if cmd.api_key == API_KEY and cmd.signature == realtime_signature(
                API_SECRET, cmd.expires
            ):
                await ws.send_message(proto.encode_auth_ack(cmd.request))
            else:
                await ws.send_message(
                    proto.encode_error(401, "Signature not valid.", request=cmd.request)
                )
        elif isinstance(cmd, proto.CancelAllAfter):
            cancel_time: str | int = 0 if cmd.timeout_ms == 0 else "2025-01-01T00:01:00.000Z"
            await ws.send_message(
                proto.encode_cancel_all_after_ack(
                    "2025-01-01T00:00:00.000Z", cancel_time, cmd.request
                )
            )


def _op_of(request: Any) -> str | None:
    op = request.get("op") if isinstance(request, dict) else None
    return op if isinstance(op, str) else None


def l2_row(id_: int, side: str, size: int, price: float, symbol: str = "XBTUSD") -> dict[str, Any]:
    return {"symbol": symbol, "id": id_, "side": side, "size": size, "price": price}


# --------------------------------------------------------------------------- raw websocket


class RawConnection:
    """The server end of one raw websocket: frames are written byte by byte as we like."""

    def __init__(
        self, stream: trio.abc.Stream, ws: wsproto.WSConnection, answer_close: bool
    ) -> None:
        self.stream = stream
        self.ws = ws
        self.answer_close = answer_close
        self.lock = trio.Lock()
        self.unsent_payload = 0  # of a frame started by send_header
        self.received: list[str] = []  # text messages from the client, for assertions

    async def send(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)

    async def send_text(self, text: str) -> None:
        await self.send(self.ws.send(wsproto.events.TextMessage(data=text)))

    async def send_header(self, length: int, opcode: int = 0x1) -> None:
        """Start one unmasked, final frame of ``length`` payload bytes (``send_payload``)."""
        if length < 126:
            head = bytes([0x80 | opcode, length])
        elif length < 1 << 16:
            head = bytes([0x80 | opcode, 126]) + length.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 127]) + length.to_bytes(8, "big")
        await self.send(head)
        self.unsent_payload = length

    async def send_payload(self, chunk: bytes) -> None:
        await self.send(chunk)
        self.unsent_payload -= len(chunk)

    async def read_forever(self) -> None:
        """Keep reading (client sends never block), remembering the text messages."""
        try:
            while data := await self.stream.receive_some():
                self.ws.receive_data(bytes(data))
                for event in self.ws.events():
                    if isinstance(event, wsproto.events.TextMessage):
                        self.received.append(event.data)
                    elif isinstance(event, wsproto.events.CloseConnection) and self.answer_close:
                        if not self.lock.locked() and not self.unsent_payload:  # between frames
                            await self.send(self.ws.send(event.response()))
                        await trio.aclose_forcefully(self.stream)
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


Script = Callable[[RawConnection, int], Awaitable[None]]


class RawServer:
    """Accepts websocket upgrades (wsproto) over lockstep streams, then runs
    ``script(connection, index)`` (``index`` counts connections from 0).

    ``answer_close=False`` makes a black hole: close frames are read and never answered."""

    def __init__(self, nursery: trio.Nursery, script: Script, *, answer_close: bool = True) -> None:
        self.nursery = nursery
        self.script = script
        self.answer_close = answer_close
        self.accepted = 0

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.lockstep_stream_pair()
        self.nursery.start_soon(self._serve, server, self.accepted)
        self.accepted += 1
        return client

    async def _serve(self, stream: trio.abc.Stream, index: int) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        gone = (trio.BrokenResourceError, trio.ClosedResourceError)
        try:
            with contextlib.suppress(*gone):
                while True:
                    ws.receive_data(bytes(await stream.receive_some()))
                    if any(isinstance(e, wsproto.events.Request) for e in ws.events()):
                        break
                await stream.send_all(ws.send(wsproto.events.AcceptConnection()))
            connection = RawConnection(stream, ws, self.answer_close)
            async with trio.open_nursery() as nursery:

                async def reader() -> None:
                    await connection.read_forever()
                    nursery.cancel_scope.cancel()  # the client went away

                nursery.start_soon(reader)
                with contextlib.suppress(*gone):
                    await self.script(connection, index)
                    await trio.sleep_forever()
        finally:
            await trio.aclose_forcefully(stream)
