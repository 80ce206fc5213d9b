"""The sans-IO wire codec (``_wire``): handshake, frame reader, frame encoder, close bodies.

Plain synchronous tests: the codec does no I/O, so every byte the server could send is fed by
hand, split wherever a TCP read could split it. Server frames are built here (``server_frame``)
independently of the code under test; client frames are decoded here (``decode_client_frame``)
and cross-checked with wsproto's server-side frame parser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass

import h11
import pytest
import wsproto.frame_protocol as wsframes
from hypothesis import given, settings
from hypothesis import strategies as st

from bitmex_trio_websocket._websocket._frames import (
    MAX_REJECTION_BODY,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Accepted,
    ClientHandshake,
    Control,
    FrameReader,
    FramingError,
    Rejected,
    close_payload,
    encode_frame,
    parse_close,
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 6455 section 1.3: the sample nonce and the accept token a server derives from it.
RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
RFC_NONCE = base64.b64decode(RFC_KEY)


# ---------------------------------------------------------------------------------- helpers


def server_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """One frame as a server would send it (``length`` overrides the header's length)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 1 << 16:
        header = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if mask is not None:
        header += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + payload


@dataclass(frozen=True)
class ClientFrame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    length_code: int  # the 7-bit length field: the length, 126 or 127
    mask_key: bytes
    payload: bytes  # unmasked


def unmask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def decode_client_frame(frame: bytes) -> tuple[ClientFrame, bytes]:
    """One client frame off the front of ``frame``; the rest."""
    first, second = frame[0], frame[1]
    length_code = second & 0x7F
    pos = 2
    length = length_code
    if length_code == 126:
        length = int.from_bytes(frame[2:4], "big")
        pos = 4
    elif length_code == 127:
        length = int.from_bytes(frame[2:10], "big")
        pos = 10
    masked = bool(second & 0x80)
    key = frame[pos : pos + 4] if masked else b""
    pos += len(key)
    body = frame[pos : pos + length]
    assert len(body) == length, "truncated client frame"
    return (
        ClientFrame(
            fin=bool(first & 0x80),
            rsv=(first >> 4) & 0x7,
            opcode=first & 0x0F,
            masked=masked,
            length_code=length_code,
            mask_key=key,
            payload=unmask(body, key) if masked else body,
        ),
        frame[pos + length :],
    )


def feed_all(reader: FrameReader, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    return out


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def response_101(key: bytes = RFC_KEY, *extra: bytes, accept: bytes | None = None) -> bytes:
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + (accept_token(key) if accept is None else accept),
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def rfc_handshake() -> ClientHandshake:
    return ClientHandshake("server.example.com", "/chat", RFC_NONCE)


# -------------------------------------------------------------------------------- handshake


def test_request_is_a_valid_upgrade_request() -> None:
    nonce = bytes(range(16))
    request = ClientHandshake("www.bitmex.com:443", "/realtime?heartbeat=true", nonce)
    server = h11.Connection(h11.SERVER)
    server.receive_data(request.request_bytes())
    event = server.next_event()
    assert isinstance(event, h11.Request)
    assert event.method == b"GET"
    assert event.target == b"/realtime?heartbeat=true"
    assert event.http_version == b"1.1"
    headers = {bytes(k): bytes(v) for k, v in event.headers}
    assert headers[b"host"] == b"www.bitmex.com:443"
    assert headers[b"upgrade"].lower() == b"websocket"
    assert b"upgrade" in [t.strip().lower() for t in headers[b"connection"].split(b",")]
    assert headers[b"sec-websocket-version"] == b"13"
    key = headers[b"sec-websocket-key"]
    assert base64.b64decode(key, validate=True) == nonce
    # No extension or subprotocol is offered, so none may be accepted.
    assert b"sec-websocket-extensions" not in headers
    assert b"sec-websocket-protocol" not in headers
    # The request is complete (no body): nothing more for the server to wait for.
    assert isinstance(server.next_event(), h11.EndOfMessage)


def test_request_key_is_the_base64_nonce_of_rfc_example() -> None:
    request = rfc_handshake().request_bytes()
    assert b"\r\nSec-WebSocket-Key: " + RFC_KEY + b"\r\n" in request
    assert len(RFC_NONCE) == 16


def test_different_nonces_give_different_keys() -> None:
    a = ClientHandshake("h", "/", bytes(16)).request_bytes()
    b = ClientHandshake("h", "/", b"\x01" * 16).request_bytes()
    assert a != b


def test_rfc_example_accept_token_is_accepted() -> None:
    assert accept_token(RFC_KEY) == RFC_ACCEPT  # the helper agrees with the RFC
    outcome = rfc_handshake().receive_data(response_101(accept=RFC_ACCEPT))
    assert outcome == Accepted(b"")


@pytest.mark.parametrize(
    "accept",
    [
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo",  # padding missing
        b"S3pPLMBiTxaQ9kYGzzhZRbK+xOo=",  # case matters in base64
        accept_token(b"x3JJHMbDL1EzLkh9GBhXDw=="),  # another key's token
        RFC_KEY,  # the key echoed back
        b"",
    ],
)
def test_wrong_accept_token_is_refused(accept: bytes) -> None:
    with pytest.raises(FramingError) as info:
        rfc_handshake().receive_data(response_101(accept=accept))
    assert info.value.code == 1002


def test_missing_accept_token_is_refused() -> None:
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    with pytest.raises(FramingError) as info:
        rfc_handshake().receive_data(response)
    assert info.value.code == 1002


@pytest.mark.parametrize(
    ("upgrade", "connection"),
    [
        (None, b"Upgrade"),
        (b"h2c", b"Upgrade"),
        (b"websocket, h2c", b"Upgrade"),
        (b"websocket", None),
        (b"websocket", b"keep-alive"),
        (b"websocket", b"close"),
    ],
)
def test_missing_or_wrong_upgrade_or_connection_is_refused(
    upgrade: bytes | None, connection: bytes | None
) -> None:
    lines = [b"HTTP/1.1 101 Switching Protocols", b"Sec-WebSocket-Accept: " + RFC_ACCEPT]
    if upgrade is not None:
        lines.append(b"Upgrade: " + upgrade)
    if connection is not None:
        lines.append(b"Connection: " + connection)
    with pytest.raises(FramingError) as info:
        rfc_handshake().receive_data(b"\r\n".join(lines) + b"\r\n\r\n")
    assert info.value.code == 1002


def test_header_names_and_tokens_are_case_insensitive() -> None:
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"UPGRADE: WebSocket\r\n"
        b"connection: keep-alive, UPGRADE\r\n"
        b"sec-websocket-accept: " + RFC_ACCEPT + b"\r\n\r\n"
    )
    assert rfc_handshake().receive_data(response) == Accepted(b"")


@pytest.mark.parametrize(
    "header",
    [
        b"Sec-WebSocket-Extensions: permessage-deflate",
        b"Sec-WebSocket-Protocol: chat",
    ],
)
def test_accepted_extension_or_subprotocol_never_offered_is_refused(header: bytes) -> None:
    with pytest.raises(FramingError) as info:
        rfc_handshake().receive_data(response_101(RFC_KEY, header))
    assert info.value.code == 1002


def test_response_split_at_every_byte_waits_then_accepts() -> None:
    response = response_101()
    for cut in range(1, len(response)):
        handshake = rfc_handshake()
        assert handshake.receive_data(response[:cut]) is None
        assert handshake.receive_data(response[cut:]) == Accepted(b"")


def test_response_byte_by_byte() -> None:
    response = response_101()
    handshake = rfc_handshake()
    outcomes = [handshake.receive_data(response[i : i + 1]) for i in range(len(response))]
    assert outcomes[:-1] == [None] * (len(response) - 1)
    assert outcomes[-1] == Accepted(b"")


def test_bytes_after_the_101_are_returned_as_trailing() -> None:
    frames = server_frame(OP_TEXT, b'{"info":"Welcome"}') + server_frame(OP_PING, b"p")[:1]
    outcome = rfc_handshake().receive_data(response_101() + frames)
    assert outcome == Accepted(frames)
    # ... and they are the server's frames, intact.
    assert isinstance(outcome, Accepted)
    reader = FrameReader(1 << 20)
    assert reader.feed(outcome.trailing) == [b'{"info":"Welcome"}']


def test_interim_1xx_before_the_101_is_skipped() -> None:
    response = b"HTTP/1.1 100 Continue\r\n\r\n" + response_101()
    assert rfc_handshake().receive_data(response) == Accepted(b"")


def test_rejection_429_with_retry_after_and_json_body() -> None:
    body = json.dumps({"error": {"message": "Rate limit exceeded", "name": "HTTPError"}}).encode()
    response = (
        b"HTTP/1.1 429 Too Many Requests\r\n"
        b"Retry-After: 7\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    outcome = rfc_handshake().receive_data(response)
    assert isinstance(outcome, Rejected)
    assert outcome.status_code == 429
    headers = dict(outcome.headers)
    assert headers[b"retry-after"] == b"7"
    assert headers[b"content-type"] == b"application/json"
    assert json.loads(outcome.body)["error"]["message"] == "Rate limit exceeded"


def test_rejection_waits_for_the_whole_body() -> None:
    body = b'{"error":"Forbidden"}'
    response = b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    handshake = rfc_handshake()
    cut = len(response) - 5
    assert handshake.receive_data(response[:cut]) is None
    assert handshake.receive_data(response[cut:]) == Rejected(
        403, ((b"content-length", str(len(body)).encode()),), body
    )


def test_rejection_without_body() -> None:
    outcome = rfc_handshake().receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(outcome, Rejected)
    assert (outcome.status_code, outcome.body) == (404, b"")


def test_rejection_chunked_body() -> None:
    response = (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n"
        b"7\r\n, world\r\n"
        b"0\r\n\r\n"
    )
    handshake = rfc_handshake()
    assert handshake.receive_data(response[:40]) is None
    outcome = handshake.receive_data(response[40:])
    assert isinstance(outcome, Rejected)
    assert (outcome.status_code, outcome.body) == (503, b"hello, world")


def test_rejection_body_delimited_by_close() -> None:
    handshake = rfc_handshake()
    assert (
        handshake.receive_data(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\nbad") is None
    )
    assert handshake.receive_data(b" gateway") is None
    outcome = handshake.receive_data(b"")
    assert isinstance(outcome, Rejected)
    assert (outcome.status_code, outcome.body) == (502, b"bad gateway")


def test_rejection_closed_mid_body_keeps_what_arrived() -> None:
    handshake = rfc_handshake()
    assert handshake.receive_data(b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n0123") is None
    outcome = handshake.receive_data(b"")
    assert isinstance(outcome, Rejected)
    assert (outcome.status_code, outcome.body) == (500, b"0123")


def test_rejection_closed_mid_chunk_keeps_what_arrived() -> None:
    handshake = rfc_handshake()
    head = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabcd"
    assert handshake.receive_data(head) is None
    outcome = handshake.receive_data(b"")
    assert isinstance(outcome, Rejected)
    assert (outcome.status_code, outcome.body) == (500, b"abcd")


def test_rejection_body_longer_than_the_cap_is_truncated_without_waiting() -> None:
    size = MAX_REJECTION_BODY + 10_000
    body = bytes(i % 251 for i in range(size))
    head = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % (size + 5)
    handshake = rfc_handshake()
    # The outcome is known once the cap is reached, though the body is not complete.
    outcome = handshake.receive_data(head + body)
    assert isinstance(outcome, Rejected)
    assert outcome.status_code == 400
    assert outcome.body == body[:MAX_REJECTION_BODY]


def test_rejection_body_over_the_cap_in_small_pieces() -> None:
    handshake = rfc_handshake()
    head = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert handshake.receive_data(head) is None
    chunk = b"x" * 1000
    fed = 0
    outcome: Accepted | Rejected | None = None
    while outcome is None:
        outcome = handshake.receive_data(b"3e8\r\n" + chunk + b"\r\n")
        fed += len(chunk)
        assert fed <= MAX_REJECTION_BODY + len(chunk), "the cap was never applied"
    assert isinstance(outcome, Rejected)
    assert outcome.body == b"x" * MAX_REJECTION_BODY


def test_body_exactly_at_the_cap_is_whole() -> None:
    body = b"y" * MAX_REJECTION_BODY
    response = b"HTTP/1.1 400 Bad\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    outcome = rfc_handshake().receive_data(response)
    assert isinstance(outcome, Rejected)
    assert outcome.body == body


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40) + b"\r\n\r\n",
        b"HTTP/1.1 abc Nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
    ],
)
def test_non_http_reply_is_a_framing_error(reply: bytes) -> None:
    with pytest.raises(FramingError) as info:
        rfc_handshake().receive_data(reply)
    assert info.value.code == 1002


@pytest.mark.parametrize("partial", [b"", b"HTTP/1.1 10", response_101()[:-2]])
def test_close_before_a_complete_response_is_a_framing_error(partial: bytes) -> None:
    handshake = rfc_handshake()
    if partial:
        assert handshake.receive_data(partial) is None
    with pytest.raises(FramingError) as info:
        handshake.receive_data(b"")
    assert info.value.code == 1002


# ------------------------------------------------------------------------------ FrameReader


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_every_payload_length_encoding(size: int, opcode: int) -> None:
    payload = bytes(i % 256 for i in range(size))
    frame = server_frame(opcode, payload)
    header = {True: 2, False: 4 if size < 1 << 16 else 10}[size < 126]
    assert len(frame) == header + size  # the helper used the encoding under test
    reader = FrameReader(1 << 20)
    assert reader.feed(frame) == [payload]
    assert reader.controls == []


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_every_length_encoding_split_around_the_header(size: int) -> None:
    payload = b"z" * size
    frame = server_frame(OP_TEXT, payload) + server_frame(OP_TEXT, b"next")
    for cut in range(1, 16):
        reader = FrameReader(1 << 20)
        got = reader.feed(frame[:cut]) + reader.feed(frame[cut:])
        assert got == [payload, b"next"], cut


def test_non_minimal_length_encoding_is_read() -> None:
    # RFC 6455 requires the minimal encoding, but reading a longer one is harmless.
    frame = bytes((0x81, 126)) + (5).to_bytes(2, "big") + b"hello"
    assert FrameReader(100).feed(frame) == [b"hello"]


STREAM = b"".join(
    [
        server_frame(OP_TEXT, b"first"),
        server_frame(OP_PING, b"ping-1"),
        server_frame(OP_TEXT, b"frag-", fin=False),
        server_frame(OP_PONG, b"pong-1"),
        server_frame(OP_CONTINUATION, b"mented", fin=False),
        server_frame(OP_PING, b""),
        server_frame(OP_CONTINUATION, b"!", fin=True),
        server_frame(OP_BINARY, b"\x00\xff" * 100),
        server_frame(OP_TEXT, b""),
        server_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"Bye"),
    ]
)
STREAM_MESSAGES = [b"first", b"frag-mented!", b"\x00\xff" * 100, b""]
STREAM_CONTROLS = [
    Control(OP_PING, b"ping-1"),
    Control(OP_PONG, b"pong-1"),
    Control(OP_PING, b""),
    Control(OP_CLOSE, b"\x03\xe8Bye"),
]


def test_stream_in_one_piece() -> None:
    reader = FrameReader(1000)
    assert reader.feed(STREAM) == STREAM_MESSAGES
    assert reader.controls == STREAM_CONTROLS


def test_stream_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        reader = FrameReader(1000)
        assert feed_all(reader, [STREAM[:cut], STREAM[cut:]]) == STREAM_MESSAGES, cut
        assert reader.controls == STREAM_CONTROLS, cut


def test_stream_split_at_every_pair_of_boundaries() -> None:
    n = len(STREAM)
    for i in range(0, n + 1, 3):
        for j in range(i, n + 1, 7):
            reader = FrameReader(1000)
            got = feed_all(reader, [STREAM[:i], STREAM[i:j], STREAM[j:]])
            assert got == STREAM_MESSAGES, (i, j)
            assert reader.controls == STREAM_CONTROLS, (i, j)


def test_stream_byte_by_byte() -> None:
    reader = FrameReader(1000)
    got = feed_all(reader, [STREAM[i : i + 1] for i in range(len(STREAM))])
    assert got == STREAM_MESSAGES
    assert reader.controls == STREAM_CONTROLS


def test_messages_are_returned_by_the_read_that_completes_them() -> None:
    reader = FrameReader(1000)
    first = server_frame(OP_TEXT, b"a" * 200)
    second = server_frame(OP_TEXT, b"b")
    assert reader.feed(first[:100]) == []
    assert reader.feed(first[100:] + second[:1]) == [b"a" * 200]
    assert reader.feed(second[1:]) == [b"b"]


def test_controls_complete_even_while_a_message_is_pending() -> None:
    reader = FrameReader(1000)
    assert reader.feed(server_frame(OP_TEXT, b"part", fin=False)) == []
    assert reader.feed(server_frame(OP_PING, b"!")) == []
    assert reader.controls == [Control(OP_PING, b"!")]
    assert reader.feed(server_frame(OP_CONTINUATION, b"-end")) == [b"part-end"]


def test_close_inside_a_fragmented_message_is_a_control() -> None:
    reader = FrameReader(1000)
    wire = (
        server_frame(OP_TEXT, b"never", fin=False)
        + server_frame(OP_PING, b"1")
        + server_frame(OP_CLOSE, (1001).to_bytes(2, "big") + b"going away")
    )
    assert feed_all(reader, [wire[i : i + 1] for i in range(len(wire))]) == []
    assert reader.controls == [
        Control(OP_PING, b"1"),
        Control(OP_CLOSE, (1001).to_bytes(2, "big") + b"going away"),
    ]


@st.composite
def message_streams(
    draw: st.DrawFn,
) -> tuple[list[bytes], list[bytes], list[Control]]:
    """Messages, their server frames (fragmented, controls interleaved), and the controls."""
    messages = draw(
        st.lists(
            st.one_of(
                st.binary(max_size=40),
                st.integers(120, 300).map(lambda n: bytes([n % 256]) * n),
            ),
            max_size=8,
        )
    )
    controls_strategy = st.lists(
        st.tuples(st.sampled_from([OP_PING, OP_PONG]), st.binary(max_size=125)), max_size=2
    )
    frames: list[bytes] = []
    controls: list[Control] = []

    def interleave() -> None:
        for opcode, payload in draw(controls_strategy):
            frames.append(server_frame(opcode, payload))
            controls.append(Control(opcode, payload))

    for message in messages:
        interleave()
        opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
        cuts = sorted(draw(st.lists(st.integers(0, len(message)), max_size=4)))
        parts = [message[a:b] for a, b in zip([0, *cuts], [*cuts, len(message)], strict=True)]
        for index, part in enumerate(parts):
            if index:
                interleave()
            frames.append(
                server_frame(
                    opcode if index == 0 else OP_CONTINUATION,
                    part,
                    fin=index == len(parts) - 1,
                )
            )
    interleave()
    return messages, frames, controls


@settings(max_examples=300, deadline=None)
@given(stream=message_streams(), data=st.data())
def test_any_messages_any_fragmentation_any_chunking(
    stream: tuple[list[bytes], list[bytes], list[Control]], data: st.DataObject
) -> None:
    messages, frames, controls = stream
    wire = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=20)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    reader = FrameReader(max(map(len, messages), default=0))
    got = feed_all(reader, chunks)
    assert got == messages
    assert reader.controls == controls


# Limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_size", [0, 10, 125, 126, 65535, 65536])
def test_max_size_is_inclusive(max_size: int) -> None:
    assert FrameReader(max_size).feed(server_frame(OP_TEXT, b"a" * max_size)) == [b"a" * max_size]
    frame = server_frame(OP_TEXT, b"a" * (max_size + 1))
    with pytest.raises(FramingError) as info:
        FrameReader(max_size).feed(frame)
    assert info.value.code == 1009


@pytest.mark.parametrize("size", [11, 126, 65536, 1 << 40, (1 << 63) - 1])
def test_oversize_is_detected_from_the_header_alone(size: int) -> None:
    header = server_frame(OP_BINARY, length=size)  # header only: no payload follows
    reader = FrameReader(10)
    # The header split in two: nothing to judge yet, then the verdict before any payload.
    assert reader.feed(header[:1]) == []
    with pytest.raises(FramingError) as info:
        reader.feed(header[1:])
    assert info.value.code == 1009


def test_oversize_across_fragments_detected_from_the_continuation_header() -> None:
    reader = FrameReader(10)
    assert reader.feed(server_frame(OP_TEXT, b"123456", fin=False)) == []
    assert reader.feed(server_frame(OP_PING, b"pings do not count toward the size")) == []
    with pytest.raises(FramingError) as info:
        reader.feed(server_frame(OP_CONTINUATION, length=5)[:2])
    assert info.value.code == 1009


def test_fragments_summing_to_max_size_are_fine() -> None:
    reader = FrameReader(10)
    frames = (
        server_frame(OP_TEXT, b"1234", fin=False)
        + server_frame(OP_PING, b"x" * 100)
        + server_frame(OP_CONTINUATION, b"567", fin=False)
        + server_frame(OP_CONTINUATION, b"890")
    )
    assert reader.feed(frames) == [b"1234567890"]
    # The limit applies per message: the next one starts from zero.
    assert reader.feed(server_frame(OP_TEXT, b"a" * 10)) == [b"a" * 10]


def test_fragment_limit_resets_between_messages() -> None:
    reader = FrameReader(10)
    for _ in range(3):
        got = reader.feed(
            server_frame(OP_TEXT, b"12345", fin=False) + server_frame(OP_CONTINUATION, b"67890")
        )
        assert got == [b"1234567890"]


def test_large_frame_in_small_chunks_is_returned_once_complete() -> None:
    payload = bytes(range(256)) * (4 * 1024 * 4)  # 4 MiB
    frame = server_frame(OP_BINARY, payload)
    reader = FrameReader(len(payload))
    step = 4096
    results = [reader.feed(frame[i : i + step]) for i in range(0, len(frame), step)]
    assert all(r == [] for r in results[:-1])
    assert results[-1] == [payload]


def test_large_frame_in_tiny_chunks_is_joined_in_linear_time() -> None:
    # 8 MiB in 512-byte reads: 16384 reads. Rejoining the held bytes on every read would copy
    # ~64 GiB (minutes); joining once is milliseconds. The bound is generous on purpose.
    payload = b"q" * (8 << 20)
    frame = server_frame(OP_BINARY, payload)
    reader = FrameReader(len(payload))
    step = 512
    started = time.perf_counter()
    got: list[bytes] = []
    for i in range(0, len(frame), step):
        got.extend(reader.feed(frame[i : i + step]))
    elapsed = time.perf_counter() - started
    assert got == [payload]
    assert elapsed < 10, f"{elapsed:.1f} s: held bytes are being copied on every read"


def test_large_fragmented_message_in_small_chunks() -> None:
    parts = [bytes([i]) * 100_000 for i in range(10)]
    wire = b"".join(
        server_frame(OP_TEXT if i == 0 else OP_CONTINUATION, part, fin=i == 9)
        for i, part in enumerate(parts)
    )
    reader = FrameReader(1_000_000)
    got = feed_all(reader, [wire[i : i + 1000] for i in range(0, len(wire), 1000)])
    assert got == [b"".join(parts)]


# Protocol errors ---------------------------------------------------------------------------


PROTOCOL_ERRORS = {
    "masked frame": server_frame(OP_TEXT, b"hi", mask=b"abcd"),
    "masked empty frame": server_frame(OP_TEXT, b"", mask=b"abcd"),
    "rsv1": server_frame(OP_TEXT, b"hi", rsv=0b100),
    "rsv2": server_frame(OP_TEXT, b"hi", rsv=0b010),
    "rsv3": server_frame(OP_TEXT, b"hi", rsv=0b001),
    "rsv on ping": server_frame(OP_PING, b"", rsv=0b100),
    "opcode 3": server_frame(0x3, b"hi"),
    "opcode 7": server_frame(0x7, b"hi"),
    "opcode 0xB": server_frame(0xB, b""),
    "opcode 0xF": server_frame(0xF, b""),
    "fragmented ping": server_frame(OP_PING, b"x", fin=False),
    "fragmented close": server_frame(OP_CLOSE, b"", fin=False),
    "126-byte ping": server_frame(OP_PING, b"x" * 126),
    "126-byte pong": server_frame(OP_PONG, b"x" * 126),
    "126-byte close": server_frame(OP_CLOSE, b"\x03\xe8" + b"x" * 124),
    "continuation without start": server_frame(OP_CONTINUATION, b"x"),
    "final continuation without start": server_frame(OP_CONTINUATION, b"x", fin=True),
    "text inside fragments": server_frame(OP_TEXT, b"a", fin=False) + server_frame(OP_TEXT, b"b"),
    "binary inside fragments": (
        server_frame(OP_TEXT, b"a", fin=False)
        + server_frame(OP_CONTINUATION, b"b", fin=False)
        + server_frame(OP_BINARY, b"c", fin=False)
    ),
    "continuation after a complete message": (
        server_frame(OP_TEXT, b"a", fin=False)
        + server_frame(OP_CONTINUATION, b"b")
        + server_frame(OP_CONTINUATION, b"c")
    ),
}


@pytest.mark.parametrize("wire", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
def test_protocol_error_is_1002(wire: bytes) -> None:
    with pytest.raises(FramingError) as info:
        FrameReader(1000).feed(wire)
    assert info.value.code == 1002
    assert info.value.reason


@pytest.mark.parametrize(("name", "wire"), PROTOCOL_ERRORS.items(), ids=PROTOCOL_ERRORS.keys())
def test_protocol_error_after_good_messages_byte_by_byte(name: str, wire: bytes) -> None:
    stream = server_frame(OP_TEXT, b"ok") + wire
    reader = FrameReader(1000)
    got: list[bytes] = []
    with pytest.raises(FramingError) as info:
        for i in range(len(stream)):
            got.extend(reader.feed(stream[i : i + 1]))
    assert info.value.code == 1002
    # Messages completed before the offending frame were delivered; nothing after it.
    assert got == ([b"ok", b"ab"] if name == "continuation after a complete message" else [b"ok"])


def test_control_frame_of_125_bytes_is_fine() -> None:
    reader = FrameReader(0)
    assert reader.feed(server_frame(OP_PING, b"p" * 125)) == []
    assert reader.controls == [Control(OP_PING, b"p" * 125)]


def test_framing_error_message_names_the_code() -> None:
    error = FramingError(1009, "too big")
    assert (error.code, error.reason) == (1009, "too big")
    assert "1009" in str(error)


# ----------------------------------------------------------------------------- encode_frame


SIZES = [(0, 0), (1, 1), (125, 125), (126, 126), (65535, 126), (65536, 127), (100_000, 127)]


@pytest.mark.parametrize(
    ("opcode", "size", "length_code"),
    [(op, *size) for op in (OP_TEXT, OP_BINARY) for size in SIZES]
    + [(op, *size) for op in (OP_PING, OP_PONG, OP_CLOSE) for size in SIZES[:3]],
)
def test_encode_frame_is_masked_and_decodes_back(opcode: int, size: int, length_code: int) -> None:
    payload = bytes((i * 7) % 256 for i in range(size))
    key = b"\x12\x34\x56\x78"
    frame = encode_frame(opcode, payload, key)
    decoded, rest = decode_client_frame(frame)
    assert rest == b""
    assert decoded == ClientFrame(
        fin=True,
        rsv=0,
        opcode=opcode,
        masked=True,
        length_code=length_code,
        mask_key=key,
        payload=payload,
    )
    header = {0: 2, 126: 4, 127: 10}.get(length_code, 2)
    assert len(frame) == header + 4 + size
    if size >= 8:
        assert frame[header + 4 :] != payload  # actually masked on the wire


def test_encode_frame_masks_with_the_given_key() -> None:
    frame = encode_frame(OP_TEXT, b"Hello", bytes((0x37, 0xFA, 0x21, 0x3D)))
    # RFC 6455 section 5.7: a single-frame masked text message containing "Hello".
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


def test_encode_frame_payload_with_leading_zero_bytes() -> None:
    payload = b"\x00\x00\x00\x00\x00abc"
    key = b"\x00\x00\x00\x00"  # a zero mask leaves zero bytes zero: nothing may be dropped
    decoded, _ = decode_client_frame(encode_frame(OP_BINARY, payload, key))
    assert decoded.payload == payload


@settings(max_examples=200, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=300), st.integers(65530, 65540).map(lambda n: b"\x00" * n)
    ),
    key=st.binary(min_size=4, max_size=4),
    opcode=st.sampled_from([OP_TEXT, OP_BINARY]),
)
def test_encode_frame_is_read_by_wsproto(payload: bytes, key: bytes, opcode: int) -> None:
    expected: bytes | str = payload
    if opcode == OP_TEXT:
        try:
            expected = payload.decode("utf-8")
        except UnicodeDecodeError:
            opcode = OP_BINARY  # wsproto (rightly) refuses invalid UTF-8 text
    server = wsframes.FrameProtocol(client=False, extensions=[])
    server.receive_bytes(encode_frame(opcode, payload, key))
    frames = list(server.received_frames())
    assert len(frames) == 1
    frame = frames[0]
    assert frame.opcode == wsframes.Opcode(opcode)
    assert frame.frame_finished and frame.message_finished
    assert frame.payload == expected


# --------------------------------------------------------------------- close_payload / parse


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
