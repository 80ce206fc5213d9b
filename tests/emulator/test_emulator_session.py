"""The emulator's sans-IO session: client commands in, BitMEX's replies and effects out.

No sockets and no trio: a ``Session`` is fed commands decoded from the frames a client sends,
and the test reads back the frames it would send and the effects (topic opened or closed, dead
man's switch set) the connection would carry out.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bitmex_trio_websocket._auth import realtime_signature
from bitmex_trio_websocket._protocol import decode_client_frame
from bitmex_trio_websocket.emulator import DEFAULT_ACCOUNT, DEFAULT_API_KEY, DEFAULT_API_SECRET
from bitmex_trio_websocket.emulator._handshake import Authenticator
from bitmex_trio_websocket.emulator._limits import Limits
from bitmex_trio_websocket.emulator._session import (
    CloseSession,
    Output,
    Session,
    SwitchSet,
    TopicClosed,
    TopicOpened,
)

NOW = 1_735_689_600.0  # 2025-01-01T00:00:00Z
DOCS = " Please see the documentation at https://www.bitmex.com/app/wsAPI."
SYMBOLS = frozenset({"XBTUSD", "ETHUSD"})


class Forced:
    """Counts the authentications the fail-next-auth fault forced to fail."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def make_session(path: str = "/realtime", *, account: int | None = None) -> Session:
    authenticator = Authenticator(
        {DEFAULT_API_KEY: (DEFAULT_API_SECRET, DEFAULT_ACCOUNT)}, lambda: NOW, Forced()
    )
    return Session(path=path, symbols=SYMBOLS, authenticator=authenticator, account=account)


def send(session: Session, message: Any) -> list[Output]:
    text = message if isinstance(message, str) else orjson.dumps(message).decode()
    return session.handle(decode_client_frame(text), NOW)


def frames(outputs: list[Output]) -> list[Any]:
    """The frames among ``outputs``, decoded (``"pong"`` stays a string)."""
    return [o if o == "pong" else orjson.loads(o) for o in outputs if isinstance(o, str)]


def subscribe(*topics: str) -> dict[str, Any]:
    return {"op": "subscribe", "args": list(topics)}


def auth(
    key: str = DEFAULT_API_KEY, secret: str = DEFAULT_API_SECRET, expires: int = int(NOW) + 60
) -> dict[str, Any]:
    return {"op": "authKeyExpires", "args": [key, expires, realtime_signature(secret, expires)]}


def error(outputs: list[Output]) -> tuple[int, str]:
    (reply,) = frames(outputs)
    return reply["status"], reply["error"]


# --------------------------------------------------------------------------- subscribe


def test_subscribe_acks_each_topic_then_opens_it_in_order() -> None:
    session = make_session()
    request = subscribe("trade:XBTUSD", "instrument")
    outputs = send(session, request)
    assert len(outputs) == 4
    assert frames(outputs[0:1]) == [
        {"success": True, "subscribe": "trade:XBTUSD", "request": request}
    ]
    assert isinstance(outputs[1], TopicOpened)
    sub = outputs[1].subscription
    assert (sub.topic, sub.table, sub.symbol, sub.account, sub.active) == (
        "trade:XBTUSD",
        "trade",
        "XBTUSD",
        None,
        True,
    )
    assert frames(outputs[2:3])[0]["subscribe"] == "instrument"
    assert isinstance(outputs[3], TopicOpened)
    assert outputs[3].subscription.symbol is None
    assert session.topics == ("trade:XBTUSD", "instrument")


@pytest.mark.parametrize(
    ("topic", "status", "text"),
    [
        ("nonsense", 400, "Unknown table: nonsense"),
        ("chat", 400, "Unknown table: chat"),  # platform tables live on /realtimePlatform
        ("margin:XBTUSD", 400, "Unknown table: margin:XBTUSD"),  # margin has no symbol
        ("trade:NOPE", 400, "Unknown or expired symbol."),
        (
            "order",
            401,
            "User requested an account-locked subscription but no authorization was provided.",
        ),
    ],
)
def test_refused_subscriptions_get_bitmex_errors_and_open_nothing(
    topic: str, status: int, text: str
) -> None:
    session = make_session()
    outputs = send(session, subscribe(topic))
    assert error(outputs) == (status, text)
    assert session.topics == ()


def test_private_refusal_lists_the_account_locked_tables() -> None:
    (reply,) = frames(send(make_session(), subscribe("position")))
    assert "position" in reply["meta"]["notes"]
    assert reply["request"] == subscribe("position")


def test_a_second_subscription_to_a_topic_is_refused() -> None:
    session = make_session()
    send(session, subscribe("trade:XBTUSD"))
    outputs = send(session, subscribe("trade:XBTUSD"))
    assert error(outputs) == (400, "You are already subscribed to this topic:trade:XBTUSD." + DOCS)
    assert session.topics == ("trade:XBTUSD",)


def test_private_subscriptions_carry_the_account() -> None:
    session = make_session(account=DEFAULT_ACCOUNT)
    opened = [o for o in send(session, subscribe("order", "trade")) if isinstance(o, TopicOpened)]
    assert [o.subscription.account for o in opened] == [DEFAULT_ACCOUNT, None]


def test_the_platform_endpoint_serves_only_platform_tables() -> None:
    session = make_session("/realtimePlatform")
    outputs = send(session, subscribe("chat", "trade"))
    assert isinstance(outputs[1], TopicOpened)
    assert frames(outputs[2:]) == [
        {
            "status": 400,
            "error": "Unknown table: trade",
            "meta": {},
            "request": subscribe("chat", "trade"),
        }
    ]


# --------------------------------------------------------------------------- unsubscribe


def test_unsubscribe_closes_the_topic_then_acks() -> None:
    session = make_session()
    (_, opened) = send(session, subscribe("quote:ETHUSD"))
    assert isinstance(opened, TopicOpened)
    request = {"op": "unsubscribe", "args": ["quote:ETHUSD"]}
    outputs = send(session, request)
    assert outputs[0] == TopicClosed(opened.subscription)
    assert not opened.subscription.active
    assert frames(outputs[1:]) == [
        {"success": True, "unsubscribe": "quote:ETHUSD", "request": request}
    ]
    assert session.topics == ()


def test_unsubscribing_a_topic_never_subscribed_is_acknowledged() -> None:
    outputs = send(make_session(), {"op": "unsubscribe", "args": ["trade"]})
    assert [type(o) for o in outputs] == [str]
    assert frames(outputs)[0]["unsubscribe"] == "trade"


def test_unsubscribing_an_unknown_table_is_an_error() -> None:
    assert error(send(make_session(), {"op": "unsubscribe", "args": ["bogus"]})) == (
        400,
        "Unknown table: bogus",
    )


# --------------------------------------------------------------------------- authentication


def test_authentication_succeeds_once() -> None:
    session = make_session()
    assert frames(send(session, auth())) == [{"success": True, "request": auth()}]
    assert (session.account, session.api_key) == (DEFAULT_ACCOUNT, DEFAULT_API_KEY)
    assert error(send(session, auth())) == (400, "This connection is already authenticated.")
    assert isinstance(send(session, subscribe("order"))[1], TopicOpened)


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (auth(secret="wrong"), "Signature not valid."),
        (auth(key="nobody"), "Invalid API Key."),
        (
            auth(expires=int(NOW) - 5),
            "This request has expired - `expires` is in the past. Current time: 1735689600",
        ),
    ],
)
def test_bad_credentials_get_401(command: dict[str, Any], text: str) -> None:
    session = make_session()
    assert error(send(session, command)) == (401, text)
    assert session.account is None


def test_the_fail_next_auth_fault_refuses_good_credentials() -> None:
    forced = Forced()
    authenticator = Authenticator(
        {DEFAULT_API_KEY: (DEFAULT_API_SECRET, DEFAULT_ACCOUNT)}, lambda: NOW, forced
    )
    authenticator.fail_next = 1
    session = Session(path="/realtime", symbols=SYMBOLS, authenticator=authenticator)
    assert error(send(session, auth())) == (401, "Signature not valid.")
    assert forced.count == 1
    assert frames(send(session, auth()))[0]["success"] is True


# --------------------------------------------------------------------------- cancelAllAfter


def test_cancel_all_after_sets_the_switch_then_acks() -> None:
    session = make_session(account=DEFAULT_ACCOUNT)
    request = {"op": "cancelAllAfter", "args": 60000}
    outputs = send(session, request)
    assert outputs[0] == SwitchSet(DEFAULT_ACCOUNT, 60000)
    assert frames(outputs[1:]) == [
        {
            "now": "2025-01-01T00:00:00.000Z",
            "cancelTime": "2025-01-01T00:01:00.000Z",
            "request": request,
        }
    ]


def test_cancel_all_after_zero_disarms() -> None:
    outputs = send(make_session(account=DEFAULT_ACCOUNT), {"op": "cancelAllAfter", "args": 0})
    assert outputs[0] == SwitchSet(DEFAULT_ACCOUNT, 0)
    assert frames(outputs[1:])[0]["cancelTime"] == 0


def test_cancel_all_after_past_the_last_writable_time_is_refused() -> None:
    # 2025 plus 10**15 ms is past year 9999: no cancelTime can say it (it used to crash).
    for timeout in (10**15, 2**63 - 1):
        outputs = send(
            make_session(account=DEFAULT_ACCOUNT), {"op": "cancelAllAfter", "args": timeout}
        )
        assert error(outputs) == (400, "Invalid timeout")
        assert not any(isinstance(output, SwitchSet) for output in outputs)
    outputs = send(make_session(account=DEFAULT_ACCOUNT), {"op": "cancelAllAfter", "args": 10**14})
    assert frames(outputs[1:])[0]["cancelTime"] == "5193-11-16T09:46:40.000Z"


def test_cancel_all_after_needs_authentication() -> None:
    outputs = send(make_session(), {"op": "cancelAllAfter", "args": 60000})
    assert error(outputs) == (
        401,
        "User requested cancelAllAfter but no authorization was provided.",
    )


# --------------------------------------------------------------------------- the rest


def test_ping_help_and_garbage() -> None:
    session = make_session()
    assert send(session, "ping") == ["pong"]
    (help_reply,) = frames(send(session, '"help"'))  # the JSON string "help"
    assert "cancelAllAfter" in help_reply["ops"]
    assert "orderBookL2" in help_reply["subscriptionSubjects"]["public"]
    assert error(send(session, "{not json")) == (
        400,
        "Unrecognized request. See the docs or send 'help' for more details." + DOCS,
    )
    assert error(send(session, {"op": "fly"}))[0] == 400


def test_a_closed_session_ends_its_topics_and_answers_nothing() -> None:
    session = make_session(account=DEFAULT_ACCOUNT)
    opened = [
        o.subscription
        for o in send(session, subscribe("trade", "order"))
        if isinstance(o, TopicOpened)
    ]
    ended = session.close()
    assert ended == opened
    assert not any(sub.active for sub in ended)
    assert session.topics == ()
    assert send(session, "ping") == []
    assert send(session, subscribe("quote")) == []


# --------------------------------------------------------------------------- in-band limits


def limited_session(**options: Any) -> Session:
    authenticator = Authenticator(
        {DEFAULT_API_KEY: (DEFAULT_API_SECRET, DEFAULT_ACCOUNT)}, lambda: NOW, Forced()
    )
    return Session(path="/realtime", symbols=SYMBOLS, authenticator=authenticator,
                   limits=Limits(**options))  # fmt: skip


def test_a_command_burst_gets_bitmex_429_with_retry_after() -> None:
    session = limited_session(command_burst=3, commands_per_second=0.5)
    for topic in ("trade", "quote", "instrument"):
        assert any(isinstance(o, TopicOpened) for o in send(session, subscribe(topic)))
    outputs = send(session, subscribe("funding"))
    assert frames(outputs) == [
        {"status": 429, "error": "Rate limit exceeded, retry in 2 seconds.",
         "meta": {"retryAfter": 2}, "request": subscribe("funding")}
    ]  # fmt: skip
    assert not any(isinstance(o, TopicOpened) for o in outputs)
    # two seconds later a token is back
    later = session.handle(
        decode_client_frame(orjson.dumps(subscribe("funding")).decode()), NOW + 2
    )
    assert any(isinstance(o, TopicOpened) for o in later)


def test_topics_past_the_pending_limit_get_503_each() -> None:
    session = limited_session(max_pending_subscriptions=2)
    outputs = send(session, subscribe("trade", "quote", "instrument", "funding"))
    assert sum(isinstance(o, TopicOpened) for o in outputs) == 2
    refused = [f for f in frames(outputs) if f.get("status") == 503]
    assert refused == [
        {"status": 503, "error": "Max Pending subscription limit reached, please try again later.",
         "request": subscribe("trade", "quote", "instrument", "funding")}
    ] * 2  # fmt: skip


def test_too_many_errors_close_the_session() -> None:
    session = limited_session(max_errors=3)
    for _ in range(2):
        outputs = send(session, "not json")
        assert not any(isinstance(o, CloseSession) for o in outputs)
    outputs = send(session, "not json")
    assert outputs[-1] == CloseSession(1008, "Too many errors in this session.")
