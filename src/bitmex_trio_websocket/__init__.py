"""A fast, correct, self-healing BitMEX realtime client for trio, with a local BitMEX emulator.

```python
from bitmex_trio_websocket import open_bitmex_websocket

async with open_bitmex_websocket("mainnet") as bws:
    async with aclosing(bws.listen("instrument", "XBTUSD")) as rows:
        async for row in rows: ...
```
"""

from ._auth import Credentials
from ._client import NETWORKS, BitMEXWebsocket, open_bitmex_websocket
from ._events import Disconnected, Event, LifecycleEvent, Reconnected, Resyncing
from ._exceptions import (
    AuthenticationError,
    BitMEXAPIError,
    BitMEXError,
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DeadMansSwitchError,
    ExchangeClosedError,
    HandshakeError,
    LocalProtocolError,
    Overloaded,
    ProtocolError,
    RateLimited,
    RemoteProtocolError,
    ReplayInterrupted,
    ReplayRefused,
    ReplaySourceError,
    SubscriptionError,
)
from ._replay import BitMEXReplay, ReplayStats, open_bitmex_replay
from ._rest import BitMEXRest, open_bitmex_rest
from ._routing import ConnectionStats
from ._storage import ApplyResult, BookSide, Change, OrderBook, Storage, Violation
from ._version import __version__

__all__ = [
    "NETWORKS",
    "ApplyResult",
    "AuthenticationError",
    "BitMEXAPIError",
    "BitMEXError",
    "BitMEXReplay",
    "BitMEXRest",
    "BitMEXWebsocket",
    "BookSide",
    "Change",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionStats",
    "ConnectionTimeout",
    "Credentials",
    "DeadMansSwitchError",
    "Disconnected",
    "ExchangeClosedError",
    "Event",
    "HandshakeError",
    "LifecycleEvent",
    "LocalProtocolError",
    "OrderBook",
    "Overloaded",
    "ProtocolError",
    "RateLimited",
    "Reconnected",
    "RemoteProtocolError",
    "ReplayInterrupted",
    "ReplayRefused",
    "ReplaySourceError",
    "ReplayStats",
    "Resyncing",
    "Storage",
    "SubscriptionError",
    "Violation",
    "__version__",
    "open_bitmex_replay",
    "open_bitmex_rest",
    "open_bitmex_websocket",
]
