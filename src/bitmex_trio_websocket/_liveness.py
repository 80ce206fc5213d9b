"""When to ping, and when a connection is dead. Sans-IO: every time is passed in.

Theory of operation
-------------------
BitMEX answers the text ``ping`` with ``pong``, in order with its replies to our other commands.
A pong is therefore the one proof that the server still *hears* us: a busy feed proves only the
server-to-client direction. When the bytes we send are lost (a deaf server, a half-broken path, a
middlebox) the feed keeps arriving while our subscriptions, commands and dead man's switch go
nowhere, so the rules never take "data arrived" as an answer to a ping:

1. **Regular pings.** One ping at a time, sent ``interval`` after the previous one was answered
   (or after the session started), whatever the feed is doing.
2. **An allowance per ping.** A ping must be answered within ``timeout`` plus the round trip the
   previous ping took (capped at ``max_round_trip``; rule 4 says which part of it). Like TCP's
   retransmission timer, the allowance follows what the link measurably needs: after a large
   partial over a slow link the server's queue drains for a while, and each pong waits behind it.
3. **Excused time.** The allowance does not run out while the reader is blocked handing rows to a
   full listener (backpressure: the pong may sit unread in the socket), nor while the bytes of a
   *large* frame in progress (``LARGE_FRAME`` bytes and more since the last complete frame) keep
   arriving at ``min_progress_rate`` or more: an honest slow link carrying a large partial. On a
   half-dead connection the feed's small frames complete all the time, however finely the network
   splits them, and excuse nothing; a hostile trickle below the rate excuses nothing either.
   Excused time is added to the ping's allowance, and so is the whole transfer time X of a large
   frame that was still arriving after the ping was sent (the longest such, so that a shorter one
   after it never moves the deadline earlier): the pong waits behind what the server
   queued during that transfer (at most X seconds of the feed, plus smaller partials), which
   drains in less than X more over a link that carries the feed with room to spare.
4. **Queueing is not the link's round trip.** The link's own round trip is the smallest of the
   last ``ROUND_TRIP_WINDOW`` round trips, each less what rule 3 credited to a large frame in it
   (a windowed minimum, as TCP's BBR estimates the path's delay). The rest of the latest round
   trip is *drain*: time the pong sat in a queue, behind a large frame or behind a feed faster
   than the link (a throttled link), which tells how long that queue may still hold the next
   pong, not how long the link needs. Rule 2 always carries the link's own round trip; the drain
   only while its queue can still be there. It lapses for good once the link delivers faster
   than it did while the pong waited (more bytes since the read before the pong than that wait's
   bytes per second times the time since, plus ``DRAIN_SLACK`` seconds' worth): a queue drains
   no faster than the link carries it, so a link that got faster has emptied it. And it never
   runs past ``timeout`` after the last read: a draining queue arrives without pause, a stalled
   link is no drain. The window is long enough (several pings) to outlast a queueing episode,
   and short enough that a link whose own delay really grew is believed after a few pings.

So a connection that stops hearing us is declared dead within
``interval + timeout + min(last round trip, max_round_trip)`` of the loss (10 s and a round trip
with the defaults), where the round trip is the link's own (rule 4) unless a queue (behind a
large frame, or a feed faster than the link) is still visibly draining at the link's rate,
while a slow but honest link completes any partial it carries at the rate, and the queue behind
it, however long it takes to drain.

``pings_sent`` counts pings and ``pings_answered`` is the number of the latest answered one: a
command sent while ``pings_sent == k`` has been processed by the server once ``pings_answered > k``
(in-order replies), which lets a caller tell "no reply is coming" from "the reply is late".
"""

from __future__ import annotations

import enum
import math
from collections import deque
from typing import Final

__all__ = [
    "DRAIN_SLACK",
    "LARGE_FRAME",
    "MAX_ROUND_TRIP",
    "MIN_PROGRESS_RATE",
    "ROUND_TRIP_WINDOW",
    "Liveness",
    "LivenessAction",
]

# Bytes per second of a frame in progress that count as life (a hostile trickle sends far less;
# any link that can carry BitMEX's feed at all carries far more).
MIN_PROGRESS_RATE: Final = 1024.0
# A frame in progress counts once this many of its bytes have arrived: partials are hundreds of
# KB, while the feed's frames are a few KB at most (so a feed split into tiny reads never counts).
LARGE_FRAME: Final = 32 * 1024
# The previous round trip is added to a ping's allowance up to this many seconds.
MAX_ROUND_TRIP: Final = 30.0
# Seconds of the drain's rate a read may run ahead of it (reads are chunky) before the link counts
# as faster than the one the queue drained over (rule 4).
DRAIN_SLACK: Final = 1.0
# The link's own round trip is the smallest of this many latest round trips (rule 4): with pings
# every 5 s, about 40 s of them, longer than a link stays throttled below the feed and lives.
ROUND_TRIP_WINDOW: Final = 8


class LivenessAction(enum.Enum):
    """What ``Liveness.due`` says happens at the time it returns."""

    PING = "ping"
    DEAD = "dead"


class Liveness:
    """Tracks pings, pongs and reads of one connection; ``due(now)`` says what comes next."""

    __slots__ = (
        "_blocked",
        "_blocked_at",
        "_drain",
        "_drain_mark_at",
        "_drain_mark_bytes",
        "_drain_rate",
        "_episode_credit",
        "_episode_length",
        "_episode_until",
        "_excused",
        "_frame_bytes",
        "_frame_started_at",
        "_last_read_at",
        "_max_round_trip",
        "_min_rate",
        "_prev_read_at",
        "_prev_received",
        "_progress_at",
        "_progress_bytes",
        "_progress_excused",
        "_progress_mark",
        "_received",
        "_received_at_ping",
        "_round_trip",
        "_timeout",
        "_trips",
        "_unblocked_at",
        "interval",
        "last_pong_at",
        "ping_sent_at",
        "pings_answered",
        "pings_sent",
    )

    def __init__(
        self,
        now: float,
        *,
        interval: float,
        timeout: float,
        min_progress_rate: float = MIN_PROGRESS_RATE,
        max_round_trip: float = MAX_ROUND_TRIP,
    ) -> None:
        if not (interval > 0 and timeout > 0 and min_progress_rate > 0 and max_round_trip >= 0):
            raise ValueError("interval, timeout and min_progress_rate must be positive")
        self.interval = interval
        self._timeout = timeout
        self._min_rate = min_progress_rate
        self._max_round_trip = max_round_trip
        self.ping_sent_at: float | None = None  # the outstanding ping, if any
        self.last_pong_at = now  # pings are scheduled from here
        self.pings_sent = 0
        self.pings_answered = 0
        self._round_trip = 0.0  # the link's own round trip (rule 4)
        self._trips: deque[float] = deque(maxlen=ROUND_TRIP_WINDOW)  # ... the latest, less credit
        self._drain = 0.0  # seconds of the last round trip spent in a queue (rule 4)
        self._drain_rate = 0.0  # bytes per second the link carried during that round trip
        self._drain_mark_at = now  # the read before its pong ...
        self._drain_mark_bytes = 0  # ... and the bytes received by then
        self._received = 0  # bytes of every read so far
        self._received_at_ping = 0
        self._last_read_at = now
        self._prev_read_at = now  # the read before the latest one ...
        self._prev_received = 0  # ... and the bytes received by then
        self._blocked = False
        self._blocked_at = -math.inf
        self._unblocked_at = -math.inf
        self._excused = 0.0  # seconds of the outstanding ping's wait excused so far
        self._progress_excused = 0.0  # ... of them by a large frame's progress
        self._progress_at = -math.inf  # last read that counted as progress of a frame
        self._progress_mark = now  # start of the current progress measurement
        self._progress_bytes = 0
        self._frame_bytes = 0  # bytes since the last read that completed a frame
        self._frame_started_at = now  # ... and when that read was
        self._episode_length = 0.0  # transfer time so far of the latest large frame
        self._episode_until = -math.inf  # when that large frame last made progress
        # The longest transfer time of a large frame still arriving after the outstanding ping
        # was sent (rule 3): the longest, so a shorter frame after it never shrinks the allowance.
        self._episode_credit = 0.0

    # ------------------------------------------------------------------ events

    def ping_sent(self, now: float) -> None:
        """Record a ping; call it only when ``due()`` says PING (one ping at a time)."""
        if self.ping_sent_at is not None:
            raise RuntimeError("a ping is already outstanding")
        self.ping_sent_at = now
        self.pings_sent += 1
        self._excused = 0.0
        self._progress_excused = 0.0
        self._received_at_ping = self._received
        self._episode_credit = self._episode_length if self._episode_until >= now else 0.0

    def pong_received(self, now: float) -> float | None:
        """Record a pong; returns the round trip of the ping it answers (``None``: unsolicited)."""
        sent = self.ping_sent_at
        if sent is None:
            return None
        self.ping_sent_at = None
        self.last_pong_at = now
        self.pings_answered = self.pings_sent
        trip = now - sent
        # Rule 4: the link's own round trip is the window's least, credit taken out; the rest is
        # drain (the credit included).
        credit = min(max(self._progress_excused, self._episode_credit), trip)
        self._trips.append(trip - credit)
        self._round_trip = min(self._trips)
        drain = trip - self._round_trip
        self._drain = drain
        if drain:
            self._drain_rate = (self._received - self._received_at_ping) / trip
            # Measured from the read before the pong's: the pong's own read may be the burst.
            self._drain_mark_at = self._prev_read_at
            self._drain_mark_bytes = self._prev_received
            self._check_drain(now)
        return trip

    def data_received(self, now: float, nbytes: int, frames: int) -> bool:
        """One read: ``nbytes`` arrived and completed ``frames`` messages.

        Returns ``True`` when the read ended a drain (rule 4): ``due()`` may then be earlier than
        it was, so a caller sleeping until the old deadline should ask again."""
        self._prev_read_at = self._last_read_at
        self._prev_received = self._received
        self._last_read_at = now
        self._received += nbytes
        lapsed = False
        if self._drain:
            lapsed = self._check_drain(now)
        if frames:
            # Complete frames are no answer to a ping; what follows them starts a new measure.
            self._progress_mark = now
            self._progress_bytes = 0
            self._frame_bytes = 0
            self._frame_started_at = now
            return lapsed
        self._progress_bytes += nbytes
        self._frame_bytes += nbytes
        if self._frame_bytes >= LARGE_FRAME and self._progress_bytes >= self._min_rate * (
            now - self._progress_mark
        ):
            self._progress_excused += self._excuse(self._progress_mark, now)
            self._episode_length = now - self._frame_started_at
            self._episode_until = now
            if self.ping_sent_at is not None:
                self._episode_credit = max(self._episode_credit, self._episode_length)
            self._progress_at = now
            self._progress_mark = now
            self._progress_bytes = 0
        return lapsed

    def blocked(self, now: float) -> None:
        """The reader waits for a full listener: nothing it has not read can be held against us."""
        self._blocked = True
        self._blocked_at = now

    def unblocked(self, now: float) -> None:
        self._blocked = False
        self._unblocked_at = now
        self._excuse(self._blocked_at, now)

    def _excuse(self, start: float, end: float) -> float:
        """Excuse the outstanding ping's wait from ``start`` to ``end``; returns the seconds."""
        sent = self.ping_sent_at
        if sent is None or end <= max(start, sent):
            return 0.0
        seconds = end - max(start, sent)
        self._excused += seconds
        return seconds

    def _check_drain(self, now: float) -> bool:
        """Rule 4: the drain lapses once the link delivers faster than it did while queued."""
        since = now - self._drain_mark_at + DRAIN_SLACK
        if self._received - self._drain_mark_bytes > self._drain_rate * since:
            self._drain = 0.0
            return True
        return False

    # ------------------------------------------------------------------ decisions

    @property
    def excused(self) -> float:
        """Seconds of the outstanding ping's wait excused so far (progress, backpressure)."""
        return self._excused

    @property
    def allowance(self) -> float:
        """How long the outstanding (or next) ping may take before the connection is dead
        (the last round trip and any drain still carried; excused time comes on top)."""
        return self._timeout + min(self._round_trip + self._drain, self._max_round_trip)

    @property
    def round_trip(self) -> float:
        """The link's own round trip (rule 4): the least of the latest, less large frames'."""
        return self._round_trip

    @property
    def drain(self) -> float:
        """Seconds of drain (rule 4) still carried to the outstanding or next ping."""
        return self._drain

    def due(self) -> tuple[LivenessAction, float]:
        """The next action and when it is due (``math.inf``: not before something happens)."""
        sent = self.ping_sent_at
        if sent is None:
            return LivenessAction.PING, self.last_pong_at + self.interval
        if self._blocked:
            return LivenessAction.DEAD, math.inf
        # A large frame still arriving after the ping adds its whole transfer time (rule 3).
        extra = max(self._excused, self._episode_credit)
        last_excuse = max(self._progress_at, self._unblocked_at) + self._timeout
        deadline = sent + self.allowance + extra
        if self._drain:
            # A draining queue arrives without pause: the drain ends a timeout after the last read.
            bare = sent + self._timeout + min(self._round_trip, self._max_round_trip) + extra
            deadline = max(bare, min(deadline, self._last_read_at + self._timeout))
        return LivenessAction.DEAD, max(deadline, last_excuse)
