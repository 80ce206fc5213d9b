"""The REST client against a scripted HTTP server: exact bytes, signatures, retries, timeouts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from bitmex_trio_websocket import (
    AuthenticationError,
    BitMEXAPIError,
    BitMEXRest,
    ConnectionClosed,
    ConnectionTimeout,
    Overloaded,
    RateLimited,
    open_bitmex_rest,
)
from bitmex_trio_websocket._auth import rest_signature

from ..support.scripted_http import DROP, SILENT, Answer, ScriptedHttpServer, Seen, error

TIMEOUT = 60
# BitMEX's API key docs (www.bitmex.com/app/apiKeysUsage): the sample key and secret.
SAMPLE_KEY = "LAqUlngMIQkIUjXMUreyu3qn"
SAMPLE_SECRET = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"
ORDER = {"orderID": "o-1", "clOrdID": "c-1", "symbol": "XBTUSD", "ordStatus": "New"}


@asynccontextmanager
async def scripted(
    script: Callable[[Seen], Answer | str],
    *,
    clock: Callable[[], float] = lambda: 1518064231.0,
    key: str | None = SAMPLE_KEY,
    secret: str | None = SAMPLE_SECRET,
    **options: Any,
) -> AsyncIterator[tuple[BitMEXRest, ScriptedHttpServer]]:
    async with trio.open_nursery() as nursery:
        server = ScriptedHttpServer(nursery, script)
        async with open_bitmex_rest(
            "https://www.bitmex.com/api/v1", key, secret,
            connect=server.connect, clock=clock, **options,
        ) as rest:  # fmt: skip
            yield rest, server
        nursery.cancel_scope.cancel()


async def test_a_get_is_these_exact_bytes_signed_as_bitmex_published(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # expires = clock + 5 s = 1518064236: BitMEX's sample, whose signature it published.
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: Answer(body=[])) as (rest, server):
            assert await rest.request("GET", "/instrument") == []
    [seen] = server.seen
    assert seen.raw == (
        b"GET /api/v1/instrument HTTP/1.1\r\n"
        b"Host: www.bitmex.com\r\n"
        b"User-Agent: bitmex-trio-websocket\r\n"
        b"Accept: application/json\r\n"
        b"api-expires: 1518064236\r\n"
        b"api-key: LAqUlngMIQkIUjXMUreyu3qn\r\n"
        b"api-signature: c7682d435d0cfe87c16098df34ef2eb5a549d4c5a3c2b1f0f77b8af73423bf00\r\n"
        b"\r\n"
    )


async def test_a_post_body_and_signature_match_bitmex_published_sample(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: Answer(body=ORDER), clock=lambda: 1518064233.0) as (
            rest,
            server,
        ):
            await rest.request(
                "POST", "/order", symbol="XBTM15", price=219.0,
                clOrdID="mm_bitmex_1a/oemUeQ4CAJZgP3fjHsA", orderQty=98,
            )  # fmt: skip
    [seen] = server.seen
    assert seen.body == (
        b'{"symbol":"XBTM15","price":219.0,"clOrdID":"mm_bitmex_1a/oemUeQ4CAJZgP3fjHsA",'
        b'"orderQty":98}'
    )
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["content-length"] == str(len(seen.body))
    assert seen.headers["api-expires"] == "1518064238"
    assert (
        seen.headers["api-signature"]
        == "1749cd2ccae4aa49048ae09f0b95110cee706e0944e6a14ad0b3a8cb45bd336b"
    )


async def test_every_method_sends_bitmex_route_and_fields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(seen: Seen) -> Answer:
        if seen.method == "GET" and seen.target.startswith(("/api/v1/user", "/api/v1/position?")):
            return Answer(body={})
        if seen.method in ("PUT",) or seen.target.endswith(("leverage", "cancelAllAfter")):
            return Answer(body={})
        if seen.method == "POST":
            return Answer(body=seen.json())
        return Answer(body=[])

    with trio.fail_after(TIMEOUT):
        async with scripted(script, cl_ord_id_prefix="bt") as (rest, server):
            placed = await rest.place_order(
                symbol="XBTUSD",
                side="Buy",
                orderQty=100,
                price=50000.0,
                execInst="ParticipateDoNotInitiate",
            )
            await rest.place_order(symbol="XBTUSD", side="Sell", orderQty=1, clOrdID="mine")
            await rest.amend_order(orderID="o-1", price=50001.5)
            await rest.cancel_order(orderID=["o-1", "o-2"])
            await rest.cancel_all(symbol="XBTUSD", filter={"side": "Buy"})
            await rest.cancel_all_after(60000)
            await rest.set_leverage("XBTUSD", 10)
            await rest.open_orders("XBTUSD")
            await rest.positions()
            await rest.executions("XBTUSD", count=5, start_time="2025-01-01")
            await rest.executions(every=True)
            await rest.wallet()
            await rest.margin("USDt")
            await rest.instruments()
            await rest.instruments("XBTUSD")
            await rest.order_book("XBTUSD", depth=2)
    assert placed["clOrdID"] == "bt-1"
    wire = [(s.method, s.target, s.body) for s in server.seen]
    assert wire == [
        ("POST", "/api/v1/order",
         b'{"symbol":"XBTUSD","side":"Buy","orderQty":100,"price":50000.0,'
         b'"execInst":"ParticipateDoNotInitiate","clOrdID":"bt-1"}'),
        ("POST", "/api/v1/order",
         b'{"symbol":"XBTUSD","side":"Sell","orderQty":1,"clOrdID":"mine"}'),
        ("PUT", "/api/v1/order", b'{"orderID":"o-1","price":50001.5}'),
        ("DELETE", "/api/v1/order", b'{"orderID":["o-1","o-2"]}'),
        ("DELETE", "/api/v1/order/all", b'{"symbol":"XBTUSD","filter":{"side":"Buy"}}'),
        ("POST", "/api/v1/order/cancelAllAfter", b'{"timeout":60000}'),
        ("POST", "/api/v1/position/leverage", b'{"symbol":"XBTUSD","leverage":10}'),
        ("GET", "/api/v1/order?symbol=XBTUSD&filter=%7B%22open%22%3Atrue%7D&count=500", b""),
        ("GET", "/api/v1/position", b""),
        ("GET", "/api/v1/execution/tradeHistory?symbol=XBTUSD&count=5&startTime=2025-01-01", b""),
        ("GET", "/api/v1/execution?count=100", b""),
        ("GET", "/api/v1/user/wallet?currency=XBt", b""),
        ("GET", "/api/v1/user/margin?currency=USDt", b""),
        ("GET", "/api/v1/instrument/active", b""),
        ("GET", "/api/v1/instrument?symbol=XBTUSD", b""),
        ("GET", "/api/v1/orderBook/L2?symbol=XBTUSD&depth=2", b""),
    ]  # fmt: skip
    assert server.connections == 1  # one keep-alive connection for all of it
    for seen in server.seen:  # each one signed over exactly what was sent
        expected = rest_signature(
            SAMPLE_SECRET, seen.method, seen.target, seen.headers["api-expires"], seen.body
        )
        assert seen.headers["api-signature"] == expected


async def test_unsigned_without_keys(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: Answer(body=[]), key=None, secret=None) as (rest, server):
            await rest.instruments()
    assert not any(name.startswith("api-") for name in server.seen[0].headers)


async def test_429_waits_for_retry_after_then_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(seen: Seen) -> Answer:
        if len(server_box[0].seen) == 1:
            return error(429, "Rate limit exceeded, retry in 7 seconds.", "RateLimitError",
                         retry_after="7")  # fmt: skip
        return Answer(body=[])

    server_box: list[ScriptedHttpServer] = []
    with trio.fail_after(TIMEOUT):
        async with scripted(script) as (rest, server):
            server_box.append(server)
            assert await rest.positions() == []
    first, second = server.seen
    assert second.at - first.at == pytest.approx(7.0)


async def test_429_past_the_retries_is_rate_limited_with_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    answer = error(
        429, "Rate limit exceeded, retry in 3 seconds.", "RateLimitError", retry_after="3"
    )
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: answer, retries=2) as (rest, server):
            with pytest.raises(RateLimited) as caught:
                await rest.positions()
    assert len(server.seen) == 3
    assert (caught.value.status, caught.value.retry_after, caught.value.name) == (
        429,
        3.0,
        "RateLimitError",
    )
    assert isinstance(caught.value, BitMEXAPIError)


async def test_limits_from_headers_are_honoured_before_sending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 60 a minute, none left: one token is back 1 s later, so the next request waits 1 s
    # rather than being refused; an order route with no per-second token left waits too.
    empty = [("x-ratelimit-limit", "60"), ("x-ratelimit-remaining", "0"),
             ("x-ratelimit-reset", "1518064300")]  # fmt: skip
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: Answer(body=[], headers=empty)) as (rest, server):
            await rest.positions()
            await rest.positions()
            assert rest.rate_limit.limit == 60 and rest.rate_limit.remaining == 0
    first, second = server.seen
    assert second.at - first.at == pytest.approx(1.0)


async def test_per_second_order_limit_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    minute = [("x-ratelimit-limit", "120"), ("x-ratelimit-remaining", "100")]

    def script(seen: Seen) -> Answer:
        order_route = seen.target.endswith("leverage")  # the -1s figure comes on those only
        return Answer(body={}, headers=minute + [("x-ratelimit-remaining-1s", "0")] * order_route)

    with trio.fail_after(TIMEOUT):
        async with scripted(script) as (rest, server):
            await rest.cancel_all_after(1000)
            await rest.set_leverage("XBTUSD", 1)  # nothing known of the 1 s bucket yet
            await rest.set_leverage("XBTUSD", 2)  # none left in it: waits for a token
            await rest.cancel_all_after(1000)  # not an order route: goes at once
            assert rest.rate_limit.remaining_1s is None
    times = [s.at for s in server.seen]
    assert times[1] == times[0]
    assert times[2] - times[1] == pytest.approx(1.0)
    assert times[3] == times[2]


async def test_503_retries_a_get_and_an_order_with_clordid_after_half_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shed = {0, 2}

    def script(seen: Seen) -> Answer:
        if len(box[0].seen) - 1 in shed:
            return error(503, "The system is currently overloaded. Please try again later.")
        return Answer(body=ORDER if seen.method == "POST" else [])

    box: list[ScriptedHttpServer] = []
    with trio.fail_after(TIMEOUT):
        async with scripted(script) as (rest, server):
            box.append(server)
            assert await rest.positions() == []
            assert (await rest.place_order(symbol="XBTUSD", orderQty=1, price=1.0)) == ORDER
    times = [s.at for s in server.seen]
    assert times[1] - times[0] >= 0.5 and times[3] - times[2] >= 0.5
    post_bodies = [s.json() for s in server.seen if s.method == "POST"]
    assert post_bodies[0] == post_bodies[1]  # the same clOrdID both times


async def test_503_is_not_retried_where_a_retry_could_double_the_effect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shed = error(503, "The system is currently overloaded. Please try again later.")
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: shed) as (rest, server):
            with pytest.raises(Overloaded) as caught:
                await rest.amend_order(orderID="o-1", price=2.0)
            with pytest.raises(Overloaded):
                await rest.set_leverage("XBTUSD", 5)
    assert len(server.seen) == 2
    assert caught.value.status == 503
    assert caught.value.request == {
        "method": "PUT",
        "path": "/api/v1/order",
        "params": {"orderID": "o-1", "price": 2.0},
    }


async def test_errors_carry_status_name_message_and_the_request_without_signature(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(seen: Seen) -> Answer:
        if seen.method == "GET":
            return error(401, "Invalid API Key.")
        if seen.method == "PUT":
            return error(404, "Not Found")
        return error(400, "Invalid orderQty", "ValidationError")

    with trio.fail_after(TIMEOUT):
        async with scripted(script) as (rest, _):
            with pytest.raises(AuthenticationError) as unauthorized:
                await rest.wallet()
            with pytest.raises(BitMEXAPIError) as missing:
                await rest.amend_order(orderID="nope", price=1.0)
            with pytest.raises(BitMEXAPIError) as invalid:
                await rest.place_order(symbol="XBTUSD", orderQty=-1, clOrdID="c")
    assert (unauthorized.value.status, unauthorized.value.message) == (401, "Invalid API Key.")
    assert (missing.value.status, missing.value.name) == (404, "HTTPError")
    assert (invalid.value.status, invalid.value.name, invalid.value.message) == (
        400,
        "ValidationError",
        "Invalid orderQty",
    )
    assert invalid.value.request["params"] == {"symbol": "XBTUSD", "orderQty": -1, "clOrdID": "c"}
    for exc in (unauthorized.value, missing.value, invalid.value):
        assert SAMPLE_SECRET not in repr(exc) + str(exc)
        assert "signature" not in repr(exc.request)


async def test_a_request_that_gets_no_answer_times_out_and_the_next_uses_a_new_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(seen: Seen) -> Answer | str:
        return SILENT if len(box[0].seen) == 1 else Answer(body=[])

    box: list[ScriptedHttpServer] = []
    with trio.fail_after(TIMEOUT):
        async with scripted(script, timeout=3.0, retries=0) as (rest, server):
            box.append(server)
            start = trio.current_time()
            with pytest.raises(ConnectionTimeout):
                await rest.positions()
            assert trio.current_time() - start == pytest.approx(3.0)
            assert await rest.positions() == []
    assert [s.connection for s in server.seen] == [0, 1]


async def test_dropped_with_a_get_in_flight_sends_it_again_on_a_new_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(seen: Seen) -> Answer | str:
        return DROP if len(box[0].seen) == 1 else Answer(body=[{"symbol": "XBTUSD"}])

    box: list[ScriptedHttpServer] = []
    with trio.fail_after(TIMEOUT):
        async with scripted(script) as (rest, server):
            box.append(server)
            assert await rest.instruments() == [{"symbol": "XBTUSD"}]
    assert [s.connection for s in server.seen] == [0, 1]


async def test_dropped_with_an_amend_in_flight_is_raised_not_repeated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: DROP) as (rest, server):
            with pytest.raises(ConnectionClosed) as caught:
                await rest.amend_order(orderID="o-1", price=2.0)
    assert len(server.seen) == 1
    assert "may have been executed" in str(caught.value.reason)


async def test_an_order_whose_answer_was_lost_is_found_by_its_clordid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The first POST arrived and was executed, but the connection dropped before the answer:
    # sent again, BitMEX refuses the clOrdID as a duplicate, so the client looks it up.
    def script(seen: Seen) -> Answer | str:
        n = len(box[0].seen)
        if n == 1:
            return DROP
        if n == 2:
            return error(400, "Duplicate clOrdID", "ValidationError")
        return Answer(body=[ORDER | {"clOrdID": seen.target.split("%22")[-2]}])

    box: list[ScriptedHttpServer] = []
    with trio.fail_after(TIMEOUT):
        async with scripted(script, cl_ord_id_prefix="x") as (rest, server):
            box.append(server)
            row = await rest.place_order(symbol="XBTUSD", side="Buy", orderQty=1, price=1.0)
    assert row["clOrdID"] == "x-1"
    assert [s.method for s in server.seen] == ["POST", "POST", "GET"]
    assert server.seen[2].target == ("/api/v1/order?filter=%7B%22clOrdID%22%3A%22x-1%22%7D")


async def test_a_duplicate_clordid_on_a_first_attempt_is_an_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: error(400, "Duplicate clOrdID", "ValidationError")) as (
            rest,
            server,
        ):
            with pytest.raises(BitMEXAPIError, match="Duplicate clOrdID"):
                await rest.place_order(symbol="XBTUSD", orderQty=1, clOrdID="c")
    assert len(server.seen) == 1


async def test_connection_close_from_the_server_opens_a_new_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    close = Answer(body=[], headers=[("Connection", "close")])
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: close) as (rest, server):
            await rest.positions()
            await rest.positions()
    assert [s.connection for s in server.seen] == [0, 1]


async def test_the_secret_is_never_in_reprs_errors_or_logs(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.DEBUG)
    n = 0

    def script(seen: Seen) -> Answer | str:
        nonlocal n
        n += 1
        answers: list[Answer | str] = [
            error(429, "Rate limit exceeded", "RateLimitError", retry_after="1"),
            DROP,
            error(503, "The system is currently overloaded."),
            error(401, "Signature not valid."),
        ]
        return answers[min(n - 1, 3)]

    with trio.fail_after(TIMEOUT):
        async with scripted(script) as (rest, server):
            texts = [repr(rest), str(rest)]
            with pytest.raises(AuthenticationError) as caught:
                await rest.positions()
            texts += [repr(caught.value), str(caught.value), repr(caught.value.request)]
    assert len(server.seen) == 4
    texts += [record.getMessage() for record in caplog.records]
    assert any("overloaded" in text for text in texts)  # the logs did say something
    signatures = {s.headers["api-signature"] for s in server.seen}
    for text in texts:
        assert SAMPLE_SECRET not in text
        assert not any(signature in text for signature in signatures)


async def test_an_answer_that_is_not_json_is_an_error_with_its_text(
    autojump_clock: trio.testing.MockClock,
) -> None:
    page = Answer(502, b"<html>Bad Gateway</html>", [("Content-Type", "text/html")])
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: page) as (rest, _):
            with pytest.raises(BitMEXAPIError) as caught:
                await rest.positions()
    assert caught.value.status == 502 and "Bad Gateway" in caught.value.message
