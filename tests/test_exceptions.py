from __future__ import annotations

import bitmex_trio_websocket as btw
from bitmex_trio_websocket._exceptions import (
    AuthenticationError,
    BitMEXAPIError,
    BitMEXError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    SubscriptionError,
    redact_request,
)


def test_hierarchy() -> None:
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(ProtocolError, BitMEXError)
    assert issubclass(AuthenticationError, BitMEXAPIError)
    assert issubclass(SubscriptionError, BitMEXAPIError)
    assert issubclass(btw.ConnectionTimeout, BitMEXError)
    assert issubclass(btw.DeadMansSwitchError, BitMEXError)


def test_api_error_fields_and_retry_after() -> None:
    request = {"op": "subscribe", "args": "orderBook"}
    err = BitMEXAPIError(429, "Rate limit exceeded", meta={"retryAfter": 1}, request=request)
    assert (err.status, err.message, err.request, err.retry_after) == (
        429,
        "Rate limit exceeded",
        request,
        1.0,
    )
    assert "429" in str(err)
    assert BitMEXAPIError(None, "x").retry_after is None


def test_signatures_are_redacted_from_api_errors() -> None:
    request = {"op": "authKeyExpires", "args": ["key", 1700000000, "deadbeef" * 8]}
    err = AuthenticationError(401, "Signature not valid.", request=request)
    for text in (repr(err), str(err), repr(err.request)):
        assert "deadbeef" not in text
    assert err.request["args"][:2] == ["key", 1700000000]
    assert redact_request({"op": "authKey", "args": "junk-signature"})["args"] == "<redacted>"
    assert redact_request("not a mapping") == "not a mapping"


def test_remote_protocol_error_quotes_a_bounded_prefix() -> None:
    frame = "x" * 10_000
    err = RemoteProtocolError("bad frame", frame)
    assert err.frame == "x" * RemoteProtocolError.FRAME_PREFIX
    assert len(str(err)) < 300
    assert str(err).endswith("...")
    assert RemoteProtocolError("bad", b"\xff\xfe").frame is not None


def test_connection_errors_are_ours_and_trio_websockets() -> None:
    import trio_websocket

    for name in ("ConnectionClosed", "HandshakeError", "ConnectionRejected", "ConnectionTimeout"):
        ours = getattr(btw, name)
        assert issubclass(ours, BitMEXError), name
        assert issubclass(ours, getattr(trio_websocket, name)), name
    assert issubclass(btw.ConnectionRejected, btw.HandshakeError)

    reason = trio_websocket.CloseReason(1001, "going away")
    closed = btw.ConnectionClosed(reason)
    assert closed.reason is reason
    try:
        raise closed
    except trio_websocket.ConnectionClosed as caught:  # the 2021 library's documented error
        assert caught.reason is not None and caught.reason.code == 1001
    rejected = btw.ConnectionRejected(429, ((b"retry-after", b"3"),), b"{}")
    assert (rejected.status_code, rejected.headers, rejected.body) == (
        429,
        ((b"retry-after", b"3"),),
        b"{}",
    )


def test_the_tree_drawn_in_the_docstring_is_the_tree() -> None:
    import bitmex_trio_websocket._exceptions as module

    assert module.__doc__ is not None
    classes = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    }
    for name, cls in classes.items():
        assert name in module.__all__, name
        assert name in module.__doc__, f"{name} is not drawn in the tree"
        assert issubclass(cls, BitMEXError), name
        assert getattr(btw, name) is cls, f"{name} is not public"


def test_every_exception_class_of_the_package_is_in_the_tree() -> None:
    """Anything raised on purpose is a BitMEXError; private internals start with ``_``."""
    import importlib
    import pkgutil

    found = []
    outside: list[str] = []
    for info in pkgutil.walk_packages(btw.__path__, "bitmex_trio_websocket."):
        if info.name.endswith(("pytest_plugin", "__main__")):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found.append(value)
                if not issubclass(value, BitMEXError):
                    outside.append(f"{module.__name__}.{name}")
    assert outside == []
    assert len(found) >= 12
