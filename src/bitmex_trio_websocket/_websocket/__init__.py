"""The client's websocket: sans-IO frames and handshake (``_frames``), the trio connection."""

from ._connection import ClientWebSocket, connect_websocket
from ._frames import OP_TEXT, encode_frame

__all__ = ["OP_TEXT", "ClientWebSocket", "connect_websocket", "encode_frame"]
