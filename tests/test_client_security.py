"""TLS verification and secret hygiene."""

from __future__ import annotations

import logging
import ssl
from contextlib import aclosing

import pytest
import trio
import trustme

from bitmex_trio_websocket import AuthenticationError, BitMEXError
from bitmex_trio_websocket._client import open_bitmex_websocket

from .scripted_server import API_KEY, API_SECRET, ScriptedServer

URL = "ws://bitmex.test/realtime"


async def _serve_tls_once(
    server_ctx: ssl.SSLContext, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    listeners = await trio.open_ssl_over_tcp_listeners(0, server_ctx, host="127.0.0.1")
    transport = listeners[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    task_status.started(transport.socket.getsockname()[1])

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.do_handshake()
            await stream.receive_some()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    await trio.serve_listeners(handle, listeners)


async def test_self_signed_certificate_is_refused() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_serve_tls_once, server_ctx)
            with pytest.raises((OSError, trio.BrokenResourceError, BitMEXError)) as info:
                async with open_bitmex_websocket(f"wss://127.0.0.1:{port}/realtime", timeout=5):
                    pass
            # The certificate check is what failed, not something else.
            chain: BaseException | None = info.value
            seen = []
            while chain is not None:
                seen.append(chain)
                chain = chain.__cause__ or chain.__context__
            assert any(isinstance(e, ssl.SSLCertVerificationError) for e in seen), seen
            nursery.cancel_scope.cancel()


async def test_trusted_certificate_is_accepted_with_a_custom_context() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_serve_tls_once, server_ctx)
            # TLS passes; the handshake then fails because this server speaks no websocket.
            with pytest.raises(BaseException) as info:
                async with open_bitmex_websocket(
                    f"wss://127.0.0.1:{port}/realtime", ssl_context=client_ctx, timeout=2
                ):
                    pass
            chain: BaseException | None = info.value
            while chain is not None:
                assert not isinstance(chain, ssl.SSLCertVerificationError)
                chain = chain.__cause__ or chain.__context__
            nursery.cancel_scope.cancel()


async def test_secret_and_signatures_never_logged_or_shown(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    signatures: list[str] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, refuse={"margin": (401, "nope")})
            server.on_command = lambda cmd: signatures.append(getattr(cmd, "signature", ""))
            async with open_bitmex_websocket(
                URL, API_KEY, API_SECRET, dead_mans_switch=True, connect=server.connect
            ) as bws:
                with pytest.raises(BitMEXError) as info:
                    async with aclosing(bws.listen("margin")) as rows:
                        async for _ in rows:
                            pass
                texts = [repr(bws), repr(bws._credentials), str(info.value), repr(info.value)]
                await trio.sleep(20)
            with pytest.raises(AuthenticationError) as auth_info:
                async with open_bitmex_websocket(
                    URL, API_KEY, "bad-secret", connect=server.connect
                ):
                    pass
            texts += [str(auth_info.value), repr(auth_info.value), repr(auth_info.value.request)]
            nursery.cancel_scope.cancel()
    signatures = [s for s in signatures if s]
    assert len(signatures) == 2
    haystack = "\n".join(texts + [r.getMessage() for r in caplog.records])
    for secret in [API_SECRET, "bad-secret", *signatures]:
        assert secret not in haystack
