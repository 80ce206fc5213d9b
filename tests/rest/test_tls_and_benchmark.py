"""TLS is verified by default (a self-signed server is refused; trusted, it is served), and the
REST benchmark still runs."""

from __future__ import annotations

import functools
import ssl

import pytest
import trio
import trustme

from bitmex_trio_websocket import open_bitmex_rest

from ..support.scripted_http import Answer, ScriptedHttpServer

TIMEOUT = 30


async def test_https_verifies_the_certificate() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            scripted = ScriptedHttpServer(nursery, lambda seen: Answer(body=[{"ok": True}]))

            async def handler(stream: trio.SocketStream) -> None:
                tls = trio.SSLStream(stream, server_context, server_side=True)
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError:
                    return  # the client refused our certificate
                await scripted._serve(tls, 0)

            [listener] = await nursery.start(
                functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
            )
            url = f"https://127.0.0.1:{listener.socket.getsockname()[1]}/api/v1"
            with pytest.raises(ssl.SSLCertVerificationError):
                async with open_bitmex_rest(url):
                    pass
            trusted = ssl.create_default_context()
            ca.configure_trust(trusted)
            async with open_bitmex_rest(url, ssl_context=trusted) as rest:
                assert await rest.request("GET", "/anything") == [{"ok": True}]
            nursery.cancel_scope.cancel()
    assert scripted.seen[0].target == "/api/v1/anything"


def test_the_rest_benchmark_runs() -> None:
    from benchmarks import rest as bench

    results = bench.measure(requests=5, runs=1)
    assert len(results) == 4 and all(r.median > 0 and r.extra["p50_us"] > 0 for r in results)
