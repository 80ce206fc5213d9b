"""The emulator's websocket server, driven by plain trio-websocket (never our client).

Most tests use the in-memory transport under ``autojump_clock``, so timers are asserted at exact
virtual times without sleeping; a few use a real loopback socket to cover the TCP listener.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from bitmex_trio_websocket._auth import realtime_signature
from bitmex_trio_websocket._storage import Storage
from bitmex_trio_websocket.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    RANDOM_FAULT_KINDS,
    Emulator,
    FaultKind,
    open_emulator,
)
from bitmex_trio_websocket.emulator.pytest_plugin import bitmex_emulator  # noqa: F401

EPOCH = 1_735_689_600.0
DOCS = " Please see the documentation at https://www.bitmex.com/app/wsAPI."
TIMEOUT = 30  # seconds; virtual under autojump_clock


def virtual_clock() -> Callable[[], float]:
    """A wall clock that reads ``EPOCH`` now and follows trio's (virtual) clock from here."""
    origin = trio.current_time()
    return lambda: EPOCH + trio.current_time() - origin


def auth_headers(
    key: str = DEFAULT_API_KEY, secret: str = DEFAULT_API_SECRET, expires: int | None = None
) -> list[tuple[bytes, bytes]]:
    expires = expires if expires is not None else int(EPOCH) + 3600
    sig = realtime_signature(secret, expires)
    return [
        (b"api-key", key.encode()),
        (b"api-expires", str(expires).encode()),
        (b"api-signature", sig.encode()),
    ]


def auth_query(key: str = DEFAULT_API_KEY, secret: str = DEFAULT_API_SECRET) -> str:
    expires = int(EPOCH) + 3600
    return (
        f"api-expires={expires}&api-key={key}&api-signature={realtime_signature(secret, expires)}"
    )


def auth_command(
    key: str = DEFAULT_API_KEY, secret: str = DEFAULT_API_SECRET, expires: int | None = None
) -> dict[str, Any]:
    expires = expires if expires is not None else int(EPOCH) + 3600
    return {"op": "authKeyExpires", "args": [key, expires, realtime_signature(secret, expires)]}


async def recv(ws: WebSocketConnection) -> Any:
    text = await ws.get_message()
    return text if text == "pong" else orjson.loads(text)


async def send(ws: WebSocketConnection, obj: Any) -> None:
    await ws.send_message(obj if isinstance(obj, str) else orjson.dumps(obj).decode())


async def drain(ws: WebSocketConnection) -> list[Any]:
    """Everything the server queued so far: a text ``ping`` is answered after all of it."""
    await ws.send_message("ping")
    out: list[Any] = []
    while (message := await recv(ws)) != "pong":
        out.append(message)
    return out


async def recv_reply(ws: WebSocketConnection) -> Any:
    """The next frame that is not table data."""
    while True:
        message = await recv(ws)
        if not (isinstance(message, dict) and "table" in message):
            return message


@asynccontextmanager
async def emulator_and_ws(
    resource: str = "/realtime",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Emulator, WebSocketConnection]]:
    options.setdefault("listen", False)
    options.setdefault("clock", virtual_clock())
    async with open_emulator(**options) as emulator:
        async with emulator.open_memory_websocket(resource, extra_headers=headers) as ws:
            welcome = await recv(ws)
            assert welcome["info"] == "Welcome to the BitMEX Realtime API."
            yield emulator, ws


# --------------------------------------------------------------------------- handshake


async def test_welcome_shape(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, clock=virtual_clock(), rate=0, max_events=0) as emu:
            async with emu.open_memory_websocket() as ws:
                welcome = await recv(ws)
    assert welcome == {
        "info": "Welcome to the BitMEX Realtime API.",
        "version": "2.0.0",
        "timestamp": "2025-01-01T00:00:00.000Z",
        "docs": "https://www.bitmex.com/app/wsAPI",
        "heartbeatEnabled": False,
        "limit": {"remaining": 719},
        "appName": "bitmex-trio-websocket-emulator",
    }


async def test_heartbeat_query_flag_is_reflected(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, max_events=0) as emulator:
            async with emulator.open_memory_websocket("/realtime?heartbeat=true") as ws:
                assert (await recv(ws))["heartbeatEnabled"] is True


async def test_tcp_listener_on_loopback() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(max_events=0) as emulator:
            assert emulator.url.startswith("ws://127.0.0.1:")
            assert emulator.url.endswith("/realtime")
            async with open_websocket_url(emulator.url + "?subscribe=instrument:XBTUSD") as ws:
                assert (await recv(ws))["limit"] == {"remaining": 719}
                ack = await recv(ws)
                assert ack["success"] is True and ack["subscribe"] == "instrument:XBTUSD"
                partial = await recv(ws)
                assert partial["table"] == "instrument" and partial["action"] == "partial"


async def test_tcp_handshake_auth_and_rejection() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(max_events=0, clock=lambda: EPOCH) as emulator:
            async with open_websocket_url(emulator.url, extra_headers=auth_headers()) as ws:
                await recv(ws)
                connection = await emulator.wait_connection(0)
                assert connection.account == DEFAULT_ACCOUNT
            # A raw upgrade request: trio-websocket's client leaks its socket on rejection.
            assert emulator.port is not None
            headers = "".join(
                f"{k.decode()}: {v.decode()}\r\n" for k, v in auth_headers(secret="nope")
            )
            request = (
                "GET /realtime HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
            )
            async with await trio.open_tcp_stream("127.0.0.1", emulator.port) as stream:
                await stream.send_all(request.encode())
                response = b""
                while chunk := await stream.receive_some():
                    response += chunk
    assert response.startswith(b"HTTP/1.1 401 ")
    assert response.endswith(b'\r\n\r\n{"error":"Signature not valid."}')


async def test_listen_false_has_no_url(autojump_clock: trio.testing.MockClock) -> None:
    async with open_emulator(listen=False, max_events=0) as emulator:
        with pytest.raises(RuntimeError):
            _ = emulator.url


@pytest.mark.parametrize(
    "options",
    [{"max_events": -1}, {"connection_budget": -1}, {"max_queued_frames": 0}, {"rate": -1.0}],
)
async def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        async with open_emulator(listen=False, **options):
            pass


async def test_unknown_path_is_404(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, max_events=0) as emulator:
            with pytest.raises(ConnectionRejected) as info:
                async with emulator.open_memory_websocket("/nowhere"):
                    pass
    assert info.value.status_code == 404


@pytest.mark.parametrize("via", ["headers", "query"])
async def test_handshake_auth_good(via: str, autojump_clock: trio.testing.MockClock) -> None:
    headers = auth_headers() if via == "headers" else None
    resource = "/realtime" if via == "headers" else "/realtime?" + auth_query()
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(resource, headers=headers, max_events=0) as (emulator, ws):
            assert emulator.connections[0].account == DEFAULT_ACCOUNT
            await send(ws, {"op": "subscribe", "args": ["order", "position:XBTUSD"]})
            assert (await recv(ws))["subscribe"] == "order"
            partial = await recv(ws)
            assert partial["table"] == "order" and partial["filter"] == {"account": DEFAULT_ACCOUNT}
            assert (await recv(ws))["subscribe"] == "position:XBTUSD"
            partial = await recv(ws)
            assert partial["filter"] == {"account": DEFAULT_ACCOUNT, "symbol": "XBTUSD"}


BAD_HANDSHAKES = {
    "bad key": (auth_headers(key="nope"), "Invalid API Key."),
    "bad signature": (auth_headers(secret="wrong"), "Signature not valid."),
    "expired": (auth_headers(expires=int(EPOCH) - 10), "This request has expired"),
}


@pytest.mark.parametrize("case", sorted(BAD_HANDSHAKES))
@pytest.mark.parametrize("via", ["headers", "query"])
async def test_handshake_auth_bad_is_401(
    case: str, via: str, autojump_clock: trio.testing.MockClock
) -> None:
    headers, text = BAD_HANDSHAKES[case]
    resource = "/realtime"
    if via == "query":
        resource += "?" + "&".join(f"{k.decode()}={v.decode()}" for k, v in headers)
        headers = []
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, clock=virtual_clock(), max_events=0) as emulator:
            with pytest.raises(ConnectionRejected) as info:
                async with emulator.open_memory_websocket(resource, extra_headers=headers):
                    pass
    assert info.value.status_code == 401
    assert info.value.body is not None
    assert orjson.loads(info.value.body)["error"].startswith(text)
    if case == "expired":
        assert orjson.loads(info.value.body)["error"] == (
            f"This request has expired - `expires` is in the past. Current time: {int(EPOCH)}"
        )


# --------------------------------------------------------------------------- subscribe


async def test_subscribe_string_arg(autojump_clock: trio.testing.MockClock) -> None:
    request = {"op": "subscribe", "args": "instrument:XBTUSD"}
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (_, ws):
            await send(ws, request)
            ack = await recv(ws)
            partial = await recv(ws)
    assert ack == {"success": True, "subscribe": "instrument:XBTUSD", "request": request}
    assert partial["filter"] == {"symbol": "XBTUSD"}
    assert partial["keys"] == ["symbol"]
    assert [row["symbol"] for row in partial["data"]] == ["XBTUSD"]


async def test_one_ack_per_topic_echoing_the_whole_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    request = {"op": "subscribe", "args": ["trade:XBTUSD", "orderBookL2:XBTUSD", "instrument"]}
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (_, ws):
            await send(ws, request)
            frames = await drain(ws)
    acks = [f for f in frames if "success" in f]
    assert [a["subscribe"] for a in acks] == request["args"]
    assert all(a["request"] == request for a in acks)
    partials = [(f["table"], f["filter"]) for f in frames if f.get("action") == "partial"]
    assert partials == [
        ("trade", {"symbol": "XBTUSD"}),
        ("orderBookL2", {"symbol": "XBTUSD"}),
        ("instrument", {}),
    ]
    # Each ack is immediately followed by its own partial (the 2024 ordering).
    assert [("success" in f) for f in frames] == [True, False] * 3


async def test_query_string_subscribe(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(
            "/realtime?subscribe=instrument:XBTUSD,trade:XBTUSD", max_events=0
        ) as (emulator, ws):
            frames = await drain(ws)
            assert emulator.connections[0].topics == ("instrument:XBTUSD", "trade:XBTUSD")
    request = {"op": "subscribe", "args": ["instrument:XBTUSD", "trade:XBTUSD"]}
    assert frames[0] == {"success": True, "subscribe": "instrument:XBTUSD", "request": request}
    assert frames[1]["table"] == "instrument" and frames[1]["action"] == "partial"
    assert frames[2]["subscribe"] == "trade:XBTUSD"
    assert frames[3]["table"] == "trade" and frames[3]["action"] == "partial"


async def test_subscribe_errors(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (_, ws):
            await send(ws, {"op": "subscribe", "args": ["trade:XBTUSD"]})
            await drain(ws)
            cases = [
                (
                    {"op": "subscribe", "args": ["trade:XBTUSD"]},
                    400,
                    "You are already subscribed to this topic:trade:XBTUSD." + DOCS,
                ),
                ({"op": "subscribe", "args": ["tradeBin5dm"]}, 400, "Unknown table: tradeBin5dm"),
                (
                    {"op": "subscribe", "args": ["trade:NOPE"]},
                    400,
                    "Unknown or expired symbol.",
                ),
                (
                    {"op": "subscribe", "args": ["margin:XBTUSD"]},
                    400,
                    "Unknown table: margin:XBTUSD",
                ),
                (
                    {"op": "subscribe", "args": ["chat"]},
                    400,
                    "Unknown table: chat",
                ),  # a platform table, only on /realtimePlatform since 2023
            ]
            for request, status, text in cases:
                await send(ws, request)
                reply = await recv(ws)
                assert reply == {"status": status, "error": text, "meta": {}, "request": request}
            request = {"op": "subscribe", "args": ["margin"]}
            await send(ws, request)
            reply = await recv(ws)
    assert reply["status"] == 401
    assert reply["error"] == (
        "User requested an account-locked subscription but no authorization was provided."
    )
    assert reply["meta"] == {
        "notes": "Account-locked tables include the following: account,affiliate,execution,"
        "margin,order,position,privateNotifications,transact,wallet"
    }
    assert reply["request"] == request


async def test_mixed_subscribe_answers_each_topic(autojump_clock: trio.testing.MockClock) -> None:
    request = {"op": "subscribe", "args": ["tradeBin1m", "tradeBin5dm"]}
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (_, ws):
            await send(ws, request)
            frames = await drain(ws)
    assert frames[0]["subscribe"] == "tradeBin1m"
    assert frames[1]["action"] == "partial"
    assert frames[2] == {
        "status": 400,
        "error": "Unknown table: tradeBin5dm",
        "meta": {},
        "request": request,
    }


async def test_unsubscribe_stops_the_topic(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(rate=10, max_events=200) as (emulator, ws):
            await send(ws, {"op": "subscribe", "args": ["orderBookL2:XBTUSD"]})
            await drain(ws)
            request = {"op": "unsubscribe", "args": ["orderBookL2:XBTUSD"]}
            await send(ws, request)
            while (message := await recv(ws)).get("table"):
                pass
            assert message == {
                "success": True,
                "unsubscribe": "orderBookL2:XBTUSD",
                "request": request,
            }
            await emulator.wait_still()
            assert await drain(ws) == []
            # Unsubscribing from a topic never subscribed is acknowledged too.
            other = {"op": "unsubscribe", "args": "trade"}
            await send(ws, other)
            assert await recv(ws) == {"success": True, "unsubscribe": "trade", "request": other}


async def test_platform_endpoint(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws("/realtimePlatform", max_events=0) as (_, ws):
            await send(ws, {"op": "subscribe", "args": ["chat", "trade"]})
            frames = await drain(ws)
    assert frames[0]["subscribe"] == "chat"
    assert frames[1] == {
        "table": "chat",
        "action": "partial",
        "keys": ["id"],
        "types": {},
        "filter": {},
        "data": [],
    }
    assert frames[2]["error"] == "Unknown table: trade"


async def test_multiplexed_endpoint(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, clock=virtual_clock(), max_events=0) as emulator:
            async with emulator.open_memory_websocket(
                "/realtimemd?transport=websocket&b64=1"
            ) as ws:
                await send(ws, [1, "a", "user"])
                welcome = await recv(ws)
                assert welcome[:3] == [0, "a", "user"]
                assert welcome[3]["info"] == "Welcome to the BitMEX Realtime API."
                await send(ws, [1, "b", "user"])
                await recv(ws)
                auth = auth_command()
                await send(ws, [0, "b", "user", auth])
                assert await recv(ws) == [0, "b", "user", {"success": True, "request": auth}]
                # Each stream has its own auth.
                await send(ws, [0, "a", "user", {"op": "subscribe", "args": "order"}])
                assert (await recv(ws))[3]["status"] == 401
                await send(ws, [0, "b", "user", {"op": "subscribe", "args": "order"}])
                assert (await recv(ws))[3]["subscribe"] == "order"
                partial = await recv(ws)
                assert partial[:3] == [0, "b", "user"]
                assert partial[3]["filter"] == {"account": DEFAULT_ACCOUNT}
                await send(ws, [0, "a", "user", "ping"])
                assert await recv(ws) == [0, "a", "user", "pong"]
                await ws.send_message("ping")
                assert await recv(ws) == "pong"
                await send(ws, {"op": "subscribe", "args": "trade"})  # not a multiplex frame
                assert (await recv(ws))["status"] == 400
                await send(ws, [2, "a", "user"])
                await send(ws, [0, "a", "user", {"op": "subscribe", "args": "trade"}])
                emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Buy", 100, 1000.0)
                frames = await drain(ws)
    assert frames and all(f[:3] == [0, "b", "user"] for f in frames)
    assert frames[0][3]["table"] == "order" and frames[0][3]["action"] == "insert"


# --------------------------------------------------------------------------- auth command


async def test_auth_key_expires(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (emulator, ws):
            bad = auth_command(secret="wrong")
            await send(ws, bad)
            assert await recv(ws) == {
                "status": 401, "error": "Signature not valid.", "meta": {}, "request": bad
            }  # fmt: skip
            unknown = auth_command(key="who")
            await send(ws, unknown)
            assert (await recv(ws))["error"] == "Invalid API Key."
            expired = auth_command(expires=int(EPOCH) - 1)
            await send(ws, expired)
            reply = await recv(ws)
            assert reply["status"] == 401
            assert reply["error"].startswith("This request has expired - `expires` is in the past.")
            good = auth_command()
            await send(ws, good)
            assert await recv(ws) == {"success": True, "request": good}
            assert emulator.connections[0].account == DEFAULT_ACCOUNT
            await send(ws, good)
            again = await recv(ws)
            assert again["status"] == 400 and again["request"] == good
            await send(ws, {"op": "subscribe", "args": "execution"})
            assert (await recv(ws))["subscribe"] == "execution"
            assert (await recv(ws))["filter"] == {"account": DEFAULT_ACCOUNT}


async def test_legacy_auth_key_nonce(autojump_clock: trio.testing.MockClock) -> None:
    nonce = 1588878047418  # a millisecond nonce is not an expiry
    sig = realtime_signature(DEFAULT_API_SECRET, nonce).upper()  # BitMEX accepted upper case
    request = {"op": "authKey", "args": [DEFAULT_API_KEY, nonce, sig]}
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (_, ws):
            await send(ws, request)
            assert await recv(ws) == {"success": True, "request": request}


async def test_extra_accounts(autojump_clock: trio.testing.MockClock) -> None:
    accounts = {"k1": ("s1", 7), "k2": ("s2", 8)}
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(
            headers=auth_headers("k2", "s2"), max_events=0, accounts=accounts
        ) as (_, ws):
            await send(ws, {"op": "subscribe", "args": ["margin"]})
            frames = await drain(ws)
    assert frames[1]["filter"] == {"account": 8}


# --------------------------------------------------------------------------- dead man's switch


async def test_cancel_all_after_needs_auth(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (_, ws):
            request = {"op": "cancelAllAfter", "args": 60000}
            await send(ws, request)
            reply = await recv(ws)
    assert reply["status"] == 401 and reply["request"] == request


async def test_cancel_all_after_arm_and_disarm(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT * 10):
        async with emulator_and_ws(headers=auth_headers(), max_events=0) as (emulator, ws):
            arm = {"op": "cancelAllAfter", "args": 60000}
            await send(ws, arm)
            ack = await recv(ws)
            assert ack == {
                "now": "2025-01-01T00:00:00.000Z",
                "cancelTime": "2025-01-01T00:01:00.000Z",
                "request": arm,
            }
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) == 60.0
            await trio.sleep(10)
            disarm = {"op": "cancelAllAfter", "args": [0]}
            await send(ws, disarm)
            assert await recv(ws) == {
                "now": "2025-01-01T00:00:10.000Z", "cancelTime": 0, "request": disarm
            }  # fmt: skip
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) is None
            await trio.sleep(120)
            assert emulator.dead_mans_switch_fired == []


async def test_dead_mans_switch_fires_at_the_exact_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        async with emulator_and_ws(headers=auth_headers(), max_events=0) as (emulator, ws):
            order_id = emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Buy", 100, 1000.0)
            open_ids = {o["orderID"] for o in emulator.market.open_orders(DEFAULT_ACCOUNT)}
            assert order_id in open_ids
            await send(ws, {"op": "subscribe", "args": ["order", "execution"]})
            await drain(ws)
            start = trio.current_time()
            await send(ws, {"op": "cancelAllAfter", "args": 60000})
            await recv(ws)
            await trio.sleep(30)
            # Re-arming replaces the timer: it now fires 60 s after this second call.
            await send(ws, {"op": "cancelAllAfter", "args": 60000})
            await recv(ws)
            first = await recv(ws)  # the market is still: the next frame is the switch firing
            fired_at = trio.current_time()
            frames = [first, *await drain(ws)]
            assert fired_at == start + 90
            assert emulator.dead_mans_switch_fired == [(DEFAULT_ACCOUNT, start + 90)]
            assert emulator.market.open_orders(DEFAULT_ACCOUNT) == []
    canceled = {
        row["orderID"]
        for f in frames
        if f["table"] == "order" and f["action"] == "update"
        for row in f["data"]
        if row.get("ordStatus") == "Canceled"
    }
    assert canceled == open_ids
    executions = {
        row["orderID"]
        for f in frames
        if f["table"] == "execution"
        for row in f["data"]
        if row["execType"] == "Canceled"
    }
    assert executions == open_ids


async def test_dead_mans_switch_survives_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        async with open_emulator(listen=False, clock=virtual_clock(), max_events=0) as emulator:
            emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Sell", 100, 1_000_000.0)
            async with emulator.open_memory_websocket(extra_headers=auth_headers()) as ws:
                await recv(ws)
                armed_at = trio.current_time()
                await send(ws, {"op": "cancelAllAfter", "args": 5000})
                await recv(ws)
            await trio.sleep(6)
            assert emulator.dead_mans_switch_fired == [(DEFAULT_ACCOUNT, armed_at + 5)]
            assert emulator.market.open_orders(DEFAULT_ACCOUNT) == []


async def test_fault_ignore_cancel_all_after_scheduled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        async with open_emulator(listen=False, clock=virtual_clock(), max_events=0) as emulator:
            emulator.schedule_fault(FaultKind.IGNORE_CANCEL_ALL_AFTER, connection=0)
            emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Buy", 100, 1000.0)
            resting = emulator.market.open_orders(DEFAULT_ACCOUNT)
            async with emulator.open_memory_websocket(extra_headers=auth_headers()) as ws:
                await recv(ws)
                await send(ws, {"op": "cancelAllAfter", "args": 5000})
                assert await drain(ws) == []  # no reply at all: the ping is answered first
                assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) is None
                await trio.sleep(60)
                assert await drain(ws) == []
            # Connection 1 is not affected.
            async with emulator.open_memory_websocket(extra_headers=auth_headers()) as ws:
                await recv(ws)
                await send(ws, {"op": "cancelAllAfter", "args": 5000})
                assert (await recv(ws))["cancelTime"] == "2025-01-01T00:01:05.000Z"
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) == 65.0
            assert emulator.market.open_orders(DEFAULT_ACCOUNT) == resting  # nothing fired
            assert emulator.dead_mans_switch_fired == []
    assert [(r.kind, r.connection, r.after_messages, r.detail) for r in emulator.fault_log] == [
        (FaultKind.IGNORE_CANCEL_ALL_AFTER, 0, 1, "cancelAllAfter 5000")
    ]
    # A self-healing client cannot heal this one: random plans never pick it.
    assert FaultKind.IGNORE_CANCEL_ALL_AFTER not in RANDOM_FAULT_KINDS


async def test_fault_ignore_cancel_all_after_on_a_live_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        async with emulator_and_ws(headers=auth_headers(), max_events=0) as (emulator, ws):
            await send(ws, {"op": "cancelAllAfter", "args": 60000})
            assert (await recv(ws))["cancelTime"] == "2025-01-01T00:01:00.000Z"
            emulator.connections[0].ignore_cancel_all_after()
            await send(ws, {"op": "cancelAllAfter", "args": 0})  # a disarm, ignored too
            await send(ws, {"op": "subscribe", "args": ["instrument:XBTUSD"]})
            replies = await drain(ws)
            assert [reply.get("subscribe", reply.get("table")) for reply in replies] == [
                "instrument:XBTUSD",
                "instrument",
            ]
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) == 60.0  # still armed
            emulator.connections[0].ignore_cancel_all_after(False)
            await send(ws, {"op": "cancelAllAfter", "args": 0})
            assert (await recv(ws))["cancelTime"] == 0
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) is None
    assert emulator.fault_counts() == {FaultKind.IGNORE_CANCEL_ALL_AFTER: 1}


# --------------------------------------------------------------------------- misc commands


async def test_ping_pong_help_and_unrecognized(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (_, ws):
            await ws.send_message("ping")
            assert await ws.get_message() == "pong"
            await ws.ping(b"hello")  # protocol ping answered by a protocol pong
            await ws.send_message('"help"')
            help_reply = await recv(ws)
            assert help_reply["info"].startswith("See https://www.bitmex.com/app/wsAPI")
            assert "cancelAllAfter" in help_reply["ops"]
            unrecognized = (
                "Unrecognized request. See the docs or send 'help' for more details." + DOCS
            )
            for frame, echo in [
                ("hello", {}),
                ('{"op":"trade"}', {"op": "trade"}),
                ('{"args":["x"]}', {"args": ["x"]}),
                ("[1,2]", [1, 2]),
            ]:
                await ws.send_message(frame)
                assert await recv(ws) == {
                    "status": 400, "error": unrecognized, "meta": {}, "request": echo
                }  # fmt: skip


# --------------------------------------------------------------------------- connection budget


async def test_connection_budget_counts_down_then_429(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT * 200):
        async with open_emulator(
            listen=False, max_events=0, connection_budget=3, budget_window=3600
        ) as emulator:
            remaining = []
            for _ in range(3):
                async with emulator.open_memory_websocket() as ws:
                    remaining.append((await recv(ws))["limit"]["remaining"])
            assert remaining == [2, 1, 0]
            await trio.sleep(1000)
            with pytest.raises(ConnectionRejected) as info:
                async with emulator.open_memory_websocket():
                    pass
            assert info.value.status_code == 429
            headers = dict(info.value.headers or ())
            assert headers[b"retry-after"] == b"2600"
            assert info.value.body is not None
            body = orjson.loads(info.value.body)
            assert body["retryAfter"] == 2600 and body["meta"] == {"retryAfter": 2600}
            assert body["error"] == "Rate limit exceeded, retry in 2600 seconds."
            await trio.sleep(2600)  # the window resets
            async with emulator.open_memory_websocket() as ws:
                assert (await recv(ws))["limit"]["remaining"] == 2


# --------------------------------------------------------------------------- faults


async def expect_closed(ws: WebSocketConnection) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await ws.get_message()
    return info.value


async def test_fault_drop(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(rate=10) as (emulator, ws):
            connection = emulator.connections[0]
            await connection.drop()
            closed = await expect_closed(ws)
            assert closed.reason is not None and closed.reason.code == 1006
            assert emulator.connections == []
            assert emulator.fault_counts() == {FaultKind.DROP: 1}


@pytest.mark.parametrize(("code", "reason"), [(1000, "Bye"), (1001, "Going away")])
async def test_fault_close(code: int, reason: str, autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (emulator, ws):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(emulator.connections[0].close, code, reason)
                closed = await expect_closed(ws)
    assert closed.reason is not None
    assert (closed.reason.code, closed.reason.reason) == (code, reason)
    kind = FaultKind.CLOSE if code == 1000 else FaultKind.GOING_AWAY
    assert emulator.fault_counts() == {kind: 1}


async def test_fault_stall(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(rate=10) as (emulator, ws):
            connection = emulator.connections[0]
            await send(ws, {"op": "subscribe", "args": ["trade:XBTUSD"]})
            await drain(ws)
            connection.stall()
            start = trio.current_time()
            await ws.send_message("ping")
            with trio.move_on_after(10):
                while True:
                    message = await ws.get_message()
                    assert message != "pong"
            with trio.move_on_after(10) as scope:
                await ws.ping(b"are you there")
            assert scope.cancelled_caught  # not even protocol pongs
            assert trio.current_time() == start + 20
            connection.unstall()
            while await ws.get_message() != "pong":
                pass


async def test_slow_client_is_disconnected_with_1008(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(rate=100, max_queued_frames=20) as (emulator, ws):
            connection = emulator.connections[0]
            await send(ws, {"op": "subscribe", "args": ["orderBookL2", "trade", "quote"]})
            await drain(ws)
            connection.stall()  # the sender blocks as if the client stopped reading
            await trio.sleep(5)
            assert connection.close_reason is None
            connection.unstall()
            closed = await expect_closed(ws)
    assert closed.reason is not None and closed.reason.code == 1008
    assert connection.close_reason == (1008, "Client too slow: outgoing message buffer full")


async def test_fault_frames(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (emulator, ws):
            connection = emulator.connections[0]
            connection.send_malformed_frame()
            text = await ws.get_message()
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(text)
            connection.send_raw('{"custom":1}')
            assert await recv(ws) == {"custom": 1}
            await send(ws, {"op": "subscribe", "args": ["orderBookL2:XBTUSD"]})
            frames = await drain(ws)
            ids = {row["id"] for row in frames[1]["data"]}
            connection.send_unknown_id_update()
            update = await recv(ws)
            assert update["table"] == "orderBookL2" and update["action"] == "update"
            assert update["data"][0]["symbol"] == "XBTUSD"
            assert update["data"][0]["id"] not in ids
    assert emulator.fault_counts() == {
        FaultKind.MALFORMED_FRAME: 1,
        FaultKind.UNKNOWN_ID_UPDATE: 1,
    }


async def test_forced_partials(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (emulator, ws):
            await send(ws, {"op": "subscribe", "args": ["instrument:XBTUSD", "trade:ETHUSD"]})
            first = [f for f in await drain(ws) if f.get("action") == "partial"]
            emulator.connections[0].send_partials("trade:ETHUSD")
            assert await drain(ws) == [first[1]]
            emulator.connections[0].send_partials()
            assert await drain(ws) == first


async def test_fault_refuse_next_handshakes(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, max_events=0) as emulator:
            emulator.refuse_next_handshakes(2, retry_after=7)
            emulator.refuse_next_handshakes(1, status=503, retry_after=5)
            statuses = []
            for _ in range(3):
                with pytest.raises(ConnectionRejected) as info:
                    async with emulator.open_memory_websocket():
                        pass
                statuses.append(info.value.status_code)
                assert dict(info.value.headers or ())[b"retry-after"] in (b"7", b"5")
            assert statuses == [429, 429, 503]
            async with emulator.open_memory_websocket() as ws:
                # Refused handshakes do not use up the connection budget.
                assert (await recv(ws))["limit"] == {"remaining": 719}
    assert emulator.fault_counts() == {FaultKind.REFUSE_HANDSHAKE: 3}


async def test_fault_fail_next_auth(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, clock=virtual_clock(), max_events=0) as emulator:
            emulator.fail_next_auth(2)
            with pytest.raises(ConnectionRejected) as info:
                async with emulator.open_memory_websocket(extra_headers=auth_headers()):
                    pass
            assert info.value.status_code == 401
            async with emulator.open_memory_websocket() as ws:
                await recv(ws)
                good = auth_command()
                await send(ws, good)
                assert (await recv(ws))["error"] == "Signature not valid."
                await send(ws, good)
                assert await recv(ws) == {"success": True, "request": good}
    assert emulator.fault_counts() == {FaultKind.FAIL_AUTH: 2}


async def test_fault_delay_acks(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (emulator, ws):
            emulator.delay_acks(2.5)
            start = trio.current_time()
            await send(ws, {"op": "subscribe", "args": ["instrument"]})
            await send(ws, {"op": "subscribe", "args": ["quote"]})
            await ws.send_message("ping")  # heartbeats are never delayed
            assert await recv(ws) == "pong"
            assert trio.current_time() == start
            assert (await recv(ws))["subscribe"] == "instrument"
            assert trio.current_time() == start + 2.5
            assert (await recv(ws))["action"] == "partial"
            assert (await recv(ws))["subscribe"] == "quote"  # delayed from its own arrival
            assert trio.current_time() == start + 2.5
            await recv(ws)
            emulator.delay_acks(0)
            emulator.connections[0].delay_acks(1)
            await send(ws, {"op": "subscribe", "args": ["trade"]})
            await recv(ws)
            assert trio.current_time() == start + 3.5
    assert emulator.fault_counts() == {FaultKind.DELAY_ACKS: 2}


async def test_fault_deltas_before_partial(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (emulator, ws):
            emulator.deltas_before_partial(2)
            await send(ws, {"op": "subscribe", "args": ["orderBookL2:XBTUSD", "trade:XBTUSD"]})
            frames = await drain(ws)
    actions = [(f.get("table"), f.get("action")) for f in frames if "table" in f]
    assert actions == [
        ("orderBookL2", "update"),
        ("orderBookL2", "update"),
        ("orderBookL2", "partial"),
        ("trade", "insert"),
        ("trade", "partial"),
    ]
    assert emulator.fault_counts() == {FaultKind.DELTAS_BEFORE_PARTIAL: 2}
    # A client that drops pre-partial deltas ends up with exactly the partial.
    storage = Storage()
    for frame in frames:
        if "table" in frame:
            storage.apply(frame)
    assert len(storage.rows("trade", "XBTUSD")) == len(frames[-1]["data"])


async def test_scheduled_fault_on_a_future_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, max_events=0) as emulator:
            emulator.schedule_fault(FaultKind.DROP, connection=1, after_messages=3)
            async with emulator.open_memory_websocket() as ws:
                await recv(ws)
                await send(ws, {"op": "subscribe", "args": ["instrument", "trade"]})
                assert len(await drain(ws)) == 4  # connection 0 is not affected
            async with emulator.open_memory_websocket() as ws:
                await send(ws, {"op": "subscribe", "args": ["instrument", "trade"]})
                received = []
                with pytest.raises(ConnectionClosed):
                    while True:
                        received.append(await ws.get_message())
    assert len(received) == 3
    assert [(r.kind, r.connection, r.after_messages) for r in emulator.fault_log] == [
        (FaultKind.DROP, 1, 3)
    ]


async def random_fault_run(seed: int) -> list[tuple[str, int | None, int]]:
    async with open_emulator(listen=False, rate=100, max_events=3000) as emulator:
        emulator.inject_random_faults(
            seed,
            every_messages=40,
            kinds=[FaultKind.MALFORMED_FRAME, FaultKind.UNKNOWN_ID_UPDATE, FaultKind.DROP],
        )
        for _ in range(3):
            with pytest.raises(ConnectionClosed):
                async with emulator.open_memory_websocket() as ws:
                    await send(ws, {"op": "subscribe", "args": ["orderBookL2:XBTUSD"]})
                    while True:
                        await ws.get_message()
        return [(r.kind.value, r.connection, r.after_messages) for r in emulator.fault_log]


async def test_random_faults_are_deterministic(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT * 100):
        first = await random_fault_run(42)
        second = await random_fault_run(42)
    assert first == second
    assert [kind for kind, _, _ in first].count("drop") == 3  # each connection ends with a drop
    assert {connection for _, connection, _ in first} == {0, 1, 2}
    assert all(after % 40 == 0 for _, _, after in first if after)


async def test_stop_random_faults_and_stop_market(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT * 10):
        async with open_emulator(listen=False, rate=100) as emulator:
            emulator.inject_random_faults(1, every_messages=5, kinds=[FaultKind.MALFORMED_FRAME])
            async with emulator.open_memory_websocket() as ws:
                await send(ws, {"op": "subscribe", "args": ["orderBookL2:XBTUSD"]})
                for _ in range(30):
                    await ws.get_message()
                emulator.stop_random_faults()
                emulator.stop_market()
                await emulator.wait_still()
                injected = len(emulator.fault_log)
                events = emulator.events
                await ws.send_message("ping")
                while await ws.get_message() != "pong":  # what was queued, malformed included
                    pass
                await trio.sleep(10)
                assert await drain(ws) == []
    assert injected >= 5 and len(emulator.fault_log) == injected
    assert emulator.events == events


async def test_stop_market_sends_the_quotes_it_was_gathering(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Quotes go out once a second; a market stopped mid-second must not keep that second's
    # quotes for the partials of later subscribers only.
    with trio.fail_after(TIMEOUT * 10):
        async with open_emulator(listen=False, rate=100, clock=virtual_clock()) as emulator:
            async with emulator.open_memory_websocket() as ws:
                await send(ws, {"op": "subscribe", "args": ["quote:XBTUSD"]})
                rows: list[dict[str, object]] = []
                while len(rows) < 20:
                    message = orjson.loads(await ws.get_message())
                    rows.extend(message.get("data", []) if "table" in message else [])
                await trio.sleep(0.5)  # mid-second: quotes gathered, not yet sent
                emulator.stop_market()
                await emulator.wait_still()
                await ws.send_message("ping")
                while (text := await ws.get_message()) != "pong":
                    rows.extend(orjson.loads(text).get("data", []))
            async with emulator.open_memory_websocket() as fresh:
                await send(fresh, {"op": "subscribe", "args": ["quote:XBTUSD"]})
                while "table" not in (partial := orjson.loads(await fresh.get_message())):
                    pass
    assert partial["action"] == "partial"
    assert partial["data"][-1] == rows[-1]


# --------------------------------------------------------------------------- determinism, state


async def record_session(seed: int, topics: list[str], max_events: int) -> list[str | bytes]:
    async with open_emulator(
        listen=False, seed=seed, rate=100, max_events=max_events, clock=virtual_clock()
    ) as emulator:
        async with emulator.open_memory_websocket(extra_headers=auth_headers()) as ws:
            frames = [await ws.get_message()]
            await send(ws, {"op": "subscribe", "args": topics})
            await emulator.wait_still()
            await ws.send_message("ping")
            while (text := await ws.get_message()) != "pong":
                frames.append(text)
    return frames


TOPICS = ["orderBookL2", "trade", "quote", "instrument", "order", "execution", "position"]


async def test_same_seed_gives_byte_identical_frames(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT * 100):
        first = await record_session(7, TOPICS, 300)
        second = await record_session(7, TOPICS, 300)
        other = await record_session(8, TOPICS, 300)
    assert len(first) > 50
    assert first == second
    assert first != other


def book_pairs(levels: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    bids = sorted(((lv["price"], lv["size"]) for lv in levels if lv["side"] == "Buy"), reverse=True)
    asks = sorted((lv["price"], lv["size"]) for lv in levels if lv["side"] == "Sell")
    return bids, asks


async def test_legacy_book_format(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT * 10):
        async with emulator_and_ws(legacy_book=True, rate=50, max_events=300) as (emulator, ws):
            await send(ws, {"op": "subscribe", "args": ["orderBookL2:XBTUSD"]})
            await emulator.wait_still()
            frames = [f for f in await drain(ws) if "table" in f]
    assert frames[0]["action"] == "partial"
    assert all("timestamp" not in row for row in frames[0]["data"])
    updates = [row for f in frames if f["action"] in ("update", "delete") for row in f["data"]]
    assert updates and all("price" not in row for row in updates)
    storage = Storage()
    for frame in frames:
        storage.apply(frame)
    assert storage.book("XBTUSD").bids


def keyed(rows: list[dict[str, Any]], keys: list[str]) -> dict[tuple[Any, ...], Any]:
    return {tuple(row[k] for k in keys): row for row in rows}


async def test_storage_converges_to_the_market(autojump_clock: trio.testing.MockClock) -> None:
    storage = Storage()
    public = ["orderBookL2", "orderBookL2_25", "orderBook10", "instrument", "trade", "quote"]
    private = ["order", "execution", "position", "margin", "wallet"]
    with trio.fail_after(TIMEOUT * 100):
        async with emulator_and_ws(headers=auth_headers(), rate=200, max_events=2000) as (
            emulator,
            ws,
        ):
            market = emulator.market
            await send(ws, {"op": "subscribe", "args": public + private})
            await trio.sleep(1)
            # Orders that cross the book fill at once; others rest and may fill later.
            best_ask = market.snapshot("quote", "XBTUSD").rows[0]["askPrice"]
            emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Buy", 300, best_ask)
            emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Sell", 200, best_ask + 50)
            await emulator.wait_still()
            for frame in await drain(ws):
                if "table" in frame:
                    storage.apply(frame)
    assert len(market.symbols) > 1
    for symbol in market.symbols:
        bids, asks = book_pairs(market.book_levels(symbol))
        book = storage.book(symbol)
        assert list(book.bids) == bids
        assert list(book.asks) == asks
        top = storage.book(symbol, "orderBookL2_25")
        assert list(top.bids) == bids[:25] and list(top.asks) == asks[:25]
        ten = storage.book(symbol, "orderBook10")
        assert [tuple(x) for x in ten.bids] == bids[:10]
        assert [tuple(x) for x in ten.asks] == asks[:10]
        for table in ("trade", "quote"):  # the latest row of each symbol
            assert storage.rows(table, symbol)[-1] == market.snapshot(table, symbol).rows[-1]
    snap = market.snapshot("instrument")
    assert keyed(storage.rows("instrument"), snap.keys) == keyed(snap.rows, snap.keys)
    for table in ("order", "position", "margin", "wallet"):
        snap = market.snapshot(table, account=DEFAULT_ACCOUNT)
        assert snap.rows, table
        assert keyed(storage.rows(table), snap.keys) == keyed(snap.rows, snap.keys), table
    # the execution partial is empty (BitMEX 2024+); the orders placed live arrive as inserts
    assert market.snapshot("execution", account=DEFAULT_ACCOUNT).rows == []
    executions = storage.rows("execution")
    assert {row["execType"] for row in executions} >= {"New", "Trade"}


# --------------------------------------------------------------------------- pytest fixture


async def test_pytest_fixture(bitmex_emulator: Emulator) -> None:  # noqa: F811
    with trio.fail_after(TIMEOUT):
        assert bitmex_emulator.url.startswith("ws://127.0.0.1:")
        async with bitmex_emulator.open_memory_websocket() as ws:
            assert (await recv(ws))["info"] == "Welcome to the BitMEX Realtime API."
        assert math.isfinite(bitmex_emulator.now())
