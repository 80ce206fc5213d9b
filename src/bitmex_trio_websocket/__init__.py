"""A fast, correct, self-healing BitMEX realtime client for trio, with a local BitMEX emulator."""

from ._auth import Credentials
from ._exceptions import (
    AuthenticationError,
    BitMEXAPIError,
    BitMEXError,
    ConnectionTimeout,
    DeadMansSwitchError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    SubscriptionError,
)
from ._version import __version__

__all__ = [
    "AuthenticationError",
    "BitMEXAPIError",
    "BitMEXError",
    "ConnectionTimeout",
    "Credentials",
    "DeadMansSwitchError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SubscriptionError",
    "__version__",
]
