"""Paper orders over loopback: POST /order to its execution row, and orders per second served.

Theory of operation: the emulator runs in a child process (``python -m bitmex_trio_websocket
emulator --rest-limits off``: BitMEX's 10 orders a second would be all we measured), its
synthetic market moving at its default 50 events a second so the book refills. This process is
a bot: one authenticated websocket subscribed to ``execution``, and BitMEX REST requests signed as
BitMEX's connectors signed them, over HTTP/1.1 keep-alive connections (h11, as thin a client as
the protocol allows, so the figures are the server's). Every order is a 100-contract XBTUSD
market order, buys and sells alternating, so the account stays near flat and each order fills at
once against the book (the engine's taking path, then order/execution/position/margin rows).

* round trip: one order at a time; per order, the time from writing the request to the
  ``execution`` row of its fill on the websocket (the issue's figure), and to the HTTP response;
  median and p99 over ``--orders`` orders;
* sequential: ``--orders`` orders back to back on one keep-alive connection, orders/s;
* concurrent: ``--connections`` keep-alive connections, each sending its share back to back,
  orders/s for the whole.

``--runs`` repeats each and reports the median run. Nothing here is asserted; the smoke test in
tests/test_benchmarks_smoke.py only checks that it runs.

    python -m benchmarks.orders --orders 2000 --connections 8 --runs 3
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import h11
import orjson
import trio
import trio_websocket

from bitmex_trio_websocket._auth import realtime_signature
from bitmex_trio_websocket.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET

from ._common import Result, emit

__all__ = ["main", "measure", "server_process"]

TIMEOUT = 600.0
ORDER_TARGET = "/api/v1/order"


@contextmanager
def server_process(seed: int = 1) -> Iterator[tuple[str, str]]:
    """The emulator in a child process, REST limits off; yields its websocket and REST URLs."""
    command = [
        sys.executable, "-m", "bitmex_trio_websocket", "emulator", "--port", "0",
        "--seed", str(seed), "--rest-limits", "off",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url, rest_url = process.stdout.readline().strip(), process.stdout.readline().strip()
        if not url.startswith("ws://") or not rest_url.startswith("http://"):
            raise RuntimeError(f"emulator did not start (exit status {process.poll()})")
        yield url, rest_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


class RestConnection:
    """One keep-alive HTTP/1.1 connection sending signed BitMEX requests."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)
        self.expires = str(int(time.time()) + 3600)

    async def post_order(self, params: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(params)
        message = b"POST" + ORDER_TARGET.encode() + self.expires.encode() + body
        signature = hmac.new(DEFAULT_API_SECRET.encode(), message, hashlib.sha256).hexdigest()
        headers = [
            ("Host", self.host),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("api-expires", self.expires),
            ("api-key", DEFAULT_API_KEY),
            ("api-signature", signature),
        ]
        conn = self.conn
        data = conn.send(h11.Request(method="POST", target=ORDER_TARGET, headers=headers)) or b""
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        status, reply = 0, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await self.stream.receive_some(65536)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                reply += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        conn.start_next_cycle()
        row: dict[str, Any] = orjson.loads(reply)
        if status != 200 or row.get("ordStatus") != "Filled":
            raise RuntimeError(f"order refused or not filled: {status} {reply[:300]!r}")
        return row


async def open_rest(rest_url: str) -> RestConnection:
    parts = urlsplit(rest_url)
    assert parts.hostname is not None and parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    return RestConnection(stream, parts.netloc)


def order(n: int, tag: str) -> dict[str, Any]:
    side = "Buy" if n % 2 == 0 else "Sell"
    return {"symbol": "XBTUSD", "side": side, "orderQty": 100, "ordType": "Market",
            "clOrdID": f"{tag}-{n}"}  # fmt: skip


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def round_trips(url: str, rest_url: str, n: int, tag: str) -> tuple[list[float], list[float]]:
    """``n`` orders one at a time: (POST -> execution row, POST -> HTTP response) in seconds."""
    expires = int(time.time()) + 3600
    auth = [
        (b"api-key", DEFAULT_API_KEY.encode()),
        (b"api-expires", str(expires).encode()),
        (b"api-signature", realtime_signature(DEFAULT_API_SECRET, expires).encode()),
    ]
    arrived: dict[str, float] = {}
    waiting: dict[str, trio.Event] = {}
    async with trio_websocket.open_websocket_url(url, extra_headers=auth) as ws:
        await ws.get_message()  # welcome
        await ws.send_message('{"op":"subscribe","args":["execution"]}')

        async def reader() -> None:
            while True:
                message = orjson.loads(await ws.get_message())
                if message.get("table") != "execution" or message.get("action") != "insert":
                    continue
                now = time.perf_counter()
                for row in message["data"]:
                    cl = row.get("clOrdID", "")
                    if row.get("execType") == "Trade" and cl in waiting and cl not in arrived:
                        arrived[cl] = now
                        waiting[cl].set()

        rest = await open_rest(rest_url)
        to_row: list[float] = []
        to_reply: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            with trio.fail_after(TIMEOUT):
                await trio.sleep(0.2)  # the subscription's partial
                for i in range(n):
                    params = order(i, tag)
                    cl = params["clOrdID"]
                    waiting[cl] = trio.Event()
                    start = time.perf_counter()
                    await rest.post_order(params)
                    to_reply.append(time.perf_counter() - start)
                    await waiting[cl].wait()
                    to_row.append(arrived[cl] - start)
            nursery.cancel_scope.cancel()
        await rest.stream.aclose()
    return to_row, to_reply


async def throughput(rest_url: str, n: int, connections: int, tag: str) -> float:
    """Orders per second over ``connections`` keep-alive connections sending back to back."""
    rests = [await open_rest(rest_url) for _ in range(connections)]
    share = [n // connections + (i < n % connections) for i in range(connections)]

    async def send(k: int) -> None:
        for i in range(share[k]):
            await rests[k].post_order(order(i, f"{tag}-{k}"))

    with trio.fail_after(TIMEOUT):
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for k in range(connections):
                nursery.start_soon(send, k)
        elapsed = time.perf_counter() - start
    for rest in rests:
        await rest.stream.aclose()
    return n / elapsed


def measure(orders: int, connections: int, runs: int, seed: int = 1) -> list[Result]:
    trip = Result("orders: round trip, POST -> execution row", [], orders)
    reply = Result("orders: round trip, POST -> HTTP response", [], orders)
    sequential = Result("orders: sequential, 1 keep-alive connection", [], orders)
    concurrent = Result(f"orders: {connections} concurrent connections", [], orders)
    p50: list[float] = []
    p99: list[float] = []
    r50: list[float] = []
    r99: list[float] = []
    with server_process(seed) as (url, rest_url):
        for run in range(runs):
            to_row, to_reply = trio.run(round_trips, url, rest_url, orders, f"t{run}")
            trip.rates.append(len(to_row) / sum(to_row))
            reply.rates.append(len(to_reply) / sum(to_reply))
            p50.append(statistics.median(to_row) * 1000)
            p99.append(percentile(to_row, 0.99) * 1000)
            r50.append(statistics.median(to_reply) * 1000)
            r99.append(percentile(to_reply, 0.99) * 1000)
            sequential.rates.append(trio.run(throughput, rest_url, orders, 1, f"s{run}"))
            concurrent.rates.append(trio.run(throughput, rest_url, orders, connections, f"c{run}"))
    trip.extra = {
        "p50_ms": round(statistics.median(p50), 3),
        "p99_ms": round(statistics.median(p99), 3),
    }
    reply.extra = {
        "p50_ms": round(statistics.median(r50), 3),
        "p99_ms": round(statistics.median(r99), 3),
    }
    return [trip, reply, sequential, concurrent]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.orders", description=__doc__)
    parser.add_argument("--orders", type=int, default=2000, help="orders per path and run")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--runs", type=int, default=3, help="runs per path (median reported)")
    parser.add_argument("--seed", type=int, default=1, help="market seed")
    parser.add_argument("--json", action="store_true", help="one JSON object per path on stdout")
    args = parser.parse_args(argv)
    results = measure(args.orders, args.connections, args.runs, args.seed)
    emit(results, args.json, "Paper orders over loopback (orders/s; latencies in extra)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
