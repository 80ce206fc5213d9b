"""Peers side by side: ours, cryptofeed and ccxt pro end to end over loopback, same stream.

Theory of operation: one emulator child process (``loopback.server_process``, per-connection
replay: every connection gets the whole seeded stream from its start, as fast as it reads)
serves every client in turn. Each round runs, alternating, ours with three listeners
(``loopback.run_ours``: ``orderBookL2``, ``trade``, ``instrument``) and then each peer reading
the same three tables through its own public API, three consumers per symbol. A peer runs in its
own throwaway venv (default ``/tmp/peer-NAME``, ``PEERS_VENV_ROOT`` overrides the folder),
created and filled from the package index with pip on first use (said on stderr), never
vendored: ``_peer_NAME.py`` is executed by that venv's Python, imports nothing of ours, points
the peer's websocket URL at the emulator and prints its rate as JSON. Every rate is the
stream's frames over the time from subscribing until the last update was handled; the medians
of the rounds are reported, with each peer's median as a ratio of ours. A peer that fails or
times out is reported with its error instead of a rate; the others go on.

    python -m benchmarks.peers --messages 200000 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import trio

from ._common import Result, add_common_arguments, emit, load_frames
from .gen_stream import stream_path
from .inprocess import expected_rows
from .loopback import run_ours, server_process

__all__ = ["PEERS", "Peer", "available", "ensure_venv", "main", "measure", "run_peer"]

PEER_TIMEOUT = 600.0


@dataclass(frozen=True)
class Peer:
    name: str
    installs: tuple[tuple[str, ...], ...]  # one ``pip install`` per entry, in order
    probe: str  # Python run in the venv: succeeds once the peer is installed

    @property
    def driver(self) -> Path:
        return Path(__file__).with_name(f"_peer_{self.name}.py")


PEERS: dict[str, Peer] = {
    peer.name: peer
    for peer in (
        Peer("cryptofeed", (("cryptofeed==2.4.1",),), "import cryptofeed.exchanges.bitmex"),
        # BitMEX left ccxt after the exchange closed: 4.5.82 is a release that still has it. Its
        # websocket client reads aiohttp's private receive buffer; with the aiohttp 3.14 it
        # asks for, it stops reading a fast stream after ~2,400 frames (the transport stays
        # paused), with 3.10.11 it runs: installed over it without dependency checks.
        Peer(
            "ccxt",
            (("ccxt==4.5.82",), ("--no-deps", "aiohttp==3.10.11")),
            "import ccxt.pro, aiohttp; ccxt.pro.bitmex; assert aiohttp.__version__ == '3.10.11'",
        ),
    )
}


def venv_dir(peer: Peer) -> Path:
    return Path(os.environ.get("PEERS_VENV_ROOT", "/tmp")) / f"peer-{peer.name}"


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _clean_env() -> dict[str, str]:
    """Our environment without PYTHONPATH, so the venv imports only its own packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def available(peer: Peer) -> bool:
    """Whether the peer's venv exists with the peer installed (nothing is installed here)."""
    python = _python(venv_dir(peer))
    if not python.exists():
        return False
    probe = subprocess.run([python, "-c", peer.probe], capture_output=True, env=_clean_env())
    return probe.returncode == 0


def ensure_venv(peer: Peer) -> Path:
    """The peer venv's Python, creating the venv and installing the peer first if needed."""
    venv = venv_dir(peer)
    python = _python(venv)
    if available(peer):
        return python
    wanted = "; ".join(" ".join(step) for step in peer.installs)
    print(f"creating {venv} with {wanted} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True, env=_clean_env())
    for step in peer.installs:
        pip: list[str | Path] = [python, "-m", "pip", "install", "--quiet", *step]
        subprocess.run(pip, check=True, stdout=subprocess.DEVNULL, env=_clean_env())
    return python


def stream_facts(frames: Sequence[str]) -> tuple[int, list[str]]:
    """The stream's updates (frames but partials) of its tradable symbols (no ``.`` indices).

    Peers subscribe per symbol, so they get a partial per symbol and table where we get one per
    table: they are done once every update has been handled."""
    updates, symbols = 0, set[str]()
    for text in frames:
        message = orjson.loads(text)
        here = {row["symbol"] for row in message["data"] if not row["symbol"].startswith(".")}
        symbols |= here
        # Frames of indices only (``.BXBT``) never reach a per-symbol subscription.
        updates += message["action"] != "partial" and bool(here)
    return updates, sorted(symbols)


def run_peer(peer: Peer, url: str, n_frames: int, updates: int, symbols: Sequence[str]) -> float:
    """One round of ``peer`` in its venv; its rate in frames per second."""
    python = ensure_venv(peer)
    command: list[str | Path] = [
        python,
        peer.driver,
        url,
        str(n_frames),
        str(updates),
        ",".join(symbols),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=venv_dir(peer),
        env=_clean_env(),
        timeout=PEER_TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{peer.name} driver failed:\n{done.stderr[-2000:]}")
    rate: float = json.loads(done.stdout.strip().splitlines()[-1])["rate"]
    return rate


def measure(
    stream: Path, frames: Sequence[str], runs: int, peers: Sequence[Peer], peer_timeout: float
) -> list[Result]:
    """Ours and every peer, alternating, ``runs`` rounds on one emulator."""
    global PEER_TIMEOUT
    PEER_TIMEOUT = peer_timeout
    expected = expected_rows(frames)
    updates, symbols = stream_facts(frames)
    ours = Result("loopback/emulator: ours, 3 listeners", [], len(frames))
    results = {
        p.name: Result(f"loopback/emulator: {p.name}, 3 consumers", [], len(frames)) for p in peers
    }
    failed: dict[str, str] = {}
    for peer in peers:
        ensure_venv(peer)  # installs happen before any clock runs
    with server_process("emulator", stream) as url:
        for _ in range(runs):
            gc.collect()
            ours.rates.append(trio.run(run_ours, url, len(frames), expected))
            for peer in peers:
                if peer.name in failed:
                    continue
                try:
                    results[peer.name].rates.append(
                        run_peer(peer, url, len(frames), updates, symbols)
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    failed[peer.name] = str(error).splitlines()[0][:200]
    for name, result in results.items():
        if name in failed:
            result.extra["failed"] = failed[name]
        if result.rates and ours.median:
            result.extra["ratio to ours"] = f"{result.median / ours.median:.2f}x"
    return [ours, *results.values()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peer names")
    parser.add_argument(
        "--peer-timeout", type=float, default=PEER_TIMEOUT, help="seconds per peer round"
    )
    args = parser.parse_args(argv)
    stream = Path(args.stream) if args.stream else stream_path(args.messages, args.seed)
    frames = load_frames(stream)
    peers = [PEERS[name] for name in args.peers.split(",") if name]
    results = measure(stream, frames, args.runs, peers, args.peer_timeout)
    emit(results, args.json, "Peers end to end over loopback (same emulator, same stream)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
