"""Fuzzing the sans-IO codec with structured mutations of real-shaped frames (suite-sized).

The big run is ``python -m stress.fuzz_campaign``; these keep the same targets in CI with few
examples, plus deterministic regressions for every problem the campaign found.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitmex_trio_websocket import RemoteProtocolError
from bitmex_trio_websocket._protocol import (
    TableMessage,
    Unrecognized,
    decode_client_frame,
    decode_server_frame,
)
from stress import fuzz_campaign
from tests.support.fuzz_findings import Findings
from tests.support.fuzz_strategies import SUITE, Deep, to_json
from tests.support.fuzz_targets import (
    check_client_frame,
    check_server_frame,
    client_frame_case,
    server_frame_case,
)

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def unexpected(findings: Findings) -> list[str]:
    return [*findings.problems("crash"), *findings.problems("corruption")]


@FUZZ
@given(st.data())
def test_server_frames_decode_or_raise_the_typed_error(data: st.DataObject) -> None:
    findings = Findings()
    server_frame_case(data, SUITE, findings)
    assert unexpected(findings) == [], findings.report()
    assert findings.false_rejections == {}, findings.report()


@FUZZ
@given(st.data())
def test_client_frames_never_raise(data: st.DataObject) -> None:
    findings = Findings()
    client_frame_case(data, SUITE, findings)
    assert unexpected(findings) == [], findings.report()


HOSTILE_SERVER_FRAMES: list[str | bytes] = [
    "",
    "{",
    "NaN",
    '{"table":"trade","action":"insert","data":[{"price":NaN}]}',
    '{"table":"trade","action":"insert","data":[{"price":1e400}]}',
    '{"table":"trade","action":"insert","data":[{"price":-Infinity}]}',
    "[" * 1025 + "]" * 1025,  # one past orjson's nesting limit
    '{"table":"trade","action":"insert","data":[' + "[" * 1023 + "]" * 1023 + "]}",
    b'{"table":"trade","action":"insert","data":[{"symbol":"XBT\xffUSD"}]}',
    '{"table":"trade","action":"insert","data":[{"symbol":"\\ud800"}]}',
    "\ufeff" + '{"table":"trade","action":"insert","data":[]}',
    '{"table":"trade","action":"insert","data":[]} trailing',
    '{"table":"trade","action":"upsert","data":[]}',
    '{"table":"trade","action":"insert","data":{}}',
    '{"table":7,"action":"insert","data":[]}',
    '{"error":["not","text"]}',
    '{"status":true,"error":"x"}',
    '{"success":true,"subscribe":5}',
    '{"now":"x","cancelTime":[1]}',
    '{"success":true}',
    "[]",
    "ping",
    "PONG",
]


@pytest.mark.parametrize("frame", HOSTILE_SERVER_FRAMES, ids=lambda f: repr(f)[:40])
def test_hostile_server_frames_raise_remote_protocol_error(frame: str | bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_server_frame(frame)
    assert len(str(info.value)) < 400  # a bounded prefix, never the whole frame


def test_surprising_but_well_formed_frames_decode() -> None:
    # Duplicated keys: the last one wins, as in every JSON parser BitMEX clients use.
    event = decode_server_frame('{"table":"x","table":"trade","action":"insert","data":[]}')
    assert isinstance(event, TableMessage) and event.table == "trade"
    # Integers beyond 64 bits arrive as floats; deep but legal nesting is kept.
    event = decode_server_frame(
        '{"table":"trade","action":"insert","data":[{"size":18446744073709551616,"x":'
        + to_json(Deep(1000, "list").build())
        + "}]}"
    )
    assert isinstance(event, TableMessage)
    assert event.message["data"][0]["size"] == 2.0**64


def test_enormous_frame_error_text_is_bounded() -> None:
    frame = '{"table":"trade","action":"insert","data":"' + "x" * 5_000_000 + '"}'
    with pytest.raises(RemoteProtocolError) as info:
        decode_server_frame(frame)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    "frame",
    [
        "\ud800",
        b"\xff\xfe",
        "[" * 5000,
        '{"op":"subscribe","args":[' + "[" * 1023 + "]" * 1023 + "]}",
        '{"op":"authKeyExpires","args":["k",1e400,"s"]}',
        '{"op":"authKeyExpires","args":["k",NaN,"s"]}',
        '{"op":"cancelAllAfter","args":[true]}',
        '{"op":"cancelAllAfter","args":-1}',
        '{"op":"subscribe","args":[""]}',
        '{"op":"subscribe","args":[]}',
    ],
    ids=lambda f: repr(f)[:40],
)
def test_hostile_client_frames_are_unrecognized(frame: str | bytes) -> None:
    assert isinstance(decode_client_frame(frame), Unrecognized)


# --------------------------------------------------------------------------- found by fuzzing
# The campaign found these (issue 8); they were fixed in _protocol and are kept as regressions.


@pytest.mark.parametrize("action", ["[]", "{}", '["insert"]'])
def test_unhashable_action_is_a_protocol_error(action: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_server_frame(f'{{"table":"trade","action":{action},"data":[]}}')


def test_unhashable_request_op_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_server_frame('{"success":true,"request":{"op":["authKeyExpires"]}}')


@pytest.mark.parametrize("op", ["[]", "{}", '["subscribe"]'])
def test_unhashable_client_op_is_unrecognized(op: str) -> None:
    assert isinstance(decode_client_frame(f'{{"op":{op},"args":["trade"]}}'), Unrecognized)


def test_findings_classify_a_crash_and_keep_samples() -> None:
    findings = Findings()
    check_server_frame('{"table":"trade","action":[],"data":[]}', findings, expect_valid=False)
    check_client_frame('{"op":"subscribe","args":["trade"]}', findings)
    assert findings.inputs == {"server-frames": 1, "client-frames": 1}
    assert findings.problems("crash") == {}
    assert findings.rejected["server-frames"] == 1
    assert "inputs" in findings.report()


def test_campaign_script_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    status = fuzz_campaign.main(
        ["--count", "30", "--small", "--targets", "client-frames", "--memory-limit-gb", "0"]
    )
    out = capsys.readouterr().out
    assert "client-frames" in out and "inputs tried: " in out
    assert "crashes: 0" in out and "corruptions: 0" in out and status == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("target", ["server-frames", "client-frames"])
def test_the_campaign_in_small(target: str, seed: int) -> None:
    # ``python -m stress.fuzz_campaign --small`` for the codec, 150 inputs per seed and target.
    findings = fuzz_campaign.run_target(target, 150, scale=SUITE, seed=seed)
    assert findings.inputs[target] >= 150 and findings.accepted[target] > 0
    assert unexpected(findings) == [], findings.report()
    assert findings.harness_errors == {}, findings.report()


@pytest.mark.parametrize("value", ["true", "false"])
def test_boolean_cancel_time_is_a_protocol_error(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_server_frame(f'{{"now":"2025-01-01T00:00:00.000Z","cancelTime":{value}}}')
