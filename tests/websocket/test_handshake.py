"""The sans-IO opening handshake (``_handshake``): the upgrade request, the 101, rejections.

Plain synchronous tests: the handshake does no I/O, so every response a server could send is fed
by hand, split wherever a TCP read could split it. The request is parsed with h11 as a server
would; accept tokens come from RFC 6455's example and the helpers' own derivation.
"""

from __future__ import annotations

import base64
import json

import h11
import pytest

from bitmex_trio_websocket._websocket._connection import FrameReader  # the active core's
from bitmex_trio_websocket._websocket._frames import OP_PING, OP_TEXT, FramingError
from bitmex_trio_websocket._websocket._handshake import (
    MAX_REJECTION_BODY,
    Accepted,
    ClientHandshake,
    Rejected,
)

from .helpers import RFC_ACCEPT, RFC_KEY, RFC_NONCE, accept_token, server_frame

# ---------------------------------------------------------------------------------- helpers


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
