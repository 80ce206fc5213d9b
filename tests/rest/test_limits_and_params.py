"""The sans-IO parts: the rate-limit tracker's waits, the wire form, clOrdIDs, retry safety."""

from __future__ import annotations

import pytest

from bitmex_trio_websocket._rest._limits import RateLimit, RateLimitTracker
from bitmex_trio_websocket._rest._params import ClOrdIDs, build_request, retry_safe


def headers(limit: int, remaining: int, remaining_1s: int | None = None) -> dict[str, str]:
    out = {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining),
           "x-ratelimit-reset": "1767225660"}  # fmt: skip
    if remaining_1s is not None:
        out["x-ratelimit-remaining-1s"] = str(remaining_1s)
    return out


def test_nothing_known_nothing_waits() -> None:
    tracker = RateLimitTracker()
    assert tracker.ready_at(100.0, order_route=True) == 100.0
    assert tracker.latest == RateLimit()


def test_an_empty_bucket_waits_for_one_token_at_the_minute_rate() -> None:
    tracker = RateLimitTracker()
    tracker.observe(headers(120, 0), now=10.0)
    assert tracker.ready_at(10.0, order_route=False) == pytest.approx(10.5)  # 2 a second
    assert tracker.ready_at(10.5, order_route=False) == 10.5
    assert tracker.latest == RateLimit(120, 0, 1767225660, None)


def test_sending_spends_the_bound_so_a_burst_stops_at_zero() -> None:
    tracker = RateLimitTracker()
    tracker.observe(headers(60, 2), now=0.0)
    for _ in range(2):
        assert tracker.ready_at(0.0, order_route=False) == 0.0
        tracker.sent(0.0, order_route=False)
    assert tracker.ready_at(0.0, order_route=False) == pytest.approx(1.0)


def test_the_bound_never_exceeds_the_bucket() -> None:
    tracker = RateLimitTracker()
    tracker.observe(headers(60, 0), now=0.0)
    for _ in range(60):  # an hour later the bucket is full: 60, not 3600
        tracker.sent(3600.0, order_route=False)
    assert tracker.ready_at(3600.0, order_route=False) == pytest.approx(3601.0)


def test_the_second_bucket_is_estimated_from_the_largest_figure_seen() -> None:
    tracker = RateLimitTracker()
    tracker.observe(headers(120, 100, remaining_1s=9), now=0.0)  # so at least 10 a second
    tracker.observe(headers(120, 99, remaining_1s=0), now=0.0)
    assert tracker.ready_at(0.0, order_route=True) == pytest.approx(0.1)
    assert tracker.ready_at(0.0, order_route=False) == 0.0


def test_a_429_blocks_everything_for_retry_after() -> None:
    tracker = RateLimitTracker()
    tracker.refused(30.0, now=5.0)
    assert tracker.ready_at(6.0, order_route=False) == 35.0


def test_answers_without_limit_headers_teach_nothing() -> None:
    tracker = RateLimitTracker()
    tracker.observe(headers(120, 0), now=0.0)
    tracker.observe({"content-type": "application/json"}, now=0.0)
    assert tracker.latest.remaining == 0
    tracker.observe({"x-ratelimit-limit": "junk", "x-ratelimit-remaining": "1.0"}, now=0.0)
    assert tracker.latest.remaining == 1


def test_wire_form_of_gets_and_bodies() -> None:
    get = build_request("GET", "/api/v1", "/order", {"filter": {"open": True}, "symbol": None,
                                                      "reverse": True, "count": 5})  # fmt: skip
    assert get.target == "/api/v1/order?filter=%7B%22open%22%3Atrue%7D&reverse=true&count=5"
    assert get.body == b""
    post = build_request("POST", "/api/v1", "/order", {"symbol": "XBTUSD", "price": None})
    assert (post.target, post.body) == ("/api/v1/order", b'{"symbol":"XBTUSD"}')
    assert post.describe() == {
        "method": "POST",
        "path": "/api/v1/order",
        "params": {"symbol": "XBTUSD"},
    }


def test_only_reads_and_named_new_orders_are_safe_to_send_twice() -> None:
    def safe(method: str, path: str, **params: object) -> bool:
        return retry_safe(build_request(method, "/api/v1", path, params))

    assert safe("GET", "/order")
    assert safe("POST", "/order", symbol="XBTUSD", clOrdID="a-1")
    assert not safe("POST", "/order", symbol="XBTUSD")
    assert not safe("PUT", "/order", orderID="o", clOrdID="a-1")
    assert not safe("DELETE", "/order", orderID="o")
    assert not safe("DELETE", "/order/all")
    assert not safe("POST", "/position/leverage", symbol="XBTUSD", leverage=1)
    assert not safe("POST", "/order/cancelAllAfter", timeout=1000)


def test_clordids_count_up_under_a_random_or_fixed_prefix() -> None:
    fixed = ClOrdIDs("bt")
    assert [fixed.next(), fixed.next()] == ["bt-1", "bt-2"]
    a, b = ClOrdIDs(), ClOrdIDs()
    assert a.prefix != b.prefix and len(a.next()) <= 36
    with pytest.raises(ValueError):
        ClOrdIDs("")
