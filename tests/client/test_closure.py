"""BitMEX closed on 2026-09-23: reaching ``mainnet``/``testnet`` fails with one clear error.

No test here touches the network: the TCP/TLS openers are replaced by doubles that fail the way a
resolver or a refused connection does.
"""

from __future__ import annotations

import socket
from typing import Any, NoReturn

import pytest
import trio

from bitmex_trio_websocket import BitMEXError, ExchangeClosedError, open_bitmex_websocket
from bitmex_trio_websocket._cli import main


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP or TLS connect fails as a lookup of a vanished host does; records the hosts."""
    tried: list[tuple[str, int]] = []

    async def fail(host: str, port: int, *args: Any, **kwargs: Any) -> NoReturn:
        await trio.lowlevel.checkpoint()
        tried.append((host, port))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(trio, "open_tcp_stream", fail)
    monkeypatch.setattr(trio, "open_ssl_over_tcp_stream", fail)
    return tried


@pytest.mark.parametrize(
    ("network", "host"), [("mainnet", "ws.bitmex.com"), ("testnet", "ws.testnet.bitmex.com")]
)
async def test_the_closed_networks_fail_with_one_error_naming_the_closure(
    unreachable: list[tuple[str, int]], network: str, host: str
) -> None:
    with trio.fail_after(30), pytest.raises(ExchangeClosedError) as info:
        async with open_bitmex_websocket(network):
            pytest.fail("connected to a closed exchange")
    assert unreachable == [(host, 443)]  # tried once: the first connection is not retried
    message = str(info.value)
    assert "BitMEX closed on 2026-09-23" in message
    assert "emulator" in message and "open_bitmex_replay" in message
    assert isinstance(info.value, BitMEXError)
    assert isinstance(info.value.__cause__, socket.gaierror)


async def test_other_hosts_keep_their_own_error(unreachable: list[tuple[str, int]]) -> None:
    with trio.fail_after(30), pytest.raises(socket.gaierror):
        async with open_bitmex_websocket("ws://replay.example:8000/ws-replay"):
            pytest.fail("connected to nowhere")
    assert unreachable == [("replay.example", 8000)]


def test_the_cli_prints_the_closure_as_one_line(
    unreachable: list[tuple[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["listen", "trade:XBTUSD", "--network", "mainnet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "BitMEX closed on 2026-09-23" in err and "Traceback" not in err
