from __future__ import annotations

import inspect

import bitmex_trio_websocket as btw


def test_all_is_complete_and_importable() -> None:
    public = {
        name
        for name, value in vars(btw).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(btw.__all__) - {"__version__"}
    for name in btw.__all__:
        assert hasattr(btw, name), name


def test_seed_api_names_are_kept() -> None:
    assert callable(btw.open_bitmex_websocket)
    assert inspect.isasyncgenfunction(btw.BitMEXWebsocket.listen)
    storage = btw.Storage()
    assert storage.data == {} and storage.keys == {}
    assert callable(storage.make_key)
    assert btw.Storage.parse_timestamp("2020-10-12T16:46:20.255Z").tzinfo is not None
    signature = inspect.signature(btw.open_bitmex_websocket)
    assert list(signature.parameters)[:3] == ["network", "api_key", "api_secret"]
    for option in ("dead_mans_switch", "reconnect"):
        assert signature.parameters[option].kind is inspect.Parameter.KEYWORD_ONLY


def test_version() -> None:
    assert btw.__version__.count(".") == 2
