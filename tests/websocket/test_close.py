"""Close frames (``_frames.close_payload`` / ``parse_close``): bodies both ways, close codes.

RFC 6455 section 7.4 and IANA's registry decide which codes may appear on the wire: a server
close with any other code is a protocol error (1002), a reason that is not UTF-8 is 1007, and
1005, 1006 and 1015 are never sent. wsproto's parser serves as an independent check.
"""

from __future__ import annotations

import pytest
import wsproto.frame_protocol as wsframes

from bitmex_trio_websocket._websocket._connection import FrameReader  # the active core's
from bitmex_trio_websocket._websocket._frames import (
    OP_CLOSE,
    FramingError,
    close_payload,
    encode_frame,
    parse_close,
)

from .helpers import server_frame


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, "Bye"), (1001, None), (1002, "protocol error"), (4000, "ünïcödé ✓"), (1011, "")],
)
def test_close_payload_round_trip(code: int, reason: str | None) -> None:
    body = close_payload(code, reason)
    assert body[:2] == code.to_bytes(2, "big")
    assert parse_close(body) == (code, reason or None)


def test_close_payload_is_read_by_wsproto() -> None:
    server = wsframes.FrameProtocol(client=False, extensions=[])
    server.receive_bytes(encode_frame(OP_CLOSE, close_payload(1001, "going away"), b"abcd"))
    (frame,) = server.received_frames()
    assert frame.opcode is wsframes.Opcode.CLOSE
    assert frame.payload == (1001, "going away")


@pytest.mark.parametrize("code", [None, 1005, 1006])
def test_no_status_codes_give_an_empty_body(code: int | None) -> None:
    assert close_payload(code, "ignored") == b""


def test_empty_close_is_1005() -> None:
    assert parse_close(b"") == (1005, None)


def test_one_byte_close_body_is_a_protocol_error() -> None:
    with pytest.raises(FramingError) as info:
        parse_close(b"\x03")
    assert info.value.code == 1002


def test_close_code_only() -> None:
    assert parse_close((1000).to_bytes(2, "big")) == (1000, None)


@pytest.mark.parametrize("reason", ["a" * 200, "é" * 100, "€" * 50, "a" + "€" * 50, "𝄞" * 40])
def test_long_reason_is_truncated_to_fit_without_breaking_utf8(reason: str) -> None:
    body = close_payload(1000, reason)
    assert len(body) <= 125  # a control frame's limit
    assert len(body) >= 125 - 3  # truncated only as far as a character boundary requires
    code, text = parse_close(body)
    assert code == 1000
    assert text is not None
    assert reason.startswith(text)
    body[2:].decode("utf-8")  # strictly valid
    # ... and it goes on the wire as a valid control frame.
    assert FrameReader(0).feed(server_frame(OP_CLOSE, body)) == []


def test_reason_of_exactly_123_bytes_is_kept() -> None:
    reason = "r" * 123
    assert parse_close(close_payload(1000, reason)) == (1000, reason)


# Close codes (RFC 6455 section 7.4, IANA's registry) -----------------------------------------

FORBIDDEN_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
ALLOWED_CLOSE_CODES = [*range(1000, 1004), *range(1007, 1015), 3000, 3999, 4000, 4999]


@pytest.mark.parametrize("code", FORBIDDEN_CLOSE_CODES)
def test_close_code_that_may_not_be_sent_is_a_protocol_error(code: int) -> None:
    with pytest.raises(FramingError) as info:
        parse_close(code.to_bytes(2, "big") + b"why")
    assert info.value.code == 1002
    assert str(code) in info.value.reason


@pytest.mark.parametrize("code", ALLOWED_CLOSE_CODES)
def test_close_code_allowed_on_the_wire_is_read(code: int) -> None:
    assert parse_close(code.to_bytes(2, "big") + b"why") == (code, "why")


def test_close_codes_accepted_are_wsprotos_plus_1014() -> None:
    # wsproto predates 1014 (Bad Gateway, registered with IANA since); otherwise it agrees.
    def wsproto_accepts(code: int) -> bool:
        server = wsframes.FrameProtocol(client=False, extensions=[])
        server.receive_bytes(encode_frame(OP_CLOSE, code.to_bytes(2, "big"), b"abcd"))
        try:
            list(server.received_frames())
        except wsframes.ParseFailed:
            return False
        return True

    def we_accept(code: int) -> bool:
        try:
            parse_close(code.to_bytes(2, "big"))
        except FramingError:
            return False
        return True

    differ = [code for code in range(1 << 16) if wsproto_accepts(code) != we_accept(code)]
    assert differ == [1014]
    assert we_accept(1014)


@pytest.mark.parametrize("reason", [b"\xff", b"bye \xe2\x82", b"\xed\xa0\x80"])
def test_close_reason_that_is_not_utf8_is_1007(reason: bytes) -> None:
    with pytest.raises(FramingError) as info:
        parse_close((1000).to_bytes(2, "big") + reason)
    assert info.value.code == 1007


def test_1015_is_never_sent_either() -> None:
    assert close_payload(1015, "TLS handshake failed") == b""


@pytest.mark.parametrize("code", [0, 999, 1004, 1016, 2999, 5000])
def test_close_payload_refuses_a_code_that_may_not_be_sent(code: int) -> None:
    with pytest.raises(ValueError, match=str(code)):
        close_payload(code, "no")
