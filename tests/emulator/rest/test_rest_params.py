"""Parameters where BitMEX took them (query, JSON body, form body), typed per its swagger."""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson
import pytest

from bitmex_trio_websocket.emulator.rest import RestApp
from bitmex_trio_websocket.emulator.rest._errors import RestError
from bitmex_trio_websocket.emulator.rest._params import Spec, decode, typed

from .fakes import ACCOUNT_A, NOW, fake, make_app, signed

ORDER_SPEC = Spec(
    {"symbol": "str", "orderQty": "int", "price": "float", "reverse": "bool", "filter": "json",
     "startTime": "time", "orderID": "ids"},
    frozenset({"symbol"}),
)  # fmt: skip


def _placed(app: RestApp) -> dict[str, Any]:
    calls = [c for c in fake(app).calls if c[0] == "place_order"]
    assert len(calls) == 1
    assert calls[0][1] == ACCOUNT_A
    params: dict[str, Any] = calls[0][2]
    return params


EXPECTED = {"symbol": "XBTUSD", "side": "Sell", "orderQty": 100, "price": 94000.5,
            "ordType": "Limit", "execInst": "ParticipateDoNotInitiate"}  # fmt: skip
FIELDS = {"symbol": "XBTUSD", "side": "Sell", "orderQty": "100", "price": "94000.5",
          "ordType": "Limit", "execInst": "ParticipateDoNotInitiate"}  # fmt: skip


def test_json_body_is_read_and_typed() -> None:
    app = make_app()
    body = orjson.dumps({**EXPECTED, "orderQty": 100.0})  # Java clients sent 100.0
    assert app.handle(*signed("POST", "/api/v1/order", body), NOW).status == 200
    assert _placed(app) == EXPECTED


def test_form_body_is_read_and_typed() -> None:
    app = make_app()
    body = urllib.parse.urlencode(FIELDS).encode()
    request = signed(
        "POST", "/api/v1/order", body, content_type="application/x-www-form-urlencoded"
    )
    assert app.handle(*request, NOW).status == 200
    assert _placed(app) == EXPECTED


def test_query_string_on_a_post_is_read() -> None:
    # ccxt #368: POST /api/v1/order?symbol=XBTUSD&side=Buy&orderQty=1&ordType=Limit&price=6000
    app = make_app()
    target = "/api/v1/order?" + urllib.parse.urlencode(FIELDS)
    assert app.handle(*signed("POST", target), NOW).status == 200
    assert _placed(app) == EXPECTED


def test_body_wins_over_query_string() -> None:
    app = make_app()
    request = signed("POST", "/api/v1/order?price=1&symbol=XBTUSD", b'{"price": 2.5}')
    assert app.handle(*request, NOW).status == 200
    assert _placed(app) == {"symbol": "XBTUSD", "price": 2.5}


def test_json_text_sent_as_a_form_is_bitmex_required_arg_error() -> None:
    # api-connectors #324: a misspelt Content-Type header left curl's form type on a JSON body.
    body = orjson.dumps(EXPECTED)
    request = signed(
        "POST", "/api/v1/order", body, content_type="application/x-www-form-urlencoded"
    )
    result = make_app().handle(*request, NOW)
    assert result.status == 400
    assert result.json() == {
        "error": {"message": "'symbol' is a required arg.", "name": "HTTPError"}
    }


def test_json_body_without_content_type_is_read() -> None:
    app = make_app()
    request = signed("POST", "/api/v1/order", orjson.dumps(EXPECTED), content_type=None)
    assert app.handle(*request, NOW).status == 200
    assert _placed(app) == EXPECTED


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Unable to parse JSON body"),
        (b"[1, 2]", "Request body must be a JSON object"),
    ],
)
def test_bad_json_bodies_are_validation_errors(body: bytes, message: str) -> None:
    result = make_app().handle(*signed("POST", "/api/v1/order", body), NOW)
    assert result.status == 400
    assert result.json() == {"error": {"message": message, "name": "ValidationError"}}


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"orderQty": 1.5}, "orderQty"),
        ({"orderQty": "ten"}, "orderQty"),
        ({"orderQty": True}, "orderQty"),
        ({"price": "NaN"}, "price"),
        ({"price": "Infinity"}, "price"),
        ({"price": [1]}, "price"),
        ({"side": {"a": 1}}, "side"),
    ],
)
def test_values_that_do_not_fit_are_invalid_name(params: dict[str, Any], name: str) -> None:
    body = orjson.dumps({"symbol": "XBTUSD", **params})
    result = make_app().handle(*signed("POST", "/api/v1/order", body), NOW)
    assert result.status == 400
    assert result.json() == {"error": {"message": f"Invalid {name}", "name": "ValidationError"}}


def test_typed_kinds() -> None:
    raw = decode(
        "symbol=XBTUSD&reverse=TRUE&filter=%7B%22side%22%3A+%22Buy%22%7D"
        "&startTime=2025-01-01T00:00:01.500Z&orderID=a&orderID=b&unknown=1&price=",
        {},
        b"",
    )
    assert typed(raw, ORDER_SPEC) == {
        "symbol": "XBTUSD", "reverse": True, "filter": {"side": "Buy"},
        "startTime": NOW + 1.5, "orderID": ["a", "b"],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "epoch"),
    [("2025-01-01", NOW), ("2025-01-01T00:00", NOW), ("2025-01-01 00:00:02", NOW + 2),
     ("2025-01-01T01:00:00+01:00", NOW)],
)  # fmt: skip
def test_time_parameters_accept_dates_and_date_times(text: str, epoch: float) -> None:
    assert typed({"symbol": ["X"], "startTime": [text]}, ORDER_SPEC)["startTime"] == epoch


def test_ids_as_json_array_text_or_list() -> None:
    assert typed({"symbol": ["X"], "orderID": ['["a","b"]']}, ORDER_SPEC)["orderID"] == ["a", "b"]
    assert typed({"symbol": ["X"], "orderID": [["a", "b"]]}, ORDER_SPEC)["orderID"] == ["a", "b"]
    with pytest.raises(RestError, match="Invalid orderID"):
        typed({"symbol": ["X"], "orderID": [[1]]}, ORDER_SPEC)


@pytest.mark.parametrize(
    ("name", "value"),
    [("reverse", "yes"), ("filter", "{oops"), ("filter", "3"), ("startTime", "yesterday"),
     ("startTime", 5)],
)  # fmt: skip
def test_typed_refusals(name: str, value: Any) -> None:
    with pytest.raises(RestError) as caught:
        typed({"symbol": ["X"], name: [value]}, ORDER_SPEC)
    assert (caught.value.status, caught.value.name) == (400, "ValidationError")
    assert caught.value.message == f"Invalid {name}"


def test_spec_rejects_unknown_kinds_and_required_outside_kinds() -> None:
    with pytest.raises(ValueError):
        Spec({"a": "decimal"})
    with pytest.raises(ValueError):
        Spec({"a": "str"}, frozenset({"b"}))
