"""TLS verification and secret hygiene."""

from __future__ import annotations

import logging
import ssl
import threading
import traceback
from contextlib import aclosing
from pathlib import Path

import pytest
import trio
import trustme

from bitmex_trio_websocket import (
    AuthenticationError,
    BitMEXError,
    Credentials,
    Reconnected,
    open_bitmex_websocket,
)
from bitmex_trio_websocket._cli import main
from bitmex_trio_websocket.emulator import DEFAULT_ACCOUNT, open_emulator

from ..support.scripted_server import API_KEY, API_SECRET, ScriptedServer

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


# --------------------------------------------------------------------------- issue 8 additions


class SignatureLog:
    """Every signature this process computes, recorded by wrapping ``Credentials.sign``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.signatures: list[str] = []
        original = Credentials.sign

        def sign(credentials: Credentials, expires: int) -> str:
            signature = original(credentials, expires)
            self.signatures.append(signature)
            return signature

        monkeypatch.setattr(Credentials, "sign", sign)

    def assert_absent(self, haystack: str, *secrets: str) -> None:
        assert self.signatures, "no signature was computed: the test proves nothing"
        for secret in (*secrets, *self.signatures):
            assert secret not in haystack


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the log records carry: messages, arguments, formatted tracebacks."""
    formatter = logging.Formatter()
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr and the formatted traceback of ``exc`` and everything chained to it."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None:
        texts += [str(seen), repr(seen), repr(getattr(seen, "request", None))]
        seen = seen.__cause__ or seen.__context__
    return texts


async def test_full_authenticated_emulator_session_leaks_no_secret(
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Private tables, the dead man's switch, a refused subscription, a dropped connection with
    re-authentication, a refused re-authentication and a wrong secret, with every logger at
    DEBUG: neither the secret nor any signature appears anywhere a user could see."""
    caplog.set_level(logging.DEBUG)
    log = SignatureLog(monkeypatch)
    secret = "sekrit-" + "x" * 40
    accounts = {"fuzz-key": (secret, DEFAULT_ACCOUNT)}
    texts: list[str] = []
    with trio.fail_after(600):
        async with open_emulator(seed=2, listen=False, rate=20, accounts=accounts) as emulator:
            async with open_bitmex_websocket(
                URL,
                "fuzz-key",
                secret,
                dead_mans_switch=True,
                connect=emulator.connect_in_memory,
                backoff_max=2,
            ) as bws:
                async with (
                    aclosing(bws.events("order")) as orders,
                    aclosing(bws.listen("position")) as positions,
                ):
                    texts.append(repr(await orders.__anext__()))
                    texts.append(repr(await positions.__anext__()))
                    with pytest.raises(BitMEXError) as refused:
                        async with aclosing(bws.listen("margin", "XBTUSD")) as margin:
                            await margin.__anext__()
                    texts += exception_texts(refused.value)
                    emulator.fail_next_auth(1)  # the first re-authentication is refused
                    await (await emulator.wait_connection(0)).drop()
                    async for item in orders:
                        texts.append(repr(item))
                        if isinstance(item, Reconnected):
                            break
                    await trio.sleep(40)  # dead man's switch refreshes on the new socket
                    texts += [repr(bws), repr(bws.stats), repr(bws.listener_stats())]
                    texts += [repr(bws._credentials), str(bws._credentials)]
            with pytest.raises(AuthenticationError) as wrong:
                async with open_bitmex_websocket(
                    URL, "fuzz-key", "not-the-" + secret, connect=emulator.connect_in_memory
                ):
                    pass
            texts += exception_texts(wrong.value)
    assert len(log.signatures) >= 4  # first auth, refused re-auth, re-auth, wrong secret
    log.assert_absent("\n".join([*texts, log_text(caplog)]), secret)


class _EmulatorThread:
    """A TCP emulator in its own thread and trio run, for commands that run ``trio.run``."""

    def __init__(self, accounts: dict[str, tuple[str, int]]) -> None:
        self.accounts = accounts
        self.url = ""
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=lambda: trio.run(self._serve), daemon=True)

    async def _serve(self) -> None:
        with trio.CancelScope() as scope:
            async with open_emulator(seed=4, rate=50, accounts=self.accounts) as emulator:
                self.url = emulator.url
                self._token, self._scope = trio.lowlevel.current_trio_token(), scope
                self._ready.set()
                await trio.sleep_forever()

    def __enter__(self) -> _EmulatorThread:
        self._thread.start()
        assert self._ready.wait(30), "the emulator did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._scope is not None and self._token is not None
        trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(30)


def test_cli_listen_never_shows_the_secret(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    log = SignatureLog(monkeypatch)
    secret = "cli-sekrit-" + "y" * 40
    with _EmulatorThread({"cli-key": (secret, DEFAULT_ACCOUNT)}) as server:
        connection = ["--network", server.url, "--api-key", "cli-key"]
        assert main(["listen", "order", "position", *connection, "--api-secret", secret,
                     "--count", "3"]) == 0  # fmt: skip
        assert main(["listen", "order", *connection, "--api-secret", "bad-" + secret,
                     "--count", "1"]) == 1  # fmt: skip
        monkeypatch.setenv("BITMEX_API_SECRET", secret)
        assert main(["listen", "position", *connection, "--count", "1"]) == 0
    out = capsys.readouterr()
    assert out.out.count("\n") >= 4 and "401" in out.err  # the commands did run
    log.assert_absent("\n".join([out.out, out.err, log_text(caplog)]), secret)


def test_cli_record_never_writes_a_signature(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = SignatureLog(monkeypatch)
    secret = "rec-sekrit-" + "z" * 40
    recording = tmp_path / "session.jsonl"
    with _EmulatorThread({"rec-key": (secret, DEFAULT_ACCOUNT)}) as server:
        monkeypatch.setenv("BITMEX_API_KEY", "rec-key")
        monkeypatch.setenv("BITMEX_API_SECRET", secret)
        assert main(["record", "order", "--out", str(recording), "--network", server.url,
                     "--duration", "1"]) == 0  # fmt: skip
    out = capsys.readouterr()
    text = recording.read_text()
    assert '"dir":"recv"' in text  # it did record
    log.assert_absent("\n".join([out.out, out.err, text]), secret)


async def test_hostname_mismatch_is_refused_even_with_a_trusted_ca() -> None:
    # Verification checks the name too, not only the chain.
    ca = trustme.CA()
    cert = ca.issue_cert("bitmex.example")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_serve_tls_once, server_ctx)
            with pytest.raises((OSError, trio.BrokenResourceError, BitMEXError)) as info:
                async with open_bitmex_websocket(
                    f"wss://127.0.0.1:{port}/realtime", ssl_context=client_ctx, timeout=5
                ):
                    pass
            chain: BaseException | None = info.value
            seen = []
            while chain is not None:
                seen.append(chain)
                chain = chain.__cause__ or chain.__context__
            assert any(isinstance(e, ssl.SSLCertVerificationError) for e in seen), seen
            nursery.cancel_scope.cancel()
