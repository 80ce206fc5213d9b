"""BitMEX's network names, and what to say now that BitMEX is closed.

Theory of operation. ``mainnet`` and ``testnet`` keep their names and URLs (code written for the
2021 library names them), but BitMEX closed on 2026-09-23 04:00 UTC: its hosts no longer serve a
market. A first connection to them that fails is therefore reported as one
``ExchangeClosedError`` that says so and names what still speaks the protocol, instead of a
resolver or TLS traceback. Any other URL (the emulator, a recording served by it, tardis-machine,
a proxy) is used as given.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

__all__ = ["CLOSED_NOTICE", "NETWORKS", "is_closed_exchange", "resolve_network"]

NETWORKS: Final = {
    "mainnet": "wss://ws.bitmex.com/realtime",
    "testnet": "wss://ws.testnet.bitmex.com/realtime",
}
_CLOSED_HOSTS: Final = frozenset(
    {"ws.bitmex.com", "www.bitmex.com", "ws.testnet.bitmex.com", "testnet.bitmex.com"}
)
CLOSED_NOTICE: Final = (
    "BitMEX closed on 2026-09-23 and its servers no longer serve a market; replay its history "
    "(open_bitmex_replay, tardis-machine), a recording, or run the emulator "
    "(bitmex-trio-websocket emulator)"
)


def resolve_network(network: str) -> str:
    """``mainnet``/``testnet`` or a ws:// / wss:// URL -> URL; ``ValueError`` otherwise."""
    if network in NETWORKS:
        return NETWORKS[network]
    if isinstance(network, str) and network.startswith(("ws://", "wss://")):
        return network
    raise ValueError(
        f"network must be 'mainnet', 'testnet' or a ws:// or wss:// URL, not {network!r}"
    )


def is_closed_exchange(url: str) -> bool:
    """Whether ``url`` points at one of BitMEX's own (closed) hosts."""
    return (urlsplit(url).hostname or "").lower() in _CLOSED_HOSTS
