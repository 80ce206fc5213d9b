"""Verified TLS over TCP, handshaken at once: shared by the websocket and the REST client.

Theory of operation: trio handshakes lazily, on the first read or write, so a bad certificate
would surface inside the websocket upgrade or the first HTTP request as a vague broken stream.
``open_tls_stream`` does the handshake before returning and re-raises the ``ssl`` error that
caused it (``ssl.SSLCertVerificationError`` for a certificate that fails verification). The
context defaults to ``ssl.create_default_context()``: certificates and host names are checked.
"""

from __future__ import annotations

import ssl

import trio

__all__ = ["open_tls_stream"]


async def open_tls_stream(
    host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> trio.SSLStream[trio.SocketStream]:
    stream = await trio.open_ssl_over_tcp_stream(
        host, port, ssl_context=ssl_context or ssl.create_default_context(), https_compatible=True
    )
    try:
        await stream.do_handshake()
    except BaseException as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc, trio.BrokenResourceError) and isinstance(exc.__cause__, ssl.SSLError):
            raise exc.__cause__ from None
        raise
    return stream
