"""BitMEX's request limits: 120 a minute per account, 30 per address unsigned, 10 a second on
order routes; headers, 429 with Retry-After, explicit ``now``s; and the 503 overload fault."""

from __future__ import annotations

import pytest

from bitmex_trio_websocket.emulator.rest import RestLimits

from .fakes import ACCOUNT_A, KEY_B, NOW, call, fake, header, make_app

ORDER = {"symbol": "XBTUSD", "orderQty": 1, "price": 90000.0}


def test_headers_count_down_and_reset_is_when_the_bucket_is_full_again() -> None:
    app = make_app()
    first = call(app, "GET", "/api/v1/order")
    assert header(first, "x-ratelimit-limit") == "120"
    assert header(first, "x-ratelimit-remaining") == "119"
    # one token back every 0.5 s (120 a minute): full again 0.5 s later, as UNIX seconds
    assert header(first, "x-ratelimit-reset") == str(int(NOW) + 1)
    assert header(first, "x-ratelimit-remaining-1s") is None  # not an order route
    second = call(app, "GET", "/api/v1/order")
    assert header(second, "x-ratelimit-remaining") == "118"


def test_the_121st_request_in_a_burst_is_429_with_retry_after_and_consumes_nothing() -> None:
    app = make_app()
    for i in range(120):
        assert call(app, "GET", "/api/v1/order").status == 200, i
    refused = call(app, "GET", "/api/v1/order")
    assert refused.status == 429
    assert refused.json() == {
        "error": {"message": "Rate limit exceeded, retry in 1 seconds.", "name": "RateLimitError"}
    }
    assert header(refused, "retry-after") == "1"
    assert header(refused, "x-ratelimit-remaining") == "0"
    assert call(app, "GET", "/api/v1/order").status == 429  # still nothing back at the same now
    # 0.5 s later exactly one token is back
    assert call(app, "GET", "/api/v1/order", now=NOW + 0.5).status == 200
    assert call(app, "GET", "/api/v1/order", now=NOW + 0.5).status == 429
    later = call(app, "GET", "/api/v1/order", now=NOW + 60.5)  # 120 tokens back: full
    assert header(later, "x-ratelimit-remaining") == "119"


def test_accounts_have_separate_buckets() -> None:
    app = make_app()
    for _ in range(120):
        call(app, "GET", "/api/v1/order")
    assert call(app, "GET", "/api/v1/order").status == 429
    other = call(app, "GET", "/api/v1/order", key=KEY_B)
    assert other.status == 200
    assert header(other, "x-ratelimit-remaining") == "119"


def test_unsigned_requests_get_30_a_minute_per_client_address() -> None:
    app = make_app()
    for _ in range(30):
        assert call(app, "GET", "/api/v1/instrument", key=None, client="10.0.0.1").status == 200
    refused = call(app, "GET", "/api/v1/instrument", key=None, client="10.0.0.1")
    assert refused.status == 429
    assert header(refused, "x-ratelimit-limit") == "30"
    assert header(refused, "retry-after") == "2"  # one token every 2 s
    assert call(app, "GET", "/api/v1/instrument", key=None, client="10.0.0.2").status == 200
    assert call(app, "GET", "/api/v1/instrument", client="10.0.0.1").status == 200  # signed


def test_order_routes_allow_10_a_second_with_remaining_1s_header() -> None:
    app = make_app()
    for i in range(10):
        placed = call(app, "POST", "/api/v1/order", ORDER)
        assert placed.status == 200
        assert header(placed, "x-ratelimit-remaining-1s") == str(9 - i)
    refused = call(app, "POST", "/api/v1/order", ORDER)
    assert refused.status == 429
    assert header(refused, "retry-after") == "1"
    assert header(refused, "x-ratelimit-remaining-1s") == "0"
    assert call(app, "GET", "/api/v1/order").status == 200  # reads are not order routes
    assert call(app, "DELETE", "/api/v1/order/all").status == 429  # cancels are
    assert call(app, "POST", "/api/v1/order", ORDER, now=NOW + 0.1).status == 200
    assert len(fake(app).orders(ACCOUNT_A)) == 11


@pytest.mark.parametrize(
    ("verb", "path", "params", "order_route"),
    [
        ("POST", "/api/v1/order", ORDER, True),
        ("PUT", "/api/v1/order", {"orderID": "x", "price": 1.0}, True),
        ("DELETE", "/api/v1/order", {"orderID": "x"}, True),
        ("DELETE", "/api/v1/order/all", None, True),
        ("POST", "/api/v1/position/leverage", {"symbol": "XBTUSD", "leverage": 5}, True),
        ("POST", "/api/v1/order/cancelAllAfter", {"timeout": 60000}, False),
        ("GET", "/api/v1/position", None, False),
    ],
)
def test_which_routes_carry_the_per_second_limit(
    verb: str, path: str, params: dict[str, object] | None, order_route: bool
) -> None:
    result = call(make_app(), verb, path, params)
    assert (header(result, "x-ratelimit-remaining-1s") is not None) == order_route


def test_limits_are_configurable_and_per_account() -> None:
    app = make_app(limits=RestLimits(per_minute=3, orders_per_second=2))
    app.set_limits(ACCOUNT_A, RestLimits(per_minute=1))
    assert call(app, "GET", "/api/v1/order").status == 200
    assert call(app, "GET", "/api/v1/order").status == 429
    for _ in range(3):
        assert call(app, "GET", "/api/v1/order", key=KEY_B).status == 200
    assert call(app, "GET", "/api/v1/order", key=KEY_B).status == 429
    app.set_limits(ACCOUNT_A, None)  # back to the app's limits: 3, of which 1 is used
    assert header(call(app, "GET", "/api/v1/order"), "x-ratelimit-remaining") == "1"


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RestLimits(orders_per_second=0)


def test_overload_next_sheds_requests_with_bitmex_503() -> None:
    app = make_app()
    app.overload_next(2)
    for _ in range(2):
        shed = call(app, "POST", "/api/v1/order", ORDER)
        assert shed.status == 503
        assert shed.json() == {
            "error": {
                "message": "The system is currently overloaded. Please try again later.",
                "name": "HTTPError",
            }
        }
        assert shed.deltas == []
    assert fake(app).calls == []  # never reached the engine
    placed = call(app, "POST", "/api/v1/order", ORDER)
    assert placed.status == 200
    # the shed requests counted against the limits (BitMEX counted them)
    assert header(placed, "x-ratelimit-remaining") == "117"
    assert header(placed, "x-ratelimit-remaining-1s") == "7"


def test_overload_answers_before_parameters_are_read() -> None:
    app = make_app()
    app.overload_next()
    assert call(app, "POST", "/api/v1/order", {"price": "not a number"}).status == 503


def test_overload_next_refuses_negative() -> None:
    with pytest.raises(ValueError):
        make_app().overload_next(-1)
