"""The REST client against the emulator's BitMEX REST API, in memory (and once over TCP)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from bitmex_trio_websocket import (
    AuthenticationError,
    BitMEXAPIError,
    BitMEXRest,
    ExchangeClosedError,
    Overloaded,
    RateLimited,
    open_bitmex_rest,
)
from bitmex_trio_websocket._rest import _client as rest_client
from bitmex_trio_websocket.emulator import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    Emulator,
    FaultKind,
    open_emulator,
)
from bitmex_trio_websocket.emulator.rest import RestLimits

TIMEOUT = 60
BASE = "http://emulator/api/v1"
EPOCH = 1_767_225_600.0  # 2026-01-01


def wall() -> float:
    """One wall clock for the emulator and the client, running on trio's (virtual) clock, so
    the emulator's rate-limit buckets refill while the client waits in virtual time."""
    return EPOCH + trio.current_time()


@asynccontextmanager
async def emulated(
    **options: Any,
) -> AsyncIterator[tuple[BitMEXRest, Emulator]]:
    limits = options.pop("rest_limits", RestLimits())
    options.setdefault("clock", wall)
    async with open_emulator(
        listen=False, max_events=0, seed=7, rest_limits=limits, clock=wall
    ) as emulator:
        async with open_bitmex_rest(
            BASE, DEFAULT_API_KEY, DEFAULT_API_SECRET,
            connect=emulator.connect_rest_in_memory, **options,
        ) as rest:  # fmt: skip
            yield rest, emulator


async def test_every_method_against_the_paper_exchange(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulated(cl_ord_id_prefix="t") as (rest, emulator):
            symbols = {row["symbol"] for row in await rest.instruments()}
            assert "XBTUSD" in symbols
            [xbt] = await rest.instruments("XBTUSD")
            book = await rest.order_book("XBTUSD", depth=3)
            asks = [row for row in book if row["side"] == "Sell"]
            bids = [row for row in book if row["side"] == "Buy"]
            assert len(asks) == len(bids) == 3 and asks[-1]["price"] > bids[0]["price"]
            best_bid = bids[0]["price"]

            assert (await rest.set_leverage("XBTUSD", 5))["leverage"] == 5
            placed = await rest.place_order(
                symbol="XBTUSD", side="Buy", orderQty=100, price=best_bid - 100
            )
            assert (placed["clOrdID"], placed["ordStatus"]) == ("t-1", "New")
            assert placed["orderID"] in {row["orderID"] for row in await rest.open_orders()}
            amended = await rest.amend_order(orderID=placed["orderID"], price=best_bid - 101)
            assert amended["price"] == best_bid - 101
            [canceled] = await rest.cancel_order(orderID=placed["orderID"])
            assert canceled["ordStatus"] == "Canceled"

            # A taker fills at once: an execution, a position.
            held = sum(p["currentQty"] for p in await rest.positions() if p["symbol"] == "XBTUSD")
            taker = await rest.place_order(symbol="XBTUSD", side="Sell", orderQty=100,
                                           ordType="Market")  # fmt: skip
            assert taker["ordStatus"] == "Filled"
            fills = await rest.executions("XBTUSD")
            assert taker["orderID"] in {row["orderID"] for row in fills}
            assert all(row["execType"] in ("Trade", "Funding", "Settlement") for row in fills)
            every = await rest.executions(every=True)
            assert len(every) >= len(fills)
            [position] = [p for p in await rest.positions() if p["symbol"] == "XBTUSD"]
            assert position["currentQty"] == held - 100

            resting = await rest.place_order(
                symbol="XBTUSD", side="Buy", orderQty=100, price=best_bid - 500
            )
            canceled_all = await rest.cancel_all(symbol="XBTUSD")
            assert resting["orderID"] in {row["orderID"] for row in canceled_all}
            assert [o for o in await rest.open_orders("XBTUSD")] == []

            armed = await rest.cancel_all_after(60_000)
            assert armed["cancelTime"] != 0
            assert emulator.dead_mans_switch_deadline(100001) is not None
            await rest.cancel_all_after(0)

            wallet = await rest.wallet()
            margin = await rest.margin()
            assert wallet["currency"] == margin["currency"] == "XBt"
            assert xbt["symbol"] == "XBTUSD"
            assert rest.rate_limit.limit == 120 and rest.rate_limit.remaining is not None
            assert rest.connections == 1


async def test_a_bad_key_is_an_authentication_error(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, max_events=0) as emulator:
            async with open_bitmex_rest(
                BASE, "no-such-key", "whatever", connect=emulator.connect_rest_in_memory
            ) as rest:
                with pytest.raises(AuthenticationError) as caught:
                    await rest.positions()
                async with open_bitmex_rest(
                    BASE, DEFAULT_API_KEY, "wrong-secret", connect=emulator.connect_rest_in_memory
                ) as wrong:
                    with pytest.raises(AuthenticationError) as bad_signature:
                        await wrong.wallet()
    assert (caught.value.status, caught.value.message) == (401, "Invalid API Key.")
    assert bad_signature.value.message == "Signature not valid."
    assert "wrong-secret" not in repr(bad_signature.value) + str(bad_signature.value)


async def test_an_expired_signature_from_a_wrong_clock_is_400(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulated(clock=lambda: 1_000_000_000.0) as (rest, _):
            with pytest.raises(BitMEXAPIError) as caught:
                await rest.wallet()
    assert caught.value.status == 400 and "expired" in caught.value.message


async def test_404_for_an_unknown_order_and_route(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulated() as (rest, _):
            with pytest.raises(BitMEXAPIError) as unknown_order:
                await rest.cancel_order(orderID="00000000-0000-0000-0000-000000000000")
            with pytest.raises(BitMEXAPIError) as unknown_route:
                await rest.request("GET", "/no/such/route")
    assert unknown_order.value.status == unknown_route.value.status == 404
    assert unknown_route.value.name == "HTTPError"


async def test_the_client_waits_for_a_token_instead_of_being_refused(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bitmex_trio_websocket.rest")
    # 6 a minute: after 6 requests the bucket is empty and refills one token every 10 s.
    with trio.fail_after(TIMEOUT):
        async with emulated(rest_limits=RestLimits(per_minute=6)) as (rest, _):
            start = trio.current_time()
            for _ in range(9):
                await rest.wallet()
            elapsed = trio.current_time() - start
    assert 30.0 <= elapsed <= 31.0  # three waits of 10 s...
    assert [r.getMessage() for r in caplog.records] == []  # ...and not one 429 to wait for
    assert rest.rate_limit.limit == 6


async def test_429_from_a_shared_key_waits_retry_after_then_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Another program using the same key drains the bucket behind the client's back.
    with trio.fail_after(TIMEOUT):
        async with emulated(rest_limits=RestLimits(per_minute=2)) as (rest, emulator):
            await rest.wallet()  # 1 left, the client knows
            async with open_bitmex_rest(
                BASE, DEFAULT_API_KEY, DEFAULT_API_SECRET,
                connect=emulator.connect_rest_in_memory, clock=wall,
            ) as other:  # fmt: skip
                await other.wallet()  # 0 left, the client does not know
            start = trio.current_time()
            assert (await rest.wallet())["currency"] == "XBt"  # 429, Retry-After: 30, retried
            waited = trio.current_time() - start
            async with open_bitmex_rest(
                BASE, DEFAULT_API_KEY, DEFAULT_API_SECRET,
                connect=emulator.connect_rest_in_memory, retries=0, clock=wall,
            ) as impatient:  # fmt: skip
                with pytest.raises(RateLimited) as caught:
                    await impatient.wallet()
    assert 30.0 <= waited <= 31.0
    assert caught.value.status == 429 and caught.value.retry_after == 30.0


async def test_503_is_retried_for_an_order_with_clordid_and_raised_for_an_amend(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulated() as (rest, emulator):
            [bid] = [r for r in await rest.order_book("XBTUSD", depth=1) if r["side"] == "Buy"]
            emulator.overload_next_requests(1)
            start = trio.current_time()
            placed = await rest.place_order(
                symbol="XBTUSD", side="Buy", orderQty=100, price=bid["price"] - 50
            )
            assert trio.current_time() - start >= 0.5
            assert [o["orderID"] for o in await rest.open_orders()].count(placed["orderID"]) == 1
            emulator.overload_next_requests(1)
            with pytest.raises(Overloaded) as caught:
                await rest.amend_order(orderID=placed["orderID"], price=bid["price"] - 60)
            [still] = [o for o in await rest.open_orders() if o["orderID"] == placed["orderID"]]
            assert still["price"] == bid["price"] - 50
            emulator.overload_next_requests(10)
            with pytest.raises(Overloaded):
                await rest.wallet()  # safe, but shed 4 times (3 retries)
            emulator.overload_next_requests(0)
            shed = emulator.fault_counts()[FaultKind.REST_OVERLOAD]
    assert caught.value.status == 503 and "overloaded" in caught.value.message
    assert shed == 1 + 1 + 4


async def test_a_dropped_idle_connection_is_replaced_before_the_next_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulated() as (rest, emulator):
            [bid] = [r for r in await rest.order_book("XBTUSD", depth=1) if r["side"] == "Buy"]
            placed = await rest.place_order(symbol="XBTUSD", side="Buy", orderQty=100,
                                            price=bid["price"] - 50)  # fmt: skip
            assert emulator.drop_rest_connections() == 1
            await trio.sleep(0.1)
            # An amend is not safe to repeat, yet it works: the drop was seen while idle.
            amended = await rest.amend_order(orderID=placed["orderID"], price=bid["price"] - 51)
            assert amended["price"] == bid["price"] - 51
            assert rest.connections == 2
            assert len(emulator.rest_connections) == 1


async def test_idle_keep_alive_expiry_by_the_server_is_harmless(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        async with open_emulator(listen=False, max_events=0, keep_alive=90.0) as emulator:
            async with open_bitmex_rest(
                BASE, DEFAULT_API_KEY, DEFAULT_API_SECRET, connect=emulator.connect_rest_in_memory
            ) as rest:
                await rest.wallet()
                await trio.sleep(120)  # the emulator closes idle connections after 90 s
                assert emulator.rest_connections == []
                await rest.wallet()
                assert rest.connections == 2


async def test_over_tcp_with_a_real_socket() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_emulator(max_events=0, seed=3) as emulator:
            async with open_bitmex_rest(
                emulator.rest_url, DEFAULT_API_KEY, DEFAULT_API_SECRET
            ) as rest:
                [bid] = [r for r in await rest.order_book("XBTUSD", depth=1) if r["side"] == "Buy"]
                placed = await rest.place_order(symbol="XBTUSD", side="Buy", orderQty=100,
                                                price=bid["price"] - 50)  # fmt: skip
                assert placed["ordStatus"] == "New"
                assert emulator.drop_rest_connections() == 1
                # A read is safe to repeat: whether the client saw the drop before sending it or
                # only from the missing answer, it is served on a new connection.
                assert placed["orderID"] in {row["orderID"] for row in await rest.open_orders()}
                canceled = await rest.cancel_all()
                assert placed["orderID"] in {row["orderID"] for row in canceled}
                assert rest.connections == 2


@pytest.mark.parametrize("network", ["mainnet", "testnet"])
async def test_mainnet_and_testnet_name_the_closure(
    network: str, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    reached: list[tuple[str, str, int]] = []

    async def unreachable(scheme: str, host: str, port: int, context: object) -> trio.abc.Stream:
        reached.append((scheme, host, port))
        raise OSError("Name or service not known")  # what a resolver says now

    monkeypatch.setattr(rest_client, "open_stream", unreachable)
    with trio.fail_after(TIMEOUT), pytest.raises(ExchangeClosedError, match="2026-09-23"):
        async with open_bitmex_rest(network):
            pass
    host = "www.bitmex.com" if network == "mainnet" else "testnet.bitmex.com"
    assert reached == [("https", host, 443)]


async def test_other_urls_raise_the_network_error_itself(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    async def refused(*args: object) -> trio.abc.Stream:
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(rest_client, "open_stream", refused)
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionRefusedError):
        async with open_bitmex_rest("https://example.invalid/api/v1"):
            pass


def test_bad_arguments_are_value_errors() -> None:
    async def main() -> None:
        cases: list[tuple[str, dict[str, Any]]] = [
            ("wss://ws.bitmex.com/realtime", {}),
            ("mainnet", {"api_key": "k"}),
            ("mainnet", {"timeout": 0}),
            ("mainnet", {"retries": -1}),
            ("mainnet", {"cl_ord_id_prefix": "x" * 40}),
        ]
        for network, kwargs in cases:  # all refused before any connection is tried
            with pytest.raises(ValueError):
                async with open_bitmex_rest(network, **kwargs):
                    pass

    trio.run(main)
