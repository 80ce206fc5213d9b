"""A local BitMEX: realtime websocket and REST API, synthetic market or history, with faults.

Theory of operation: ``open_emulator`` runs a server that speaks BitMEX's realtime protocol and,
on the same port, its REST API (``/api/v1``: orders, positions, executions, wallet; paper
trading against the market), fed either by a deterministic synthetic ``Market``, by BitMEX's
history as a shared market (``history=``, a ``ReplayedMarket``), or by a recording replayed to
each session (``replay=``). It listens on ``127.0.0.1`` and a free port by default
(``emulator.url``, ``emulator.rest_url``) and can also be reached in memory
(``emulator.open_memory_websocket()``, ``connect=emulator.connect_in_memory`` for the client,
``emulator.connect_rest_in_memory()`` for HTTP), which makes virtual-time tests with
``autojump_clock`` possible. Faults (drops, closes, stalls, malformed frames, refused handshakes,
failed auth, delayed acks, deltas before partials, an ignored ``cancelAllAfter``, overloaded and
dropped REST connections) are scripted per connection and logged by kind.

::

    from bitmex_trio_websocket.emulator import open_emulator

    async with open_emulator(seed=1) as emulator:
        async with open_bitmex_websocket(emulator.url) as bws:
            ...

The default account's credentials are ``DEFAULT_API_KEY`` / ``DEFAULT_API_SECRET``.

Layout, from the socket inward (imports point down this list, never up):

* ``_open``: ``open_emulator`` (options, the market and hub built, the tasks run); ``_server``:
  ``Emulator`` (listener, connections, the public fault API); ``_pump``: the market pump;
* ``_http``: the first request of a connection says websocket or HTTP; HTTP/1.1 keep-alive
  serving of the REST app (``rest``, sans-IO) through the hub;
* ``_connection``: one connection's tasks (reader, command worker, sender, faults), which reach
  the server only through ``ConnectionHost``, implemented by ``_hub.Hub`` (routing, partials,
  credentials, dead man's switch timers, the fault log);
* ``_session``: the protocol, sans-IO (commands in, replies out); ``_routing``: fan-out;
* ``_handshake`` (upgrade decisions, API keys), ``_multiplex`` (``/realtimemd``),
  ``_transport`` (outgoing queue, fault-injecting stream), ``_replay``/``_replay_feed``
  (recordings), ``_faults``, ``_texts``, ``_limits`` (BitMEX's in-band 429/503/error limits),
  ``_json`` (BitMEX's float spelling);
* ``market``: the synthetic market and the replayed one, sans-IO (books and trades, order flow,
  instruments and funding, schemas), both ``Venue``s over the paper exchange (``exchange``).
"""

from ._connection import EmulatorConnection
from ._faults import RANDOM_FAULT_KINDS, FaultKind, FaultRecord, RandomFaults, ScheduledFault
from ._handshake import DEFAULT_API_KEY, DEFAULT_API_SECRET
from ._limits import Limits
from ._open import open_emulator
from ._replay import RecordedFrame, Recording, load_recording, parse_recording
from ._server import Emulator
from .market import DEFAULT_ACCOUNT, SCENARIOS, Market, Scenario

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "RANDOM_FAULT_KINDS",
    "Emulator",
    "EmulatorConnection",
    "FaultKind",
    "FaultRecord",
    "Limits",
    "Market",
    "RandomFaults",
    "RecordedFrame",
    "SCENARIOS",
    "Scenario",
    "Recording",
    "ScheduledFault",
    "load_recording",
    "open_emulator",
    "parse_recording",
]
