"""The client's websocket, in layers: ``_handshake`` (the sans-IO HTTP upgrade), ``_frames``
(sans-IO frames and close bodies), ``_connection`` (both over a trio stream)."""

from ._connection import ClientWebSocket, connect_websocket
from ._frames import OP_TEXT, encode_frame

__all__ = ["OP_TEXT", "ClientWebSocket", "connect_websocket", "encode_frame"]
