"""The sans-IO frame codec (``_frames``, ``_reader``): frame reader, frame encoder, close bodies.

The reader tested is the active core's (compiled where built; ``.ci/run`` runs these again with
``BITMEX_TRIO_WEBSOCKET_PURE=1``, and ``tests/test_cores.py`` compares the two directly).

Plain synchronous tests: the codec does no I/O, so every byte the server could send is fed by
hand, split wherever a TCP read could split it. Server frames are built by the helpers
(``server_frame``) independently of the code under test; client frames are decoded there
(``decode_client_frame``) and cross-checked with wsproto's server-side frame parser.
"""

from __future__ import annotations

import time

import pytest
import wsproto.frame_protocol as wsframes
from hypothesis import given, settings
from hypothesis import strategies as st

from bitmex_trio_websocket._websocket import _reader
from bitmex_trio_websocket._websocket._connection import FrameReader  # the active core's
from bitmex_trio_websocket._websocket._frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Control,
    FramingError,
    encode_frame,
)

from .helpers import ClientFrame, decode_client_frame, server_frame


def feed_all(reader: _reader.FrameReader, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    return out


# ------------------------------------------------------------------------------ FrameReader


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_every_payload_length_encoding(size: int, opcode: int) -> None:
    # A text message must be UTF-8 (non-ASCII text has tests of its own below).
    payload = bytes(i % (128 if opcode == OP_TEXT else 256) for i in range(size))
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


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def message_streams(
    draw: st.DrawFn,
) -> tuple[list[bytes], list[bytes], list[Control]]:
    """Messages, their server frames (fragmented, controls interleaved), and the controls."""
    messages = draw(
        st.lists(
            st.one_of(
                st.binary(max_size=40),
                st.text(max_size=20).map(str.encode),  # cuts below may split a character
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
        # Only UTF-8 may be sent as text (invalid text has tests of its own below).
        opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY])) if is_utf8(message) else OP_BINARY
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


# UTF-8 (RFC 6455 sections 5.6 and 8.1) ----------------------------------------------------

INVALID_UTF8 = {
    "lone continuation byte": b"\x80",
    "0xff in JSON": b'{"table":"trade","x":"\xff"}',
    "overlong slash": b"\xc0\xaf",
    "surrogate half": b"\xed\xa0\x80",
    "beyond U+10FFFF": b"\xf4\x90\x80\x80",
    "truncated euro sign": b"price in \xe2\x82",
}


@pytest.mark.parametrize("payload", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_text_message_that_is_not_utf8_is_1007(payload: bytes) -> None:
    reader = FrameReader(1000)
    wire = server_frame(OP_TEXT, b"ok") + server_frame(OP_TEXT, payload)
    with pytest.raises(FramingError) as info:
        reader.feed(wire)
    assert info.value.code == 1007
    assert info.value.messages == [b"ok"]  # what came before is still good data


@pytest.mark.parametrize("payload", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_fragmented_text_message_that_is_not_utf8_is_1007_byte_by_byte(payload: bytes) -> None:
    wire = (
        server_frame(OP_TEXT, b"ok")
        + server_frame(OP_TEXT, payload[:1], fin=False)
        + server_frame(OP_PING, b"!")
        + server_frame(OP_CONTINUATION, payload[1:])
    )
    reader = FrameReader(1000)
    got: list[bytes] = []
    with pytest.raises(FramingError) as info:
        for i in range(len(wire)):
            got.extend(reader.feed(wire[i : i + 1]))
    assert info.value.code == 1007
    assert got == [b"ok"]


@pytest.mark.parametrize("payload", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_binary_message_need_not_be_utf8(payload: bytes) -> None:
    assert FrameReader(1000).feed(server_frame(OP_BINARY, payload)) == [payload]


def test_non_ascii_text_is_delivered_as_sent() -> None:
    text = '{"text":"ünïcödé ✓ 漢字 🚀"}'.encode()
    assert FrameReader(1000).feed(server_frame(OP_TEXT, text)) == [text]


def test_a_character_split_across_fragments_is_valid_text() -> None:
    text = "€🚀".encode()  # a 3-byte and a 4-byte character
    for cut in range(len(text) + 1):
        wire = (
            server_frame(OP_TEXT, text[:cut], fin=False)
            + server_frame(OP_PING)
            + server_frame(OP_CONTINUATION, text[cut:])
        )
        assert FrameReader(100).feed(wire) == [text], cut


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=40) | st.text(max_size=10).map(str.encode), cut=st.integers(0))
def test_text_is_accepted_exactly_when_it_is_utf8(payload: bytes, cut: int) -> None:
    cut %= len(payload) + 1
    for wire in (
        server_frame(OP_TEXT, payload),
        server_frame(OP_TEXT, payload[:cut], fin=False)
        + server_frame(OP_CONTINUATION, payload[cut:]),
    ):
        reader = FrameReader(100)
        if is_utf8(payload):
            assert reader.feed(wire) == [payload]
        else:
            with pytest.raises(FramingError) as info:
                reader.feed(wire)
            assert info.value.code == 1007


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
