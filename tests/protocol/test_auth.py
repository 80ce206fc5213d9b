from __future__ import annotations

import pytest

from bitmex_trio_websocket._auth import (
    Credentials,
    expires_at,
    realtime_signature,
    signature,
)

SECRET = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"


def test_rest_test_vector_from_bitmex_docs() -> None:
    assert (
        signature(SECRET, "GET", "/api/v1/instrument", 1518064236)
        == "c7682d435d0cfe87c16098df34ef2eb5a549d4c5a3c2b1f0f77b8af73423bf00"
    )


def test_realtime_test_vector() -> None:
    assert (
        realtime_signature(SECRET, 1518064236)
        == "6d459dc02866d35a2b965edeecc68063d488e296b77982235fc6eca24b934945"
    )


def test_body_is_signed() -> None:
    assert signature(SECRET, "POST", "/api/v1/order", 1, '{"a":1}') != signature(
        SECRET, "POST", "/api/v1/order", 1
    )


def test_expires_is_short_rounded_up_and_corrected_by_clock_offset() -> None:
    assert expires_at(1000.2) == 1011
    assert expires_at(1000.0, expiry=5) == 1005
    # Our clock is 30 s behind the server: the server must see an expiry in its own future.
    assert expires_at(1000.0, clock_offset=30.0, expiry=5) == 1035
    with pytest.raises(ValueError):
        expires_at(1000.0, expiry=0)


def test_credentials_never_show_the_secret() -> None:
    creds = Credentials("key", SECRET)
    assert SECRET not in repr(creds)
    assert SECRET not in str(creds)
    args = creds.auth_args(1518064236)
    assert args == ["key", 1518064236, realtime_signature(SECRET, 1518064236)]


@pytest.mark.parametrize(("key", "secret"), [("", "s"), ("k", ""), ("", "")])
def test_credentials_require_both_parts(key: str, secret: str) -> None:
    with pytest.raises(ValueError):
        Credentials(key, secret)
