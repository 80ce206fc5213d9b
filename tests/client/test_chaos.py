"""The chaos run at a small size: seeded random faults, then the store must be exact."""

from __future__ import annotations

import trio

from stress.chaos import run_chaos


async def test_client_rides_through_random_faults_and_ends_exact(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(3600):  # virtual seconds
        report = await run_chaos(25, seed=3, every_messages=150)
    assert sum(report.faults.values()) >= 25
    assert len(report.faults) >= 5  # several kinds, not one repeated
    assert report.reconnects >= 3
    assert report.mismatches == []
