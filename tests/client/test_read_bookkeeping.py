"""The liveness rules hear of a read before anything in it that depends on the read.

A pong's round trip and drain (rule 4 of ``_liveness``) are measured against the read that
carried it, and a wait for a full listener excuses time from a read already counted: so the
session's reader tells ``Liveness`` of each read before it handles a reply in it or waits for a
listener, whichever path (fast or general) its frames take. A spy ``Liveness`` records the calls
in order.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from bitmex_trio_websocket import Change, _session, open_bitmex_websocket
from bitmex_trio_websocket._liveness import Liveness
from bitmex_trio_websocket._websocket._frames import OP_TEXT, encode_frame
from tests.support.scripted_server import ScriptedServer

from .test_read_path import OneFrameReads

URL = "wss://example.invalid/realtime"
TIMEOUT = 10


class SpyLiveness(Liveness):
    """``Liveness``, recording reads (with their frame count), pongs and waits in order."""

    __slots__ = ("calls",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, int]] = []

    def data_received(self, now: float, nbytes: int, frames: int) -> bool:
        self.calls.append(("read", frames))
        return super().data_received(now, nbytes, frames)

    def pong_received(self, now: float) -> float | None:
        self.calls.append(("pong", 0))
        return super().pong_received(now)

    def blocked(self, now: float) -> None:
        self.calls.append(("blocked", 0))
        super().blocked(now)


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> list[SpyLiveness]:
    made: list[SpyLiveness] = []

    def make(*args: Any, **kwargs: Any) -> SpyLiveness:
        made.append(SpyLiveness(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(_session, "Liveness", make)
    return made


def trade(size: int) -> dict[str, Any]:
    row = {"symbol": "XBTUSD", "size": size, "price": 1.0}
    return {"table": "trade", "action": "insert", "data": [row]}


def frame(text: bytes) -> bytes:
    return encode_frame(OP_TEXT, text, None)


async def test_a_pong_is_handled_after_its_read_is_counted(
    autojump_clock: trio.abc.Clock, spies: list[SpyLiveness]
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, keys={"trade": []})
            streams: list[OneFrameReads] = []

            async def connect() -> trio.abc.Stream:
                streams.append(OneFrameReads(await server.connect()))
                return streams[-1]

            async with open_bitmex_websocket(URL, connect=connect) as bws:
                async with aclosing(bws.events("trade")) as events:
                    assert isinstance(await events.__anext__(), Change)  # the empty partial
                    await trio.testing.wait_all_tasks_blocked()
                    (stream,) = streams
                    (spy,) = spies
                    # One read: a trade, then a pong (the fast path, then the general one).
                    stream.queue([frame(orjson.dumps(trade(1))) + frame(b"pong")])
                    start = len(spy.calls)
                    await server.push(trade(0))
                    for size in (0, 1):
                        item = await events.__anext__()
                        assert isinstance(item, Change)
                        assert item.rows[0]["size"] == size
                    await trio.testing.wait_all_tasks_blocked()
                    assert spy.calls[start:] == [("read", 1), ("read", 2), ("pong", 0)]
            nursery.cancel_scope.cancel()


async def test_a_wait_for_a_full_listener_comes_after_its_read_is_counted(
    autojump_clock: trio.abc.Clock, spies: list[SpyLiveness]
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, keys={"trade": []})
            async with open_bitmex_websocket(URL, connect=server.connect) as bws:
                async with aclosing(bws.events("trade", buffer=0)) as events:
                    assert isinstance(await events.__anext__(), Change)  # the empty partial
                    await trio.testing.wait_all_tasks_blocked()
                    (spy,) = spies
                    start = len(spy.calls)
                    await server.push(trade(0))
                    await trio.testing.wait_all_tasks_blocked()
                    # Nobody takes the change: the reader waits for this listener.
                    assert spy.calls[start:] == [("read", 1), ("blocked", 0)]
                    item = await events.__anext__()
                    assert isinstance(item, Change)
                    assert item.rows[0]["size"] == 0
            nursery.cancel_scope.cancel()
