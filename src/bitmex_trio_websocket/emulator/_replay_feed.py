"""Serving a recording to one session: its subscribed topics' frames, merged in recorded order.

Theory of operation: each subscribed topic is an iterator over its recorded frames
(``Recording.topic_frames``, which starts at the topic's partial). ``ReplayFeed`` keeps one heap
entry per topic, keyed by the frame's index in the recording, so a session subscribed to several
topics gets their frames interleaved exactly as they were recorded. One task (``run``) pops the
next frame and queues it with the session's paced send, which waits while the connection's queue
is more than half full: replaying as fast as possible is paced by the client instead of
overflowing it. With ``speed > 0`` each frame is also held until its recorded time, scaled, has
come (trio's clock, so it is virtual time under ``autojump_clock``); a frame already due goes at
once, without a checkpoint.

A topic with nothing recorded gets an empty partial at once (with the recording's keys for the
table, or BitMEX's), so its client is not left waiting. Unsubscribing makes the subscription
inactive; the feed then skips its entry.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import trio

from ._replay import RecordedFrame, Recording
from ._session import Subscription
from ._texts import FALLBACK_KEYS

__all__ = ["ReplayFeed"]

_Entry = tuple[int, int, RecordedFrame, Iterator[RecordedFrame], Subscription]


class ReplayFeed:
    """The recorded frames of one session's topics; see the module docstring.

    ``send`` queues a frame at once (for empty partials); ``send_paced`` queues one, waiting
    while the connection is behind.
    """

    def __init__(
        self,
        recording: Recording,
        speed: float,
        send: Callable[[str], None],
        send_paced: Callable[[str], Awaitable[None]],
    ) -> None:
        self._recording = recording
        self._speed = speed
        self._send = send
        self._send_paced = send_paced
        self._heap: list[_Entry] = []
        self._wakeup = trio.Event()
        self._sequence = 0
        self._origin: tuple[float, float] | None = None  # (trio time, recorded t) of frame 1
        self._scope = trio.CancelScope()

    def start(self, sub: Subscription) -> None:
        """Begin replaying ``sub``'s topic (right after its ack was queued)."""
        recording = self._recording
        if not recording.has_partial(sub.table, sub.symbol):
            # Nothing recorded for this topic: an empty partial, so the client is not left waiting.
            filt: dict[str, Any] = {} if sub.account is None else {"account": sub.account}
            if sub.symbol is not None:
                filt["symbol"] = sub.symbol
            keys = recording.keys_of(sub.table) or FALLBACK_KEYS.get(sub.table, [])
            message = {"table": sub.table, "action": "partial", "keys": keys}
            self._send(orjson.dumps({**message, "types": {}, "filter": filt, "data": []}).decode())
            return
        frames = recording.topic_frames(sub.table, sub.symbol)
        first = next(frames, None)
        if first is not None:
            self._sequence += 1
            heapq.heappush(self._heap, (first.index, self._sequence, first, frames, sub))
            self._wakeup.set()

    def stop(self) -> None:
        """End ``run`` (the session ended)."""
        self._scope.cancel()

    async def run(self) -> None:
        """Queue frames until stopped (waits while no topic has frames left)."""
        heap = self._heap
        speed = self._speed
        with self._scope:
            while True:
                if not heap:
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                    continue
                _, sequence, frame, frames, sub = heapq.heappop(heap)
                if not sub.active:
                    continue
                if speed > 0:
                    if self._origin is None:
                        self._origin = (trio.current_time(), frame.t)
                    start, t0 = self._origin
                    due = start + max(0.0, frame.t - t0) / speed
                    if due > trio.current_time():  # a frame already due goes at once (no yield)
                        await trio.sleep_until(due)
                if not sub.active:  # unsubscribed while we waited
                    continue
                await self._send_paced(frame.text)
                following = next(frames, None)
                if following is not None and sub.active:
                    heapq.heappush(heap, (following.index, sequence, following, frames, sub))
