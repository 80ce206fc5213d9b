"""The REST API's API-key check: BitMEX's signature, texts and statuses, legacy nonce."""

from __future__ import annotations

import orjson
import pytest

from bitmex_trio_websocket._auth import rest_signature

from .fakes import ACCOUNT_A, KEY_A, NOW, SECRET_A, call, make_app, signed

SAMPLE_SECRET = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"


@pytest.mark.parametrize(
    ("verb", "target", "expires", "body", "expected"),
    [
        # BitMEX's API key docs (www.bitmex.com/app/apiKeysUsage), reproduced by its connectors.
        ("GET", "/api/v1/instrument", 1518064236, "",
         "c7682d435d0cfe87c16098df34ef2eb5a549d4c5a3c2b1f0f77b8af73423bf00"),
        ("GET", "/api/v1/instrument?filter=%7B%22symbol%22%3A+%22XBTM15%22%7D", 1518064237, "",
         "e2f422547eecb5b3cb29ade2127e21b858b235b386bfa45e1c1756eb3383919f"),
        ("POST", "/api/v1/order", 1518064238,
         '{"symbol":"XBTM15","price":219.0,"clOrdID":"mm_bitmex_1a/oemUeQ4CAJZgP3fjHsA",'
         '"orderQty":98}',
         "1749cd2ccae4aa49048ae09f0b95110cee706e0944e6a14ad0b3a8cb45bd336b"),
        # The nonce-era sample of the same docs (BitMEX's VBA connector).
        ("GET", "/api/v1/instrument?filter=%7B%22symbol%22%3A+%22XBTM15%22%7D", 1429631577690, "",
         "9f1753e2db64711e39d111bc2ecace3dc9e7f026e6f65b65c4f53d3d14a60e5f"),
    ],
)  # fmt: skip
def test_signature_equals_bitmex_published_samples(
    verb: str, target: str, expires: int, body: str, expected: str
) -> None:
    assert rest_signature(SAMPLE_SECRET, verb, target, expires, body) == expected
    assert rest_signature(SAMPLE_SECRET, verb, target, expires, body.encode()) == expected


def test_a_signed_request_is_served_as_its_account() -> None:
    app = make_app()
    result = call(app, "GET", "/api/v1/order")
    assert result.status == 200
    assert result.json() == []
    call(app, "POST", "/api/v1/order", {"symbol": "XBTUSD", "orderQty": 1, "price": 9.0})
    assert [row["account"] for row in call(app, "GET", "/api/v1/order").json()] == [ACCOUNT_A]


def test_private_route_without_credentials_is_401_authorization_required() -> None:
    result = call(make_app(), "GET", "/api/v1/position", key=None)
    assert result.status == 401
    assert result.json() == {"error": {"message": "Authorization Required", "name": "HTTPError"}}


def test_public_route_without_credentials_is_served() -> None:
    assert call(make_app(), "GET", "/api/v1/instrument", key=None).status == 200


def test_credentials_in_the_query_string_are_not_read() -> None:
    # BitMEX read them from headers only (api-connectors #80).
    expires = int(NOW) + 10
    sig = rest_signature(SECRET_A, "GET", "/api/v1/position", expires)
    target = f"/api/v1/position?api-expires={expires}&api-key={KEY_A}&api-signature={sig}"
    result = make_app().handle("GET", target, [], b"", NOW)
    assert result.status == 401
    assert result.json()["error"]["message"] == "Authorization Required"


def test_unknown_key_is_401_invalid_api_key() -> None:
    verb, target, headers, body = signed("GET", "/api/v1/order")
    headers = [(n, b"nobody" if n == b"api-key" else v) for n, v in headers]
    result = make_app().handle(verb, target, headers, body, NOW)
    assert result.status == 401
    assert result.json() == {"error": {"message": "Invalid API Key.", "name": "HTTPError"}}


def test_unknown_key_is_refused_even_on_a_public_route() -> None:
    verb, target, headers, body = signed("GET", "/api/v1/instrument")
    headers = [(n, b"nobody" if n == b"api-key" else v) for n, v in headers]
    assert make_app().handle(verb, target, headers, body, NOW).status == 401


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t, b: (t + "&x=1" if "?" in t else t + "?x=1", b),  # another target
        lambda t, b: (t, b.replace(b":", b": ")),  # the same JSON, spelt differently
        lambda t, b: (t, b + b" "),
    ],
)
def test_signature_covers_target_and_body_exactly_as_sent(tamper: object) -> None:
    body = orjson.dumps({"symbol": "XBTUSD", "orderQty": 1, "price": 9.0})
    verb, target, headers, raw = signed("POST", "/api/v1/order?symbol=XBTUSD", body)
    target2, raw2 = tamper(target, raw)  # type: ignore[operator]
    result = make_app().handle(verb, target2, headers, raw2, NOW)
    assert result.status == 401
    assert result.json() == {"error": {"message": "Signature not valid.", "name": "HTTPError"}}
    assert make_app().handle(verb, target, headers, raw, NOW).status == 200


def test_signature_over_another_verb_is_refused() -> None:
    _, target, headers, body = signed("GET", "/api/v1/order/all")
    assert make_app().handle("DELETE", target, headers, body, NOW).status == 401


def test_upper_case_hex_signature_is_accepted() -> None:
    verb, target, headers, body = signed("GET", "/api/v1/order")
    headers = [(n, v.upper() if n == b"api-signature" else v) for n, v in headers]
    assert make_app().handle(verb, target, headers, body, NOW).status == 200


def test_expired_request_is_400_with_bitmex_text_and_current_time() -> None:
    request = signed("GET", "/api/v1/order", expires=int(NOW) - 1)
    result = make_app().handle(*request, NOW + 0.5)
    assert result.status == 400
    assert result.json() == {
        "error": {
            "message": "This request has expired - `expires` is in the past. "
            f"Current time: {int(NOW)}",
            "name": "HTTPError",
        }
    }


def test_expires_equal_to_now_and_in_milliseconds_are_accepted() -> None:
    app = make_app()
    assert app.handle(*signed("GET", "/api/v1/order", expires=int(NOW)), NOW).status == 200
    # ccxt sent milliseconds for years: far in the future, accepted.
    millis = signed("GET", "/api/v1/order", expires=int(NOW * 1000))
    assert app.handle(*millis, NOW).status == 200


def test_non_numeric_expires_is_a_validation_error() -> None:
    result = make_app().handle(*signed("GET", "/api/v1/order", expires="soon"), NOW)
    assert result.status == 400
    assert result.json()["error"]["name"] == "ValidationError"


def test_key_without_expires_or_nonce_is_signature_not_valid() -> None:
    verb, target, headers, body = signed("GET", "/api/v1/order")
    headers = [(n, v) for n, v in headers if n != b"api-expires"]
    result = make_app().handle(verb, target, headers, body, NOW)
    assert (result.status, result.json()["error"]["message"]) == (401, "Signature not valid.")


def _nonce_request(nonce: int) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    sig = rest_signature(SECRET_A, "GET", "/api/v1/order", nonce)
    headers = [(b"api-nonce", str(nonce).encode()), (b"api-key", KEY_A.encode()),
               (b"api-signature", sig.encode())]  # fmt: skip
    return "GET", "/api/v1/order", headers, b""


def test_legacy_nonce_must_increase() -> None:
    app = make_app()
    assert app.handle(*_nonce_request(1515130196494), NOW).status == 200
    assert app.handle(*_nonce_request(1515130196495), NOW).status == 200
    again = app.handle(*_nonce_request(1515130196495), NOW)
    assert again.status == 400
    assert again.json() == {
        "error": {
            "message": "Nonce is not increasing. This nonce: 1515130196495, "
            "last nonce: 1515130196495",
            "name": "HTTPError",
        }
    }
    assert app.handle(*_nonce_request(1515130196496), NOW).status == 200


def test_a_nonce_with_a_bad_signature_does_not_advance_the_key() -> None:
    app = make_app()
    verb, target, headers, body = _nonce_request(2000)
    bad = [(n, b"0" * 64 if n == b"api-signature" else v) for n, v in headers]
    assert app.handle(verb, target, bad, body, NOW).status == 401
    assert app.handle(*_nonce_request(1999), NOW).status == 200


def test_nonce_refused_when_the_app_follows_bitmex_after_february_2024() -> None:
    result = make_app(accept_nonce=False).handle(*_nonce_request(5), NOW)
    assert (result.status, result.json()["error"]["message"]) == (401, "Signature not valid.")
