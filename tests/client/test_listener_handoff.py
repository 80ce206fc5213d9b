"""A ``buffer=0`` listener hands over as a zero-size trio memory channel does.

With no room at all, a producer that found no consumer waiting waits for one; the consumer that
then comes takes the item at once. (Before this, the consumer slept beside the waiting producer
for ever: only a taken item woke a producer, and with no buffer none could be taken.)
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import trio
import trio.testing

from bitmex_trio_websocket import Change, open_bitmex_websocket
from bitmex_trio_websocket._routing import Listener, Router
from tests.support.scripted_server import ScriptedServer

URL = "wss://example.invalid/realtime"
TOPIC = ("trade", None)


def change(n: int) -> Change:
    return Change("trade", "insert", "XBTUSD", ({"size": n},))


async def test_a_consumer_coming_to_a_waiting_producer_takes_its_item(
    autojump_clock: trio.abc.Clock,
) -> None:
    router = Router()
    listener = Listener(TOPIC, 0, "block", False)
    router.add(listener)
    delivered: list[int] = []

    async def produce() -> None:
        for n in range(3):
            await router.deliver([listener], change(n))
            delivered.append(n)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await trio.testing.wait_all_tasks_blocked()
            assert delivered == [] and listener.blocked == 1  # nobody to hand it to
            taken = []
            for _ in range(3):
                item = await listener.next()
                assert isinstance(item, Change)
                taken.append(item.rows[0]["size"])
            assert taken == [0, 1, 2]
    assert delivered == [0, 1, 2]
    assert listener.blocked == 0 and listener.queued == 0


async def test_a_cancelled_consumer_leaves_the_producer_waiting_for_the_next(
    autojump_clock: trio.abc.Clock,
) -> None:
    listener = Listener(TOPIC, 0, "block", False)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.put, change(7))
            await trio.testing.wait_all_tasks_blocked()
            with trio.CancelScope() as scope:
                scope.cancel()
                await listener.next()  # cancelled at its checkpoint, before it waits
            assert scope.cancelled_caught and listener.blocked == 1
            item = await listener.next()
            assert isinstance(item, Change) and item.rows[0]["size"] == 7


async def test_an_unbuffered_events_listener_gets_a_change_the_reader_waited_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    def trade(size: int) -> dict[str, Any]:
        row = {"symbol": "XBTUSD", "size": size, "price": 1.0}
        return {"table": "trade", "action": "insert", "data": [row]}

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, keys={"trade": []})
            async with open_bitmex_websocket(URL, connect=server.connect) as bws:
                async with aclosing(bws.events("trade", buffer=0)) as events:
                    assert isinstance(await events.__anext__(), Change)  # the empty partial
                    await server.push(trade(1))
                    await trio.testing.wait_all_tasks_blocked()  # the reader waits for us
                    item = await events.__anext__()
                    assert isinstance(item, Change) and item.rows[0]["size"] == 1
                    await server.push(trade(2))
                    item = await events.__anext__()
                    assert isinstance(item, Change) and item.rows[0]["size"] == 2
            nursery.cancel_scope.cancel()
