"""The history pump in data time under ``autojump_clock``: what other tasks see of its frames.

Under an autojumping ``MockClock`` the pump moves trio's clock itself (``_fast_forward``) instead
of sleeping until each frame. These tests hold it to what a sleeping pump gave: every frame
reaches a subscriber at its data time, a task waking between frames sees exactly the frames
before it, and ``wait_all_tasks_blocked`` still means "the clock has not moved".
"""

from __future__ import annotations

import datetime
import math
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import trio
import trio.testing

from bitmex_trio_websocket.emulator import Emulator, _fast_forward, open_emulator
from bitmex_trio_websocket.emulator.market._replayed import ReplayedMarket

from ..replay.helpers import write_slices
from ..support.history_frames import BOOK, INSTRUMENT, T0, level, msg

TIMEOUT = 60
T = TypeVar("T")
BOOK_META: dict[str, Any] = {"keys": ["symbol", "id", "side"], "types": {}}
FRAMES = 150


def history(tmp_path: Path) -> Path:
    """XBTUSD book updates at irregular data times: several at one time, some microseconds
    apart, some seconds apart."""
    rng = random.Random(5)
    frames = [
        (T0, msg("instrument", "partial", [INSTRUMENT], keys=["symbol"], filter={})),
        (T0, msg("orderBookL2", "partial", BOOK, **BOOK_META, filter={"symbol": "XBTUSD"})),
    ]
    t = T0 + 1.0
    for n in range(FRAMES):
        t += rng.choice([0.0, 0.0, 1e-6, 0.003, 0.02, 0.25, 1.7])
        update = level(4, "Buy", 100 + n, 99.5)
        frames.append((t, msg("orderBookL2", "update", [update])))
    return write_slices(tmp_path / "irregular.txt", frames)


def frame_times(path: Path) -> list[float]:
    """The data times of the update frames, as the emulator reads them (microseconds)."""
    times = []
    for line in path.read_text().splitlines():
        stamp, text = line.split(" ", 1)
        if '"update"' in text:
            times.append(_seconds(stamp))
    return times


def _seconds(stamp: str) -> float:
    moment = datetime.datetime.strptime(stamp[:26], "%Y-%m-%dT%H:%M:%S.%f")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


def venue_of(emulator: Emulator) -> ReplayedMarket:
    venue = emulator.venue
    assert isinstance(venue, ReplayedMarket)
    return venue


async def transcript(path: Path) -> list[tuple[str, Any]]:
    """What a subscriber, sleepers and an idle-waiter see while the history plays at speed 1."""
    seen: list[tuple[str, Any]] = []
    async with open_emulator(listen=False, history=path, speed=1.0) as emulator:
        venue = venue_of(emulator)
        origin = trio.current_time() - emulator.now()  # trio time = data time + origin

        async def subscriber(task_status: trio.TaskStatus[None]) -> None:
            async with emulator.open_memory_websocket() as ws:
                await ws.get_message()  # welcome
                await ws.send_message('{"op": "subscribe", "args": ["orderBookL2:XBTUSD"]}')
                await ws.get_message()  # the ack
                await ws.get_message()  # the partial
                task_status.started()
                while True:
                    message = orjson.loads(await ws.get_message())
                    at, now = trio.current_time(), emulator.now()
                    # As a backtest's sampler does: let the moment settle, then look. The clock
                    # must not have moved (and with it the next frame been stepped) meanwhile.
                    await trio.testing.wait_all_tasks_blocked()
                    assert trio.current_time() == at
                    sizes = [row["size"] for row in message["data"]]
                    seen.append(("rows", (at - origin, now, sizes, venue.frames)))

        async def sleeper(name: str, step: float) -> None:
            while True:
                await trio.sleep(step)
                await trio.testing.wait_all_tasks_blocked()
                seen.append((name, (trio.current_time() - origin, venue.frames)))

        async def idle_waiter() -> None:
            # Twice in a row: between the two, nothing may have moved (no clock jump, no frame).
            while True:
                await trio.sleep(0.011)
                await trio.testing.wait_all_tasks_blocked()
                before = (trio.current_time(), venue.frames)
                await trio.testing.wait_all_tasks_blocked()
                assert (trio.current_time(), venue.frames) == before
                seen.append(("idle", before[1]))

        async with trio.open_nursery() as nursery:
            await nursery.start(subscriber)
            nursery.start_soon(sleeper, "often", 0.007)
            nursery.start_soon(sleeper, "seldom", 0.5)
            nursery.start_soon(idle_waiter)
            await emulator.wait_still()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    return seen


async def test_frames_reach_subscribers_at_their_data_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = history(tmp_path)
    with trio.fail_after(TIMEOUT):
        seen = await transcript(path)
    rows = [value for kind, value in seen if kind == "rows"]
    times = frame_times(path)
    assert [sizes[0] for _, _, sizes, _ in rows] == [100 + n for n in range(FRAMES)]
    for (trio_at, data_at, _, frames), recorded in zip(rows, times, strict=True):
        assert data_at == pytest.approx(recorded, abs=1e-6)
        assert trio_at == pytest.approx(recorded, abs=1e-6)  # received when it was recorded
        assert frames == 2 + sum(1 for t in times if t <= recorded)  # none stepped since


async def test_a_task_waking_between_frames_sees_exactly_the_frames_before_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = history(tmp_path)
    with trio.fail_after(TIMEOUT):
        seen = await transcript(path)
    times = frame_times(path)
    partials = 2  # the instrument and book partials, stepped before anyone connects
    wakes = [value for kind, value in seen if kind in ("often", "seldom")]
    assert len(wakes) > 100
    for data_at, frames in wakes:
        assert frames == partials + sum(1 for t in times if t <= data_at + 1e-9)


def test_the_pump_fast_forwarding_sees_what_a_sleeping_pump_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = history(tmp_path)
    fast = by_kind(in_virtual_time(transcript, path))
    monkeypatch.setattr(_fast_forward.FastForward, "of_current_clock", lambda: None)
    slept = by_kind(in_virtual_time(transcript, path))
    assert fast == slept
    assert len(fast["idle"]) > 100


def in_virtual_time(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``fn(*args)`` in a run of its own on a fresh autojumping clock: two runs compared start
    at the same trio time, so their clocks go through the very same floats."""

    async def bounded() -> T:
        with trio.fail_after(TIMEOUT):
            return await fn(*args)

    return trio.run(bounded, clock=trio.testing.MockClock(autojump_threshold=0))


def by_kind(seen: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    """Each observer's own sequence (tasks woken at one moment run in either order)."""
    kinds: dict[str, list[Any]] = {}
    for kind, value in seen:
        kinds.setdefault(kind, []).append(value)
    return kinds


async def synthetic_transcript() -> dict[str, list[Any]]:
    """What a book subscriber and a sleeper see of 300 steps of the seeded synthetic market."""
    seen: list[tuple[str, Any]] = []
    async with open_emulator(
        listen=False, seed=3, rate=50.0, max_events=300, clock=lambda: T0
    ) as emulator:
        market = emulator.market
        start = trio.current_time()

        def since() -> float:
            return round(trio.current_time() - start, 9)

        async def subscriber(task_status: trio.TaskStatus[None]) -> None:
            async with emulator.open_memory_websocket() as ws:
                await ws.get_message()  # welcome
                await ws.send_message('{"op": "subscribe", "args": ["orderBookL2:XBTUSD"]}')
                await ws.get_message()  # the ack
                await ws.get_message()  # the partial
                task_status.started()
                while True:
                    text = await ws.get_message()
                    at, events = since(), market.events
                    await trio.testing.wait_all_tasks_blocked()
                    assert (since(), market.events) == (at, events)
                    seen.append(("rows", (at, events, text)))

        async def sleeper() -> None:
            while True:
                await trio.sleep(0.013)
                await trio.testing.wait_all_tasks_blocked()
                seen.append(("sleeper", (since(), market.events)))

        async with trio.open_nursery() as nursery:
            await nursery.start(subscriber)
            nursery.start_soon(sleeper)
            await emulator.wait_still()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    return by_kind(seen)


def test_the_synthetic_market_fast_forwarding_sees_what_a_sleeping_pump_saw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = in_virtual_time(synthetic_transcript)
    monkeypatch.setattr(_fast_forward.FastForward, "of_current_clock", lambda: None)
    slept = in_virtual_time(synthetic_transcript)
    assert fast == slept
    assert len(fast["rows"]) > 100 and len(fast["sleeper"]) > 100
    # The sleeper sees one step per 1/50 s so far (a wake at a step's very time: either).
    for at, events in fast["sleeper"]:
        steps = at * 50
        if abs(steps - round(steps)) > 1e-6:
            assert events == math.floor(steps)
