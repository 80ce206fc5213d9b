"""Exact client-protocol behaviour against a scripted server (frames and virtual times)."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from bitmex_trio_websocket._client import open_bitmex_websocket
from bitmex_trio_websocket._exceptions import AuthenticationError, SubscriptionError

from ..support.scripted_server import API_KEY, API_SECRET, ScriptedServer

URL = "ws://bitmex.test/realtime"
INSTRUMENT = [{"symbol": "XBTUSD", "lastPrice": 100.0}]


async def test_two_listeners_share_one_subscription(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, partials={"instrument:XBTUSD": INSTRUMENT})
            async with open_bitmex_websocket(URL, connect=server.connect) as bws:
                async with aclosing(bws.listen("instrument", "XBTUSD")) as first:
                    assert await first.__anext__() == INSTRUMENT[0]
                    async with aclosing(bws.listen("instrument", "XBTUSD")) as second:
                        # Late joiner: current state first, no second subscribe.
                        assert await second.__anext__() == INSTRUMENT[0]
                await trio.sleep(1)
                assert [args for _, args in server.commands("subscribe")] == [["instrument:XBTUSD"]]
                assert [args for _, args in server.commands("unsubscribe")] == [
                    ["instrument:XBTUSD"]
                ]
            nursery.cancel_scope.cancel()


async def test_refused_subscription_fails_only_that_listener(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(
                nursery,
                partials={"instrument:XBTUSD": INSTRUMENT},
                refuse={"tradeBin5dm": (400, "Unknown table: tradeBin5dm")},
            )
            async with open_bitmex_websocket(URL, connect=server.connect) as bws:
                with pytest.raises(SubscriptionError) as info:
                    async with aclosing(bws.listen("tradeBin5dm")) as bad:
                        async for _ in bad:
                            pass
                assert (info.value.status, info.value.message) == (
                    400,
                    "Unknown table: tradeBin5dm",
                )
                async with aclosing(bws.listen("instrument", "XBTUSD")) as good:
                    assert await good.__anext__() == INSTRUMENT[0]
            nursery.cancel_scope.cancel()


async def test_dead_mans_switch_schedule_and_disarm(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery)
            start = trio.current_time()
            async with open_bitmex_websocket(
                URL, API_KEY, API_SECRET, dead_mans_switch=True, connect=server.connect
            ):
                await trio.sleep(31)
            sent = server.commands("cancelAllAfter")
            assert [(round(at - start, 6), args) for at, args in sent] == [
                (0.0, 60000),
                (15.0, 60000),
                (30.0, 60000),
                (31.0, 0),
            ]
            auth = server.commands("authKeyExpires")
            assert len(auth) == 1 and auth[0][0] - start == 0
            nursery.cancel_scope.cancel()


async def test_wrong_credentials_raise_authentication_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery)
            with pytest.raises(AuthenticationError) as info:
                async with open_bitmex_websocket(URL, API_KEY, "wrong", connect=server.connect):
                    pass
            assert info.value.status == 401
            assert "wrong" not in repr(info.value)
            nursery.cancel_scope.cancel()


async def test_heartbeat_pings_after_silence_and_detects_death(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, answer_pings=False)
            start = trio.current_time()
            async with open_bitmex_websocket(URL, connect=server.connect, reconnect=False) as bws:
                with pytest.raises(ConnectionClosed):
                    async with aclosing(bws.listen("instrument", "XBTUSD")) as rows:
                        async for _ in rows:
                            pass
                died_at = trio.current_time() - start
            pings = [round(at - start, 6) for at, _ in server.commands("ping")]
            # The partial arrived at t=0: ping at 5 s of silence, dead 5 s later.
            assert pings == [5.0]
            assert died_at == pytest.approx(10.0)
            nursery.cancel_scope.cancel()
