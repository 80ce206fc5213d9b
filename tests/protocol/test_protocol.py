from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitmex_trio_websocket._exceptions import LocalProtocolError, RemoteProtocolError
from bitmex_trio_websocket._protocol import (
    MAX_COMMAND_BYTES,
    MAX_TOPICS_PER_COMMAND,
    AuthAck,
    AuthKeyExpires,
    CancelAllAfter,
    CancelAllAfterAck,
    ErrorReply,
    Help,
    HelpReply,
    Ping,
    Pong,
    Subscribe,
    SubscribeAck,
    TableMessage,
    Unrecognized,
    Unsubscribe,
    UnsubscribeAck,
    Welcome,
    decode_client_frame,
    decode_server_frame,
    encode_auth_ack,
    encode_auth_key_expires,
    encode_cancel_all_after,
    encode_cancel_all_after_ack,
    encode_error,
    encode_help,
    encode_subscribe,
    encode_subscribe_ack,
    encode_table,
    encode_unsubscribe,
    encode_unsubscribe_ack,
    encode_welcome,
    make_topic,
    parse_topic,
)

WELCOME_2021 = (
    '{"info":"Welcome to the BitMEX Realtime API.","version":"2021-07-14T01:26:29.000Z",'
    '"timestamp":"2021-07-22T22:36:07.865Z","docs":"https://www.bitmex.com/app/wsAPI",'
    '"limit":{"remaining":39}}'
)
WELCOME_2025 = (
    '{"info":"Welcome to the BitMEX Realtime API.","version":"2.0.0",'
    '"timestamp":"2025-09-30T12:48:45.419Z","docs":"https://www.bitmex.com/app/wsAPI",'
    '"heartbeatEnabled":false,"limit":{"remaining":719},"appName":"ws-feedhandler-76f8766675"}'
)


def test_welcome_both_eras() -> None:
    old = decode_server_frame(WELCOME_2021)
    assert isinstance(old, Welcome)
    assert (old.version, old.timestamp, old.limit_remaining, old.heartbeat_enabled) == (
        "2021-07-14T01:26:29.000Z",
        "2021-07-22T22:36:07.865Z",
        39,
        None,
    )
    new = decode_server_frame(WELCOME_2025)
    assert isinstance(new, Welcome)
    assert (new.limit_remaining, new.heartbeat_enabled) == (719, False)
    # 2026: limit became {}.
    empty = decode_server_frame(
        '{"info":"Welcome to the BitMEX Realtime API.","version":"2.0.0","limit":{}}'
    )
    assert isinstance(empty, Welcome) and empty.limit_remaining is None


def test_acks() -> None:
    request = {"op": "subscribe", "args": ["trade:XBTUSD", "instrument:XBTUSD"]}
    ack = decode_server_frame(encode_subscribe_ack("trade:XBTUSD", request))
    assert ack == SubscribeAck("trade:XBTUSD", request)
    unack = decode_server_frame(
        '{"success":true,"unsubscribe":"chat","request":{"op":"unsubscribe","args":["chat"]}}'
    )
    assert unack == UnsubscribeAck("chat", {"op": "unsubscribe", "args": ["chat"]})
    # The node connector's bare-string args are echoed unchanged.
    assert decode_server_frame(
        '{"success":true,"subscribe":"trade:XBTUSD","request":{"op":"subscribe","args":"trade:XBTUSD"}}'
    ) == SubscribeAck("trade:XBTUSD", {"op": "subscribe", "args": "trade:XBTUSD"})


def test_legacy_success_false_is_an_error() -> None:
    event = decode_server_frame(
        '{"success":false,"subscribe":"x","error":"nope","request":{"op":"subscribe","args":["x"]}}'
    )
    assert isinstance(event, ErrorReply)
    assert (event.status, event.error, event.op) == (None, "nope", "subscribe")


def test_error_replies() -> None:
    event = decode_server_frame(
        '{"status":400,"error":"Unknown table: tradeBin5dm","meta":{},'
        '"request":{"op":"subscribe","args":["tradeBin1m","tradeBin5dm"]}}'
    )
    assert event == ErrorReply(
        400,
        "Unknown table: tradeBin5dm",
        {},
        {"op": "subscribe", "args": ["tradeBin1m", "tradeBin5dm"]},
    )
    assert isinstance(event, ErrorReply) and event.op == "subscribe"
    bare = decode_server_frame('{"error":"Rate limit exceeded, retry in 29 seconds."}')
    assert isinstance(bare, ErrorReply)
    assert (bare.status, bare.meta, bare.request, bare.op) == (None, {}, None, None)
    legacy = decode_server_frame(
        '{"status":400,"error":"Failed to decode incoming data","meta":{}}'
    )
    assert isinstance(legacy, ErrorReply) and legacy.request is None
    limited = decode_server_frame(
        encode_error(429, "Rate limit exceeded, retry in 1 seconds.", meta={"retryAfter": 1})
    )
    assert isinstance(limited, ErrorReply) and limited.meta == {"retryAfter": 1}


def test_auth_and_dead_mans_switch_acks() -> None:
    request = {"op": "authKeyExpires", "args": ["key", 1700000000, "sig"]}
    assert decode_server_frame(encode_auth_ack(request)) == AuthAck(request)
    legacy = {"op": "authKey", "args": ["key", 1588878047418, "9C50"]}
    assert decode_server_frame(encode_auth_ack(legacy)) == AuthAck(legacy)
    armed = decode_server_frame(
        '{"now":"2015-09-02T14:18:43.536Z","cancelTime":"2015-09-02T14:19:43.536Z",'
        '"request":{"op":"cancelAllAfter","args":60000}}'
    )
    assert armed == CancelAllAfterAck(
        "2015-09-02T14:18:43.536Z",
        "2015-09-02T14:19:43.536Z",
        {"op": "cancelAllAfter", "args": 60000},
    )
    disarmed = decode_server_frame(
        encode_cancel_all_after_ack("2015-09-02T14:19:11.617Z", 0, {"op": "cancelAllAfter"})
    )
    assert isinstance(disarmed, CancelAllAfterAck) and disarmed.cancel_time == 0


def test_pong_and_help() -> None:
    assert decode_server_frame("pong") == Pong()
    assert decode_server_frame(b"pong") == Pong()
    # The help reply has "info" and a "subscribe" field: neither a welcome nor an ack.
    assert isinstance(decode_server_frame(encode_help()), HelpReply)


def test_table_message_keeps_the_decoded_dict_and_ignores_unknown_fields() -> None:
    frame = (
        '{"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":1,'
        '"side":"Buy","size":5,"price":100.5,"pool":"x"}],"someNewField":1}'
    )
    event = decode_server_frame(frame)
    assert isinstance(event, TableMessage)
    assert (event.table, event.action) == ("orderBookL2", "update")
    assert event.message == orjson.loads(frame)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "",
        "[1,2]",
        '"just a string"',
        '{"table":"trade","action":"upsert","data":[]}',
        '{"table":"trade","action":"insert"}',
        '{"table":"trade","action":"insert","data":{}}',
        '{"table":7,"action":"insert","data":[]}',
        '{"status":400,"error":5}',
        '{"status":"400","error":"x"}',
        '{"success":true,"subscribe":5}',
        '{"now":"x","cancelTime":[1]}',
        '{"hello":"world"}',
        b"\xff\xfe",
    ],
)
def test_malformed_server_frames_raise_remote_protocol_error(frame: str | bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_server_frame(frame)
    assert info.value.frame is not None


def test_remote_protocol_error_prefix_is_bounded() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_server_frame("{" + "x" * 1_000_000)
    assert len(str(info.value)) < 400


def test_subscribe_batches_never_exceed_limits_and_never_empty() -> None:
    assert encode_subscribe([]) == []
    topics = [f"orderBookL2:SYM{i}" for i in range(25)]
    frames = encode_subscribe(topics)
    assert len(frames) == 3
    decoded = [orjson.loads(f) for f in frames]
    assert all(d["op"] == "subscribe" for d in decoded)
    assert [t for d in decoded for t in d["args"]] == topics
    assert all(0 < len(d["args"]) <= MAX_TOPICS_PER_COMMAND for d in decoded)
    long_topics = [f"trade:{'X' * 1500}{i}" for i in range(5)]
    for frame in encode_unsubscribe(long_topics):
        assert len(frame.encode()) <= MAX_COMMAND_BYTES
        assert orjson.loads(frame)["op"] == "unsubscribe"


@pytest.mark.parametrize("topic", ["", "trade:", "a b", "trade:XBT,USD", 'x"y', "a:b:c"])
def test_invalid_topics_are_local_errors(topic: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_subscribe([topic])


def test_topics() -> None:
    assert make_topic("trade") == "trade"
    assert make_topic("trade", "XBTUSD") == "trade:XBTUSD"
    assert parse_topic("trade:XBTUSD") == ("trade", "XBTUSD")
    assert parse_topic("trade:*") == ("trade", None)
    assert parse_topic("margin") == ("margin", None)
    assert encode_subscribe(["trade:*"]) == ['{"op":"subscribe","args":["trade:*"]}']


def test_commands() -> None:
    assert orjson.loads(encode_auth_key_expires("key", 1700000000, "ab")) == {
        "op": "authKeyExpires",
        "args": ["key", 1700000000, "ab"],
    }
    assert encode_cancel_all_after(60000) == '{"op":"cancelAllAfter","args":60000}'
    assert encode_cancel_all_after(0) == '{"op":"cancelAllAfter","args":0}'
    for bad in (-1, 1.5, True):
        with pytest.raises(LocalProtocolError):
            encode_cancel_all_after(bad)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode_auth_key_expires("key", "1700000000", "ab")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode_auth_key_expires("", 1, "ab")


def test_client_frames_server_role() -> None:
    assert decode_client_frame("ping") == Ping()
    assert decode_client_frame('"help"') == Help()
    sub = decode_client_frame('{"op":"subscribe","args":"trade:XBTUSD"}')
    assert sub == Subscribe(("trade:XBTUSD",), {"op": "subscribe", "args": "trade:XBTUSD"})
    unsub = decode_client_frame('{"op":"unsubscribe","args":["a","b"]}')
    assert isinstance(unsub, Unsubscribe) and unsub.topics == ("a", "b")
    auth = decode_client_frame('{"op":"authKeyExpires","args":["k",1700000000,"sig"]}')
    assert isinstance(auth, AuthKeyExpires)
    assert (auth.api_key, auth.expires, auth.signature, auth.legacy) == (
        "k",
        1700000000,
        "sig",
        False,
    )
    assert "sig" not in repr(auth)
    legacy = decode_client_frame('{"op":"authKey","args":["k",1588878047418,"SIG"]}')
    assert isinstance(legacy, AuthKeyExpires) and legacy.legacy
    assert decode_client_frame('{"op":"cancelAllAfter","args":60000}') == CancelAllAfter(
        60000, {"op": "cancelAllAfter", "args": 60000}
    )
    assert isinstance(decode_client_frame('{"op":"cancelAllAfter","args":[0]}'), CancelAllAfter)


@pytest.mark.parametrize(
    ("frame", "request_echo"),
    [
        ("hello", {}),
        ("{broken", {}),
        ("[1]", [1]),
        ('{"args":["x"]}', {"args": ["x"]}),
        ('{"op":"trade","args":["x"]}', {"op": "trade", "args": ["x"]}),
        ('{"op":"subscribe","args":[]}', {"op": "subscribe", "args": []}),
        ('{"op":"subscribe","args":[5]}', {"op": "subscribe", "args": [5]}),
        (
            '{"op":"authKeyExpires","args":["k","1","s"]}',
            {"op": "authKeyExpires", "args": ["k", "1", "s"]},
        ),
        ('{"op":"cancelAllAfter","args":-5}', {"op": "cancelAllAfter", "args": -5}),
    ],
)
def test_unrecognized_client_frames(frame: str, request_echo: object) -> None:
    event = decode_client_frame(frame)
    assert isinstance(event, Unrecognized)
    assert event.request == request_echo


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_decode_client_frame_never_raises(frame: str | bytes) -> None:
    decode_client_frame(frame)


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_decode_server_frame_raises_only_typed_errors(frame: str | bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_server_frame(frame)


def test_server_encoders_round_trip() -> None:
    welcome = decode_server_frame(
        encode_welcome("2025-01-01T00:00:00.000Z", limit_remaining=719, app_name="emu")
    )
    assert isinstance(welcome, Welcome)
    assert (welcome.version, welcome.limit_remaining, welcome.heartbeat_enabled) == (
        "2.0.0",
        719,
        False,
    )
    assert welcome.raw["appName"] == "emu"
    partial = orjson.loads(
        encode_table("trade", "partial", [], keys=[], types={"x": "long"}, filter={"symbol": "A"})
    )
    assert partial == {
        "table": "trade",
        "action": "partial",
        "keys": [],
        "types": {"x": "long"},
        "filter": {"symbol": "A"},
        "data": [],
    }
    insert = orjson.loads(encode_table("trade", "insert", [{"a": 1}]))
    assert insert == {"table": "trade", "action": "insert", "data": [{"a": 1}]}
    with pytest.raises(LocalProtocolError):
        encode_table("trade", "upsert", [])
    assert isinstance(decode_server_frame(encode_unsubscribe_ack("x", {})), UnsubscribeAck)
