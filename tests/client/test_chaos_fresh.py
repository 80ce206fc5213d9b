"""The chaos harness's fresh comparison connection waits out refusals as a careful client would.

Faults armed for the next handshake or authentication outlive ``stop_random_faults``; the fresh
connection that the harness compares with must wait as the 429 asks and try again, not crash
(``python -m stress.chaos --faults 300 --seed 3`` once ended on such a 429)."""

from __future__ import annotations

import pytest
import trio

from bitmex_trio_websocket import ConnectionRejected, Storage, open_bitmex_websocket
from bitmex_trio_websocket.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, open_emulator
from stress.chaos import (
    FRESH_ATTEMPTS,
    TOPICS,
    URL,
    ChaosReport,
    _compare_with_fresh,
    _hold_after_partial,
)


async def test_the_fresh_connection_waits_out_armed_refusals(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(600):  # virtual seconds
        async with open_emulator(seed=3, listen=False, rate=50.0) as emulator:
            async with open_bitmex_websocket(
                URL, DEFAULT_API_KEY, DEFAULT_API_SECRET, connect=emulator.connect_in_memory
            ) as ours:
                async with trio.open_nursery() as nursery:
                    ready = [trio.Event() for _ in TOPICS]
                    for (table, symbol), event in zip(TOPICS, ready, strict=True):
                        nursery.start_soon(_hold_after_partial, ours, table, symbol, event)
                    for event in ready:
                        await event.wait()
                    emulator.stop_market()
                    await trio.sleep(5)  # the last changes reach our store
                    # Left armed by the fault plan: two refused upgrades, then a failed auth.
                    emulator.refuse_next_handshakes(2, retry_after=3)
                    emulator.fail_next_auth(1)
                    report = ChaosReport()
                    started = trio.current_time()
                    problems = await _compare_with_fresh(emulator, ours.storage, report, seed=3)
                    nursery.cancel_scope.cancel()
    assert report.fresh_refusals == [429, 429, 401]
    assert trio.current_time() - started >= 2 * 3.0  # each 429's Retry-After was honoured
    assert problems == []


async def test_a_refusal_that_never_ends_still_fails_the_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(3600):
        async with open_emulator(seed=3, listen=False, rate=50.0) as emulator:
            emulator.refuse_next_handshakes(FRESH_ATTEMPTS, retry_after=1)
            report = ChaosReport()
            with pytest.raises(ConnectionRejected) as refused:
                await _compare_with_fresh(emulator, Storage(), report, seed=3)
    assert refused.value.status_code == 429
    assert len(report.fresh_refusals) == FRESH_ATTEMPTS - 1
