"""Listener hand-out (``_routing``): the queue keeps a trio memory channel's semantics (bounds,
hand-over to a waiting consumer, drops, failure and end after the queued items, wake-ups,
cancellation) without a channel call per change."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from bitmex_trio_websocket import Change
from bitmex_trio_websocket._routing import Listener, Router

TOPIC = ("trade", None)


def change(n: int, symbol: str = "XBTUSD") -> Change:
    return Change("trade", "insert", symbol, ({"size": n, "symbol": symbol},))


async def drain(listener: Listener) -> list[int]:
    out = []
    while (item := await listener.next()) is not None:
        assert isinstance(item, Change)
        out.append(item.rows[0]["size"])
    return out


def test_a_full_listener_blocks_or_drops_and_counts() -> None:
    router = Router()
    block, drop = Listener(TOPIC, 2, "block", False), Listener(TOPIC, 2, "drop", False)
    router.add(drop)
    router.add(block)
    changes = tuple(change(n) for n in range(3))
    assert router.offer_changes("trade", changes[:2], 0) is None
    assert router.offer_changes("trade", changes, 2) == (2, [block])  # still owed the third
    assert (drop.queued, drop.dropped, block.queued) == (2, 1, 2)
    assert router.offer_changes("orderBookL2", changes, 0) is None  # nobody listens: no-op


async def test_a_waiting_consumer_is_handed_its_item_outside_the_buffer() -> None:
    listener = Listener(TOPIC, 1, "block", False)
    router = Router()
    router.add(listener)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            first: list[object] = []

            async def consume() -> None:
                first.append(await listener.next())

            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            # As a memory channel of size 1: one item to the waiting consumer, one buffered.
            assert router.offer([listener], change(0)) == -1
            assert router.offer([listener], change(1)) == -1
            assert listener.queued == 1
            assert router.offer([listener], change(2)) == 0
        assert isinstance(first[0], Change) and first[0].rows[0]["size"] == 0
        assert await drain_n(listener, 1) == [1]


async def drain_n(listener: Listener, n: int) -> list[int]:
    out = []
    for _ in range(n):
        item = await listener.next()
        assert isinstance(item, Change)
        out.append(item.rows[0]["size"])
    return out


async def test_buffer_zero_hands_over_only_to_a_waiting_consumer() -> None:
    listener = Listener(TOPIC, 0, "drop", False)
    router = Router()
    router.add(listener)
    assert router.offer([listener], change(0)) == -1 and listener.dropped == 1
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            got: list[object] = []

            async def consume() -> None:
                got.append(await listener.next())

            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            assert router.offer([listener], change(1)) == -1
            assert router.offer([listener], change(2)) == -1 and listener.dropped == 2
    assert isinstance(got[0], Change) and got[0].rows[0]["size"] == 1


async def test_queued_items_come_before_the_end_or_the_error() -> None:
    router = Router()
    finished, failed = Listener(TOPIC, 8, "block", False), Listener(TOPIC, 8, "block", False)
    router.add(finished)
    router.add(failed)
    router.offer_changes("trade", (change(0), change(1)), 0)
    finished.finish()
    failed.fail(ValueError("boom"))
    router.offer([finished, failed], change(2))  # closed: swallowed, never delivered
    with trio.fail_after(5):
        assert await drain(finished) == [0, 1]
        assert await drain_n(failed, 2) == [0, 1]
        with pytest.raises(ValueError, match="boom"):
            await failed.next()


async def test_a_blocked_producer_is_woken_by_the_first_item_taken(
    autojump_clock: trio.abc.Clock,
) -> None:
    router = Router()
    listener = Listener(TOPIC, 2, "block", False)
    router.add(listener)
    delivered = []

    async def produce() -> None:
        for n in range(6):
            await router.deliver([listener], change(n))
            delivered.append(n)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await trio.testing.wait_all_tasks_blocked()
            assert delivered == [0, 1] and listener.blocked == 1
            assert await drain_n(listener, 1) == [0]  # one taken: room for exactly one more
            await trio.sleep(1)
            assert delivered == [0, 1, 2] and listener.queued == 2
            assert await drain_n(listener, 5) == [1, 2, 3, 4, 5]
    assert listener.blocked == 0


async def test_cancelled_waits_leave_the_queue_consistent(
    autojump_clock: trio.abc.Clock,
) -> None:
    router = Router()
    listener = Listener(TOPIC, 1, "block", False)
    router.add(listener)
    with trio.fail_after(60):
        with trio.move_on_after(1):
            await listener.next()  # a consumer that gives up waiting
        assert listener.receiver is None
        assert router.offer([listener], change(0)) == -1 and listener.queued == 1
        with trio.move_on_after(1):
            await router.deliver([listener], change(1))  # a producer that gives up
        assert listener.blocked == 0 and listener.queued == 1
        assert await drain_n(listener, 1) == [0]
        listener.finish()
        assert await listener.next() is None


async def test_symbol_listeners_come_before_whole_table_listeners_and_wait_in_order() -> None:
    router = Router()
    narrow = Listener(("trade", "XBTUSD"), 1, "block", False)
    wide = Listener(TOPIC, 1, "block", False)
    other = Listener(("trade", "ETHUSD"), 4, "block", False)
    for listener in (wide, narrow, other):
        router.add(listener)
    changes = (change(0), change(1), change(2, "ETHUSD"))
    assert router.offer_changes("trade", changes, 0) == (1, [narrow, wide])
    assert (narrow.queued, wide.queued, other.queued) == (1, 1, 0)
    router.remove(narrow)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(router.route_rest, "trade", changes, (1, [wide]))
            await trio.testing.wait_all_tasks_blocked()
            assert await drain_n(wide, 3) == [0, 1, 2]
    assert await drain_n(other, 1) == [2]
