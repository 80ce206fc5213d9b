"""A deliberately tiny BitMEX stand-in for exact client-protocol assertions.

The emulator is the realistic server; this one exists so client tests can see every frame the
client sent, with the virtual time it arrived, and script replies precisely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
import trio.testing
import trio_websocket

from bitmex_trio_websocket import _protocol as proto
from bitmex_trio_websocket._auth import realtime_signature

API_KEY = "test-key"
API_SECRET = "test-secret-never-logged"


@dataclass
class ScriptedServer:
    """Answers like BitMEX: welcome, acks + partials, auth, cancelAllAfter, ping."""

    nursery: trio.Nursery
    partials: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)
    answer_pings: bool = True
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


def l2_row(id_: int, side: str, size: int, price: float, symbol: str = "XBTUSD") -> dict[str, Any]:
    return {"symbol": symbol, "id": id_, "side": side, "size": size, "price": price}
