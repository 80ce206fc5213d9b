"""Paper trading end to end: orders over BitMEX's REST API, their rows on the websocket.

A bot that trades on BitMEX places orders over REST and follows them on the realtime feed; these
tests are that bot, on the synthetic market, in memory under ``autojump_clock`` (and one over
TCP with an unmodified HTTP client). What they check is what such a bot relies on: the private
rows of an order arrive in BitMEX's order, the dead man's switch armed over REST cancels, and an
account never sees another's orders on either protocol.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

import httpx
import orjson
import trio
import trio.testing
from trio_websocket import WebSocketConnection

from bitmex_trio_websocket._auth import realtime_signature
from bitmex_trio_websocket.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    Emulator,
    open_emulator,
)
from bitmex_trio_websocket.emulator.rest import RestLimits

from .http_client import HttpClient, Reply, auth_headers

TIMEOUT = 30
EPOCH = 1_735_689_600.0
OTHER_KEY, OTHER_SECRET, OTHER_ACCOUNT = "second-key", "second-secret", 200002
ACCOUNTS = {
    DEFAULT_API_KEY: (DEFAULT_API_SECRET, DEFAULT_ACCOUNT),
    OTHER_KEY: (OTHER_SECRET, OTHER_ACCOUNT),
}
PRIVATE = ["order", "execution", "position", "margin", "wallet"]


@asynccontextmanager
async def paper(**options: Any) -> AsyncIterator[Emulator]:
    """A still synthetic market (nothing moves but our orders) on a virtual wall clock."""
    origin = trio.current_time()
    async with open_emulator(
        listen=False,
        max_events=0,
        seed=5,
        accounts=ACCOUNTS,
        clock=lambda: EPOCH + trio.current_time() - origin,
        **options,
    ) as emulator:
        yield emulator


class Trader:
    """One account's REST connection (signed requests, BitMEX's recipe)."""

    def __init__(self, emulator: Emulator, client: HttpClient, key: str, secret: str) -> None:
        self.emulator = emulator
        self.client = client
        self.key = key
        self.secret = secret

    async def call(self, verb: str, path: str, params: dict[str, Any] | None = None) -> Reply:
        target = "/api/v1" + path
        body = b""
        if params is not None and verb == "GET":
            target += "?" + "&".join(f"{k}={v}" for k, v in params.items())
        elif params is not None:
            body = orjson.dumps(params)
        expires = int(self.emulator.now()) + 60
        headers = auth_headers(self.key, self.secret, verb, target, body, expires)
        if body:
            headers.append(("Content-Type", "application/json"))
        return await self.client.request(verb, target, headers=headers, body=body)


@asynccontextmanager
async def trader(emulator: Emulator, key: str, secret: str) -> AsyncIterator[Trader]:
    stream = await emulator.connect_rest_in_memory()
    try:
        yield Trader(emulator, HttpClient(stream), key, secret)
    finally:
        await trio.aclose_forcefully(stream)


@asynccontextmanager
async def private_feed(
    emulator: Emulator, key: str, secret: str, topics: list[str]
) -> AsyncIterator[WebSocketConnection]:
    """An authenticated websocket subscribed to ``topics``, its partials read."""
    expires = int(emulator.now()) + 3600
    headers = [
        (b"api-key", key.encode()),
        (b"api-expires", str(expires).encode()),
        (b"api-signature", realtime_signature(secret, expires).encode()),
    ]
    async with emulator.open_memory_websocket(extra_headers=headers) as ws:
        await ws.get_message()  # welcome
        await ws.send_message(orjson.dumps({"op": "subscribe", "args": topics}).decode())
        pending = set(topics)
        while pending:
            message = orjson.loads(await ws.get_message())
            if message.get("action") == "partial":
                pending.discard(message["table"])
        yield ws


async def drain(ws: WebSocketConnection) -> list[dict[str, Any]]:
    """Every message queued on ``ws`` now (the server publishes before it answers REST)."""
    out: list[dict[str, Any]] = []
    await trio.testing.wait_all_tasks_blocked()
    while True:
        with trio.move_on_after(0.001) as scope:
            out.append(orjson.loads(await ws.get_message()))
        if scope.cancelled_caught:
            return out


def rows_of(messages: list[dict[str, Any]], table: str) -> Generator[dict[str, Any]]:
    for message in messages:
        if message.get("table") == table:
            yield from message["data"]


async def test_market_order_rows_arrive_in_bitmex_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            paper() as emulator,
            private_feed(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET, PRIVATE) as ws,
            trader(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET) as me,
        ):
            before = (await me.call("GET", "/position", {"symbol": "XBTUSD"})).json()
            held = before[0]["currentQty"] if before else 0
            reply = await me.call(
                "POST", "/order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 300,
                                   "ordType": "Market", "clOrdID": "paper-1"},
            )  # fmt: skip
            assert reply.status == 200, reply.body
            order = reply.json()
            assert (order["ordStatus"], order["cumQty"], order["clOrdID"]) == (
                "Filled",
                300,
                "paper-1",
            )
            messages = await drain(ws)
            sequence = [(m["table"], m["action"]) for m in messages]
            # The order's rows before its execution rows before the position it changed, and
            # money last, as BitMEX sent them.
            first = {key: sequence.index(key) for key in dict.fromkeys(sequence)}
            assert first[("order", "insert")] < first[("execution", "insert")]
            assert first[("execution", "insert")] < first[("position", "update")]
            assert first[("position", "update")] < first[("margin", "update")]
            fills = [r for r in rows_of(messages, "execution") if r.get("execType") == "Trade"]
            assert fills and all(r["orderID"] == order["orderID"] for r in fills)
            assert sum(r["lastQty"] for r in fills) == 300
            last_fill = max(i for i, m in enumerate(messages) if m["table"] == "execution")
            positions = [i for i, m in enumerate(messages) if m["table"] == "position"]
            assert positions and positions[-1] > last_fill
            position = [r for r in rows_of(messages, "position") if "currentQty" in r][-1]
            assert position["currentQty"] == held + 300
            after = (await me.call("GET", "/position", {"symbol": "XBTUSD"})).json()
            assert after[0]["currentQty"] == held + 300
            history = (await me.call("GET", "/execution/tradeHistory", {"reverse": "true"})).json()
            assert history[0]["orderID"] == order["orderID"]


async def test_resting_order_amend_and_cancel_reach_the_feed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            paper() as emulator,
            private_feed(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET, ["order"]) as ws,
            trader(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET) as me,
        ):
            bid = emulator.market.best("XBTUSD", "Buy")
            assert bid is not None
            price = round(bid - 500.0, 1)
            order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": price}
            placed = (await me.call("POST", "/order", order)).json()
            assert placed["ordStatus"] == "New"
            [insert] = list(rows_of(await drain(ws), "order"))
            assert (insert["orderID"], insert["price"], insert["ordStatus"]) == (
                placed["orderID"], price, "New",
            )  # fmt: skip
            amended = await me.call(
                "PUT", "/order", {"orderID": placed["orderID"], "orderQty": 200}
            )
            assert amended.status == 200 and amended.json()["orderQty"] == 200
            updates = list(rows_of(await drain(ws), "order"))
            assert updates and updates[-1]["orderID"] == placed["orderID"]
            assert updates[-1].get("orderQty", 200) == 200
            canceled = await me.call("DELETE", "/order", {"orderID": placed["orderID"]})
            assert canceled.status == 200 and canceled.json()[0]["ordStatus"] == "Canceled"
            updates = list(rows_of(await drain(ws), "order"))
            assert updates[-1]["ordStatus"] == "Canceled"


async def test_dead_mans_switch_over_rest_fires_and_cancels(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT + 120):
        async with (
            paper() as emulator,
            private_feed(
                emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET, ["order", "execution"]
            ) as ws,
            trader(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET) as me,
        ):
            bid = emulator.market.best("XBTUSD", "Buy")
            assert bid is not None
            placed = (await me.call(
                "POST", "/order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                   "price": round(bid - 300.0, 1)},
            )).json()  # fmt: skip
            await drain(ws)
            start = trio.current_time()
            armed = await me.call("POST", "/order/cancelAllAfter", {"timeout": 60000})
            assert armed.status == 200
            body = armed.json()
            assert set(body) >= {"now", "cancelTime"}
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) == start + 60
            await trio.sleep(59)
            assert await drain(ws) == [] and emulator.dead_mans_switch_fired == []
            await trio.sleep(2)
            assert emulator.dead_mans_switch_fired == [(DEFAULT_ACCOUNT, start + 60)]
            messages = await drain(ws)
            canceled = [r for r in rows_of(messages, "order") if r.get("ordStatus") == "Canceled"]
            assert placed["orderID"] in {r["orderID"] for r in canceled}
            # BitMEX prefixed the order's own text ("Canceled: ...\nSubmitted via API.").
            assert all(
                r["text"].startswith("Canceled: Cancel from cancelAllAfter") for r in canceled
            )
            executions = list(rows_of(messages, "execution"))
            assert {r["execType"] for r in executions} == {"Canceled"}
            open_orders = (await me.call("GET", "/order", {"filter": '{"open":true}'})).json()
            assert open_orders == []


async def test_dead_mans_switch_rearmed_over_rest_and_websocket_is_one_timer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT + 120):
        async with (
            paper() as emulator,
            private_feed(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET, ["order"]) as ws,
            trader(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET) as me,
        ):
            start = trio.current_time()
            await me.call("POST", "/order/cancelAllAfter", {"timeout": 10000})
            await ws.send_message('{"op":"cancelAllAfter","args":30000}')
            await ws.get_message()  # its reply
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) == start + 30
            await me.call("POST", "/order/cancelAllAfter", {"timeout": 0})
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) is None
            await trio.sleep(40)
            assert emulator.dead_mans_switch_fired == []


async def test_accounts_never_see_each_other_over_rest_or_websocket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            paper() as emulator,
            private_feed(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET, PRIVATE) as mine,
            private_feed(emulator, OTHER_KEY, OTHER_SECRET, PRIVATE) as theirs,
            trader(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET) as me,
            trader(emulator, OTHER_KEY, OTHER_SECRET) as them,
        ):
            await drain(mine)
            await drain(theirs)
            bid = emulator.market.best("XBTUSD", "Buy")
            assert bid is not None
            resting = (await them.call(
                "POST", "/order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                   "price": round(bid - 100.0, 1), "clOrdID": "theirs"},
            )).json()  # fmt: skip
            filled = (await them.call(
                "POST", "/order", {"symbol": "XBTUSD", "side": "Sell", "orderQty": 100,
                                   "ordType": "Market"},
            )).json()  # fmt: skip
            assert filled["ordStatus"] == "Filled"
            assert await drain(mine) == []  # nothing of theirs on my feed
            their_messages = await drain(theirs)
            assert {r["account"] for r in rows_of(their_messages, "order")} == {OTHER_ACCOUNT}
            assert resting["orderID"] in {r["orderID"] for r in rows_of(their_messages, "order")}
            # Over REST: their orders are not mine to read, amend or cancel.
            my_orders = (await me.call("GET", "/order")).json()
            assert resting["orderID"] not in {o["orderID"] for o in my_orders}
            assert all(o["account"] == DEFAULT_ACCOUNT for o in my_orders)
            steal = await me.call("DELETE", "/order", {"orderID": resting["orderID"]})
            assert steal.status >= 400 or steal.json()[0].get("error")
            # The same clOrdID is free for another account.
            mine_too = await me.call(
                "POST", "/order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                   "price": round(bid - 100.0, 1), "clOrdID": "theirs"},
            )  # fmt: skip
            assert mine_too.status == 200
            their_orders = (await them.call("GET", "/order")).json()
            assert {o["orderID"] for o in their_orders} == {resting["orderID"], filled["orderID"]}
            their_positions = (await them.call("GET", "/position")).json()
            assert {p["account"] for p in their_positions} == {OTHER_ACCOUNT}
            assert [p["currentQty"] for p in their_positions if p["symbol"] == "XBTUSD"] == [-100]


class BitmexApiKeyAuth(httpx.Auth):
    """What BitMEX's official Python connector's APIKeyAuthenticator did, as an httpx auth:
    ``api-expires`` a few seconds ahead, ``api-signature`` over the verb, the URL's path with
    its query, the expiry and the body."""

    def __init__(self, key: str, secret: str, now: Callable[[], float] = time.time) -> None:
        self.key, self.secret, self.now = key, secret, now

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        expires = int(round(self.now()) + 5)
        url = urlparse(str(request.url))
        path = url.path + ("?" + url.query if url.query else "")
        message = (request.method + path + str(expires)).encode() + request.content
        signature = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
        request.headers["api-expires"] = str(expires)
        request.headers["api-key"] = self.key
        request.headers["api-signature"] = signature
        yield request


async def test_a_plain_bitmex_rest_client_works_but_for_the_base_url() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(max_events=0, seed=5, accounts=ACCOUNTS) as emulator:
            auth = BitmexApiKeyAuth(DEFAULT_API_KEY, DEFAULT_API_SECRET)
            async with httpx.AsyncClient(base_url=emulator.rest_url + "/", auth=auth) as http:
                instruments = (await http.get("instrument/active")).json()
                assert "XBTUSD" in {row["symbol"] for row in instruments}
                book = (
                    await http.get("orderBook/L2", params={"symbol": "XBTUSD", "depth": 1})
                ).json()
                best_bid = next(row["price"] for row in book if row["side"] == "Buy")
                placed = await http.post(
                    "order",
                    json={"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                          "price": best_bid - 1000.0, "clOrdID": "httpx-1"},
                )  # fmt: skip
                assert placed.status_code == 200, placed.text
                assert placed.headers["x-ratelimit-limit"] == "120"
                orders = (
                    await http.get("order", params={"filter": '{"open": true}', "reverse": "true"})
                ).json()
                assert orders[0]["clOrdID"] == "httpx-1"
                gone = await http.request(
                    "DELETE", "order", json={"clOrdID": "httpx-1"}
                )  # httpx's delete() takes no body; BitMEX's connectors sent one
                assert gone.json()[0]["ordStatus"] == "Canceled"
                wallet = (await http.get("user/wallet")).json()
                assert wallet["account"] == DEFAULT_ACCOUNT
                # Keep-alive: every request above went over one connection.
                assert [c.requests for c in emulator.rest_connections] == [6]
            async with httpx.AsyncClient(base_url=emulator.rest_url + "/") as anonymous:
                refused = await anonymous.get("order")
                assert refused.status_code == 401
                assert refused.json()["error"]["name"] == "HTTPError"


async def test_rate_limits_are_per_account(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            paper() as emulator,
            trader(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET) as me,
            trader(emulator, OTHER_KEY, OTHER_SECRET) as them,
        ):
            emulator.rest_app.set_limits(OTHER_ACCOUNT, RestLimits(per_minute=3))
            statuses = [(await them.call("GET", "/order")).status for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            refused = await them.call("GET", "/order")
            assert int(refused.headers["retry-after"]) > 0
            # Mine are BitMEX's 120 a minute, untouched by theirs.
            mine = [await me.call("GET", "/order") for _ in range(5)]
            assert {r.status for r in mine} == {200}
            assert mine[-1].headers["x-ratelimit-limit"] == "120"
            assert int(mine[-1].headers["x-ratelimit-remaining"]) == 115
