"""A local BitMEX realtime emulator: synthetic market or replayed recording, with fault injection.

Theory of operation: ``open_emulator`` runs a websocket server that speaks BitMEX's realtime
protocol (built on trio-websocket's server side and ``_protocol`` in the server role), fed either
by a deterministic synthetic ``Market`` or by a recording. It listens on ``127.0.0.1`` and a free
port by default (``emulator.url``) and can also be reached in memory
(``emulator.open_memory_websocket()``), which makes virtual-time tests with ``autojump_clock``
possible. Faults (drops, closes, stalls, malformed frames, refused handshakes, failed auth,
delayed acks, deltas before partials) are scripted per connection and logged by kind.

::

    from bitmex_trio_websocket.emulator import open_emulator

    async with open_emulator(seed=1) as emulator:
        async with open_bitmex_websocket(emulator.url) as bws:
            ...

The default account's credentials are ``DEFAULT_API_KEY`` / ``DEFAULT_API_SECRET``.
"""

from ._connection import EmulatorConnection, Subscription
from ._faults import (
    CONNECTION_FAULTS,
    HANDSHAKE_FAULTS,
    RANDOM_FAULT_KINDS,
    FaultKind,
    FaultRecord,
    RandomFaults,
    ScheduledFault,
)
from ._handshake import DEFAULT_API_KEY, DEFAULT_API_SECRET
from ._replay import RecordedFrame, Recording, load_recording, parse_recording
from ._server import Emulator, open_emulator
from .market import DEFAULT_ACCOUNT, Delta, Market, Snapshot

__all__ = [
    "CONNECTION_FAULTS",
    "DEFAULT_ACCOUNT",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "HANDSHAKE_FAULTS",
    "RANDOM_FAULT_KINDS",
    "Delta",
    "Emulator",
    "EmulatorConnection",
    "FaultKind",
    "FaultRecord",
    "Market",
    "RandomFaults",
    "RecordedFrame",
    "Recording",
    "ScheduledFault",
    "Snapshot",
    "Subscription",
    "load_recording",
    "open_emulator",
    "parse_recording",
]
