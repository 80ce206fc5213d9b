"""Exact client-protocol behaviour against a scripted server (frames and virtual times)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, aclosing
from typing import Any

import pytest
import trio
import trio.testing

from bitmex_trio_websocket import (
    AuthenticationError,
    BitMEXError,
    BitMEXWebsocket,
    ConnectionClosed,
    ConnectionTimeout,
    DeadMansSwitchError,
    Disconnected,
    Reconnected,
    SubscriptionError,
    open_bitmex_websocket,
)

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


# --------------------------------------------------------------------------- dead man's switch
# With money at stake, a switch that stopped working must never pass silently.

DMS_REFUSAL = (403, "cancelAllAfter is disabled for this account")


def open_with_switch(
    server: ScriptedServer, **options: Any
) -> AbstractAsyncContextManager[BitMEXWebsocket]:
    """A connection to ``server`` with credentials and the dead man's switch."""
    return open_bitmex_websocket(
        URL, API_KEY, API_SECRET, dead_mans_switch=True, connect=server.connect, **options
    )


def go_deaf(server: ScriptedServer) -> None:
    """The server stops answering cancelAllAfter and pings: a dead socket, seen from the client."""
    server.ignore_commands.add("cancelAllAfter")
    server.answer_pings = False


async def test_dead_mans_switch_refused_raises(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, refuse_commands={"cancelAllAfter": DMS_REFUSAL})
            start = trio.current_time()
            with pytest.raises(BitMEXError) as info:
                async with open_bitmex_websocket(
                    URL, API_KEY, API_SECRET, dead_mans_switch=True, connect=server.connect
                ):
                    pytest.fail("opened although the switch could not be armed")
            assert type(info.value) is DeadMansSwitchError
            assert str(info.value) == "cancelAllAfter refused: 403 " + DMS_REFUSAL[1]
            assert trio.current_time() - start == 0
            assert [args for _, args in server.commands("cancelAllAfter")] == [60000]
            nursery.cancel_scope.cancel()


async def test_dead_mans_switch_refresh_refused_raises(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery)
            start = trio.current_time()
            with pytest.raises(BitMEXError) as info:
                async with open_bitmex_websocket(
                    URL, API_KEY, API_SECRET, dead_mans_switch=True, connect=server.connect
                ):
                    server.refuse_commands["cancelAllAfter"] = DMS_REFUSAL
                    await trio.sleep(100)
            assert type(info.value) is DeadMansSwitchError
            # Refused at the first refresh; no reconnect papers over it.
            assert trio.current_time() - start == 15
            assert len(server.connections) == 1
            nursery.cancel_scope.cancel()


async def test_dead_mans_switch_never_acknowledged_raises(autojump_clock: trio.abc.Clock) -> None:
    # BitMEX answers the ping sent after the command, so it heard it and did not arm.
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, ignore_commands={"cancelAllAfter"})
            start = trio.current_time()
            with pytest.raises(BitMEXError) as info:
                async with open_with_switch(server, timeout=7):
                    pytest.fail("opened although the switch was never armed")
            assert type(info.value) is DeadMansSwitchError
            assert str(info.value) == (
                "cancelAllAfter was not acknowledged within 7 s "
                "although BitMEX answered a later ping"
            )
            assert trio.current_time() - start == 7
            assert len(server.connections) == 1
            nursery.cancel_scope.cancel()


async def test_dead_mans_switch_refresh_never_acknowledged_raises(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery)
            start = trio.current_time()
            with pytest.raises(BitMEXError) as info:
                async with open_with_switch(server, timeout=7):
                    server.ignore_commands.add("cancelAllAfter")
                    await trio.sleep(100)
            assert type(info.value) is DeadMansSwitchError
            assert "not acknowledged within 7 s" in str(info.value)
            # The first refresh (15 s) plus the reply timeout; no reconnect papers over it.
            assert trio.current_time() - start == 15 + 7
            assert len(server.connections) == 1
            nursery.cancel_scope.cancel()


async def test_dead_mans_switch_on_a_dead_socket_raises_a_timeout_before_the_first_session(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Neither the command nor the pings are answered: the socket is the suspect, and before the
    # first session is up that is the caller's to see, as a missing welcome would be.
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, ignore_commands={"cancelAllAfter"}, answer_pings=False)
            start = trio.current_time()
            with pytest.raises(ConnectionTimeout) as info:
                async with open_with_switch(server, timeout=7):
                    pytest.fail("opened although the switch was never armed")
            assert str(info.value) == "BitMEX stopped answering: no answer to a ping for 5 s"
            # Ping at 5 s (heartbeat_interval), unanswered 5 s later (heartbeat_timeout).
            assert trio.current_time() - start == 10
            assert [round(at - start, 6) for at, _ in server.commands("ping")] == [5.0]
            assert isinstance(info.value, BitMEXError)
            assert len(server.connections) == 1
            nursery.cancel_scope.cancel()


async def test_dead_mans_switch_on_a_dead_socket_reconnects_and_rearms(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Neither the refresh nor the pings answered: the socket, not the switch, is the suspect. The
    # switch keeps running on the server; a new socket re-arms it well within its 60 s.
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, partials={"instrument:XBTUSD": INSTRUMENT})
            start = trio.current_time()
            async with open_with_switch(server, timeout=7, backoff_max=1) as bws:
                async with aclosing(bws.events("instrument", "XBTUSD")) as events:
                    await events.__anext__()  # the partial
                    await trio.sleep(13 - (trio.current_time() - start))
                    go_deaf(server)
                    lost = await events.__anext__()
                    assert lost == Disconnected(1006, "heartbeat timeout")
                    # Pings answered at 5 and 10; the one at 15 is not: dead at 20, although
                    # the refresh sent at 15 is still within its own 7 s.
                    assert trio.current_time() - start == 20
                    server.ignore_commands.clear()
                    server.answer_pings = True
                    assert isinstance(await events.__anext__(), Reconnected)
                armed = [at - start for at, args in server.commands("cancelAllAfter")]
                assert armed[:2] == [0, 15] and len(armed) == 3 and armed[2] <= 20 + 1
                assert len(server.connections) == 2
            nursery.cancel_scope.cancel()


async def test_dead_mans_switch_on_a_dead_socket_without_reconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, partials={"instrument:XBTUSD": INSTRUMENT})
            start = trio.current_time()
            async with open_with_switch(server, timeout=7, reconnect=False) as bws:
                await trio.sleep(13)
                go_deaf(server)
                with pytest.raises(ConnectionClosed) as info:
                    async with aclosing(bws.listen("instrument", "XBTUSD")) as rows:
                        async for _ in rows:
                            pass
                assert trio.current_time() - start == 20
                reason = info.value.reason
                assert reason is not None and reason.code == 1006
                assert reason.reason == "heartbeat timeout"
                assert isinstance(info.value, BitMEXError)
            nursery.cancel_scope.cancel()
