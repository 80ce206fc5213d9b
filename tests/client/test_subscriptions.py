"""The subscription state machine, without sockets: every transition, the illegal ones, and what
each method tells the session to do (frames to send, listeners to fail, slices to clear)."""

from __future__ import annotations

import pytest

from bitmex_trio_websocket import LocalProtocolError
from bitmex_trio_websocket._subscriptions import (
    RESYNC_LIMIT,
    RESYNC_WINDOW,
    Failed,
    Plan,
    Subscriptions,
    TopicInput,
    TopicState,
    server_topics,
)

IDLE, PENDING, ACTIVE, LEAVING = (
    TopicState.IDLE,
    TopicState.PENDING,
    TopicState.ACTIVE,
    TopicState.LEAVING,
)
In = TopicInput
TOPIC = "orderBookL2:XBTUSD"
SLICE = ("orderBookL2", "XBTUSD")

# Written out independently of the module's table: (state, input) -> next state. Anything not
# listed is illegal.
EXPECTED = {
    (IDLE, In.WANT): PENDING,
    (PENDING, In.UNWANT): LEAVING,
    (PENDING, In.SUBSCRIBED): ACTIVE,
    (PENDING, In.ALREADY_SUBSCRIBED): ACTIVE,
    (PENDING, In.SUBSCRIBE_REFUSED): IDLE,
    (PENDING, In.EXPIRED): IDLE,
    (ACTIVE, In.UNWANT): LEAVING,
    (ACTIVE, In.RESYNC): LEAVING,
    (LEAVING, In.UNSUBSCRIBED): IDLE,
    (LEAVING, In.UNSUBSCRIBE_REFUSED): IDLE,
    **{(state, In.RESET): IDLE for state in TopicState},
}
SERVER_REPLIES = [
    In.SUBSCRIBED,
    In.ALREADY_SUBSCRIBED,
    In.SUBSCRIBE_REFUSED,
    In.UNSUBSCRIBED,
    In.UNSUBSCRIBE_REFUSED,
]
# Server replies are untrusted: where they do not fit, they are ignored (state unchanged).
for _state in TopicState:
    for _reply in SERVER_REPLIES:
        EXPECTED.setdefault((_state, _reply), _state)


def machine_in(state: TopicState) -> Subscriptions:
    """A machine whose TOPIC is in ``state``, reached through the public methods."""
    subs = Subscriptions()
    if state is IDLE:
        return subs
    subs.want(SLICE)
    assert subs.plan().subscribe == (TOPIC,)
    if state is ACTIVE:
        subs.subscribed(TOPIC)
    elif state is LEAVING:
        subs.subscribed(TOPIC)
        subs.unwant(SLICE)
        assert subs.plan().unsubscribe == (TOPIC,)
    assert subs.state(TOPIC) is state
    return subs


@pytest.mark.parametrize("event", list(TopicInput), ids=lambda e: e.name)
@pytest.mark.parametrize("state", list(TopicState), ids=lambda s: s.name)
def test_every_transition(state: TopicState, event: TopicInput) -> None:
    subs = machine_in(state)
    expected = EXPECTED.get((state, event))
    if expected is None:
        with pytest.raises(LocalProtocolError, match=f"{event.value} {TOPIC!r} while it is"):
            subs.process(TOPIC, event)
        assert subs.state(TOPIC) is state  # an illegal input changes nothing
    else:
        assert subs.process(TOPIC, event) is expected
        assert subs.state(TOPIC) is expected


def test_server_topics_wide_demand_covers_narrow() -> None:
    assert server_topics([("trade", "XBTUSD"), ("instrument", None)]) == {
        "trade:XBTUSD": [("trade", "XBTUSD")],
        "instrument": [("instrument", None)],
    }
    assert server_topics([("trade", "XBTUSD"), ("trade", None), ("trade", "ETHUSD")]) == {
        "trade": [("trade", "XBTUSD"), ("trade", None), ("trade", "ETHUSD")]
    }


def test_demand_is_counted_and_planned_once() -> None:
    subs = Subscriptions()
    subs.want(SLICE)
    subs.want(SLICE)
    subs.want(("trade", None))
    plan = subs.plan()
    assert plan == Plan(unsubscribe=(), subscribe=(TOPIC, "trade"), batch=1)
    assert subs.plan() == Plan((), (), 0)  # nothing changed: nothing to send
    subs.unwant(SLICE)
    assert subs.plan() == Plan((), (), 0)  # one listener left
    subs.unwant(SLICE)
    left = subs.plan()
    assert left.unsubscribe == (TOPIC,) and left.subscribe == ()
    assert left.reset == [SLICE]  # rows no longer kept current are cleared
    assert subs.demanded() == {("trade", None)}


def test_a_wide_listener_replaces_the_symbol_subscription() -> None:
    subs = Subscriptions()
    subs.want(SLICE)
    subs.plan()
    subs.subscribed(TOPIC)
    subs.want(("orderBookL2", None))
    plan = subs.plan()
    assert (plan.unsubscribe, plan.subscribe) == ((TOPIC,), ("orderBookL2",))


def test_a_topic_being_left_is_subscribed_again_only_after_its_ack() -> None:
    subs = machine_in(LEAVING)
    subs.want(SLICE)
    assert subs.plan() == Plan((), (), 0)
    assert subs.unsubscribed(TOPIC) is True  # plan again
    assert subs.plan().subscribe == (TOPIC,)


def test_unsolicited_and_duplicated_replies_change_nothing() -> None:
    subs = machine_in(ACTIVE)
    assert subs.unsubscribed("never-subscribed") is False
    assert subs.unsubscribed(TOPIC) is False  # not leaving: ignored
    subs.subscribed(TOPIC)
    subs.subscribed("never-subscribed")
    assert subs.refused(["never-subscribed"], "Unknown table", unsubscribe=False) == []
    assert (subs.state(TOPIC), subs.state("never-subscribed")) == (ACTIVE, IDLE)
    assert subs.demanded() == {SLICE}


def test_already_subscribed_is_benign() -> None:
    subs = machine_in(PENDING)
    assert subs.refused([TOPIC], f"You are already subscribed to {TOPIC}.", unsubscribe=False) == []
    assert subs.state(TOPIC) is ACTIVE
    assert subs.demanded() == {SLICE}


def test_a_refused_subscribe_fails_the_demand_it_served() -> None:
    subs = Subscriptions()
    for demand in [("trade", "XBTUSD"), ("trade", None), ("instrument", None)]:
        subs.want(demand)
    subs.plan()
    failed = subs.refused(["trade", "instrument"], "Unknown or expired: trade", unsubscribe=False)
    # Only the topic the error names, and both listeners it served.
    assert failed == [Failed("trade", (("trade", "XBTUSD"), ("trade", None)))]
    assert subs.state("trade") is IDLE and subs.state("instrument") is PENDING
    assert subs.demanded() == {("instrument", None)}
    assert subs.plan() == Plan((), (), 0)  # the failed demand is not asked for again
    # An error naming none of its topics refuses them all.
    assert subs.refused(["instrument"], "Rate limited", unsubscribe=False) == [
        Failed("instrument", (("instrument", None),))
    ]


def test_a_refused_unsubscribe_ends_leaving_and_fails_nobody() -> None:
    subs = machine_in(LEAVING)
    assert subs.refused([TOPIC], "Not subscribed", unsubscribe=True) == []
    assert subs.state(TOPIC) is IDLE


def test_expiry_fails_only_the_unanswered_topics_of_its_batch() -> None:
    subs = Subscriptions()
    subs.want(("trade", None))
    subs.want(("instrument", None))
    first = subs.plan().batch
    subs.want(("quote", None))
    second = subs.plan().batch
    assert first != second
    subs.subscribed("trade")
    assert subs.unanswered(first) == ["instrument"]
    assert subs.expire(first) == [Failed("instrument", (("instrument", None),))]
    assert subs.unanswered(first) == [] and subs.expire(first) == []
    assert subs.state("quote") is PENDING and subs.unanswered(second) == ["quote"]
    assert subs.demanded() == {("trade", None), ("quote", None)}


def test_a_subscribe_of_an_old_batch_does_not_expire_a_newer_one() -> None:
    subs = machine_in(PENDING)
    old = 1
    subs.unwant(SLICE)
    subs.plan()  # left while pending
    subs.unsubscribed(TOPIC)
    subs.want(SLICE)
    new = subs.plan().batch
    assert new != old
    assert subs.expire(old) == [] and subs.state(TOPIC) is PENDING
    assert subs.unanswered(new) == [TOPIC]


def test_resync_within_budget_then_the_session_must_die() -> None:
    subs = machine_in(ACTIVE)
    now = 1000.0
    for n in range(RESYNC_LIMIT):
        resync = subs.resync({SLICE}, now + n)
        assert (resync.unsubscribe, resync.fatal) == ((TOPIC,), None)
        assert subs.state(TOPIC) is LEAVING
        subs.unsubscribed(TOPIC)
        subs.plan()
        subs.subscribed(TOPIC)
    spent = subs.resync({SLICE}, now + RESYNC_LIMIT)
    assert spent.unsubscribe == ()
    assert spent.fatal == f"{TOPIC} needed {RESYNC_LIMIT} resyncs in a row"
    assert subs.state(TOPIC) is ACTIVE  # nothing changed
    # The window slides: a minute after the first, one is allowed again.
    assert subs.resync({SLICE}, now + RESYNC_WINDOW).unsubscribe == (TOPIC,)


def test_resync_maps_demand_to_active_server_topics() -> None:
    subs = Subscriptions()
    for demand in [("orderBookL2", "XBTUSD"), ("orderBookL2", "ETHUSD"), ("trade", "XBTUSD")]:
        subs.want(demand)
    subs.plan()
    subs.subscribed("orderBookL2:XBTUSD")
    subs.subscribed("trade:XBTUSD")
    # ETHUSD is still pending: its partial is on the way, nothing to re-fetch.
    assert subs.resync({("orderBookL2", "ETHUSD")}, 0).unsubscribe == ()
    # (table, None) stands for every slice of the table (a message rejected whole).
    assert subs.resync({("orderBookL2", None)}, 0).unsubscribe == ("orderBookL2:XBTUSD",)
    assert subs.resync({("trade", "XBTUSD")}, 0).unsubscribe == ("trade:XBTUSD",)
    assert subs.resync(subs.demanded(), 0).unsubscribe == ()  # all left or pending now


def test_reset_forgets_the_server_but_not_demand_nor_the_budget() -> None:
    subs = machine_in(ACTIVE)
    for n in range(RESYNC_LIMIT):
        subs.resync({SLICE}, n)
        subs.unsubscribed(TOPIC)
        subs.plan()
        subs.subscribed(TOPIC)
    assert subs.reset() == [SLICE]  # to clear: no deltas before the new partial
    assert subs.state(TOPIC) is IDLE and not subs.covers(SLICE)
    plan = subs.plan()
    assert plan.subscribe == (TOPIC,)
    subs.subscribed(TOPIC)
    # A topic that kept breaking before the reconnect gets no fresh budget.
    assert subs.resync({SLICE}, RESYNC_LIMIT).fatal is not None


def test_covers_is_true_only_for_an_acknowledged_covering_topic() -> None:
    subs = machine_in(PENDING)
    assert not subs.covers(SLICE)
    subs.subscribed(TOPIC)
    assert subs.covers(SLICE)
    assert not subs.covers(("orderBookL2", "ETHUSD"))
    assert not subs.covers(("orderBookL2", None))
    subs.want(("orderBookL2", None))
    subs.plan()
    subs.subscribed("orderBookL2")
    assert subs.covers(("orderBookL2", "ETHUSD"))


def test_removing_a_listener_that_is_not_there_is_a_local_error() -> None:
    subs = Subscriptions()
    with pytest.raises(LocalProtocolError):
        subs.unwant(SLICE)
    subs.want(SLICE)
    subs.discard_demand()
    with pytest.raises(LocalProtocolError):
        subs.unwant(SLICE)
