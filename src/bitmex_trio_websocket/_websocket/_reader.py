"""The websocket frame reader: server bytes in, complete data messages out (sans-IO).

Theory of operation
-------------------
``FrameReader.feed(data)`` returns the complete data messages in ``data`` as ``bytes`` payloads
ready for orjson (no decode to ``str``) and queues control frames in ``controls``. Fragmented
messages are joined. Length is checked from the frame header, before the payload is buffered,
so ``max_size`` bounds memory; a large frame arriving in many reads is joined once (no quadratic
copying). A frame that breaks RFC 6455 raises ``_frames.FramingError`` carrying the messages
that preceded it in the same ``feed`` (still valid data).

UTF-8: a text message is checked once complete (RFC 6455 section 5.6: a frame may end inside a
character, the whole message must be valid; checking fragments as they come would only fail a
broken connection sooner). ``bytes.isascii()`` decides first, without allocating: BitMEX sends
ASCII JSON, so only a rare non-ASCII message pays for a strict decode. (A whole read cannot be
checked at once: frame headers are not ASCII.) orjson would refuse invalid UTF-8 too, but only
as an undecodable frame (a resync), not as the broken connection it is.

Compiled: ``feed`` runs for every frame the client receives, byte arithmetic in one loop, which
is what mypyc turns into C. ``setup.py`` compiles a copy of this module with the store core
(``_storage/_core``: the same selection, ``BITMEX_TRIO_WEBSOCKET_PURE=1`` forces this one), so
it imports what it shares through the package (``.._websocket._frames``), which resolves the
same from either place: one ``FramingError`` class for both.
"""

from __future__ import annotations

from .._websocket._frames import OP_BINARY, OP_CONTINUATION, OP_PONG, OP_TEXT, Control, FramingError

__all__ = ["FrameReader"]


def _check_utf8(payload: bytes) -> None:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        error = FramingError(1007, f"text message is not valid UTF-8 (byte {exc.start})")
        error.__cause__ = None  # ``from None`` by hand: compiled, mypyc ignores it
        raise error from None


class FrameReader:
    """Server frames -> data message payloads (``feed``'s result) and ``controls``."""

    __slots__ = (
        "_chunks",
        "_fragments",
        "_fragments_size",
        "_fragments_text",
        "_held",
        "_need",
        "controls",
        "max_size",
    )

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.controls: list[Control] = []
        self._chunks: list[bytes] = []  # bytes of an incomplete frame
        self._held = 0
        self._need = 0  # bytes needed before parsing can continue (0: unknown, any will do)
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0
        self._fragments_text = False

    def feed(self, data: bytes) -> list[bytes]:
        # One loop, inlined on purpose: this runs for every frame the client receives.
        if self._chunks:
            self._chunks.append(data)
            self._held += len(data)
            if self._held < self._need:
                return []  # the frame is still incomplete: don't rejoin for nothing
            data = b"".join(self._chunks)
            self._chunks = []
        messages: list[bytes] = []
        pos, end = 0, len(data)
        max_size = self.max_size
        need = 0
        try:
            while end - pos >= 2:
                first, second = data[pos], data[pos + 1]
                length = second & 0x7F
                start = pos + 2
                if length == 126:
                    start += 2
                    if start > end:
                        break
                    length = int.from_bytes(data[pos + 2 : start])
                elif length == 127:
                    start += 8
                    if start > end:
                        break
                    length = int.from_bytes(data[pos + 2 : start])
                opcode = first & 0x0F
                if second & 0x80:
                    raise FramingError(1002, "masked frame from the server")
                if first & 0x70:
                    raise FramingError(1002, "reserved bits set (no extension was negotiated)")
                if opcode >= 8:
                    if opcode > OP_PONG:
                        raise FramingError(1002, f"unknown opcode {opcode}")
                    if not first & 0x80 or length > 125:
                        raise FramingError(1002, "fragmented or oversized control frame")
                elif opcode == OP_CONTINUATION:
                    if self._fragments is None:
                        raise FramingError(1002, "continuation frame without a message")
                    if self._fragments_size + length > max_size:
                        raise FramingError(1009, f"message larger than {max_size} bytes")
                elif opcode > OP_BINARY:
                    raise FramingError(1002, f"unknown opcode {opcode}")
                elif self._fragments is not None:
                    raise FramingError(1002, "new message inside a fragmented one")
                elif length > max_size:
                    raise FramingError(1009, f"message larger than {max_size} bytes")
                stop = start + length
                if stop > end:
                    need = stop - pos
                    break
                payload = data[start:stop]
                pos = stop
                if opcode >= 8:
                    self.controls.append(Control(opcode, payload))
                elif first & 0x80:
                    if opcode:
                        if opcode == OP_TEXT and not payload.isascii():
                            _check_utf8(payload)
                        messages.append(payload)
                    else:
                        assert self._fragments is not None
                        self._fragments.append(payload)
                        message = b"".join(self._fragments)
                        self._fragments = None
                        if self._fragments_text and not message.isascii():
                            _check_utf8(message)
                        messages.append(message)
                elif opcode:
                    self._fragments = [payload]
                    self._fragments_size = length
                    self._fragments_text = opcode == OP_TEXT
                else:
                    assert self._fragments is not None
                    self._fragments.append(payload)
                    self._fragments_size += length
        except FramingError as exc:
            exc.messages = messages
            raise
        self._need = need
        if pos < end:
            rest = data[pos:]
            self._chunks = [rest]
            self._held = len(rest)
        return messages
