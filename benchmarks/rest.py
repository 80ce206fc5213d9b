"""REST round trip against the emulator over loopback: h11 directly (the client) vs httpx.

Theory of operation: the emulator runs in a child process (``benchmarks.orders.server_process``:
REST limits off, so BitMEX's 120 a minute is not what we measure). This process sends signed
requests one at a time on one keep-alive connection and times each from the call to the decoded
answer, through:

* ``open_bitmex_rest`` (the library: h11 on a trio stream, its rate-limit tracker, signing);
* ``httpx.AsyncClient`` under trio (httpcore's connection pool, an ``httpx.Auth`` signing
  exactly as the library does, orjson decoding), i.e. the client we would have built on httpx;

for two requests: ``GET /user/wallet`` (a signed read: the HTTP machinery dominates) and
``POST /order`` (a 100-contract market order, buys and sells alternating so the account stays
flat: the engine's taking path dominates). Per path: median and p99 latency of ``--requests``
requests, and requests per second; ``--runs`` repeats and the median run is reported. Paths
alternate within each run so a warm or cold machine favours neither.

    python -m benchmarks.rest --requests 2000 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
import trio

from bitmex_trio_websocket import open_bitmex_rest
from bitmex_trio_websocket._auth import expires_at, rest_signature
from bitmex_trio_websocket.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET

from ._common import Result, emit
from .orders import percentile, server_process

__all__ = ["main", "measure"]

TIMEOUT = 600.0
Send = Callable[[int], Awaitable[Any]]


def _order(n: int, tag: str) -> dict[str, Any]:
    return {"symbol": "XBTUSD", "side": "Buy" if n % 2 == 0 else "Sell", "orderQty": 100,
            "ordType": "Market", "clOrdID": f"{tag}-{n}"}  # fmt: skip


async def _timed(send: Send, n: int) -> list[float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        await send(i)
        times.append(time.perf_counter() - start)
    return times


async def library(rest_url: str, n: int, tag: str) -> dict[str, list[float]]:
    async with open_bitmex_rest(rest_url, DEFAULT_API_KEY, DEFAULT_API_SECRET) as rest:
        await rest.wallet()  # warm: the connection is open, caches are hot
        wallet = await _timed(lambda i: rest.wallet(), n)
        orders = await _timed(lambda i: rest.place_order(**_order(i, tag)), n)
    return {"wallet": wallet, "order": orders}


def _httpx_auth() -> Any:
    import httpx

    class Auth(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
            expires = expires_at(time.time(), expiry=5.0)
            url = request.url
            target = url.raw_path.decode()
            signature = rest_signature(
                DEFAULT_API_SECRET, request.method, target, expires, request.content
            )
            request.headers["api-expires"] = str(expires)
            request.headers["api-key"] = DEFAULT_API_KEY
            request.headers["api-signature"] = signature
            yield request

    return Auth()


async def with_httpx(rest_url: str, n: int, tag: str) -> dict[str, list[float]]:
    import httpx

    async with httpx.AsyncClient(base_url=rest_url + "/", auth=_httpx_auth()) as http:

        async def wallet(i: int) -> Any:
            response = await http.get("user/wallet", params={"currency": "XBt"})
            response.raise_for_status()
            return orjson.loads(response.content)

        async def order(i: int) -> Any:
            body = orjson.dumps(_order(i, tag))
            response = await http.post(
                "order", content=body, headers={"Content-Type": "application/json"}
            )
            response.raise_for_status()
            return orjson.loads(response.content)

        await wallet(-1)
        return {"wallet": await _timed(wallet, n), "order": await _timed(order, n)}


CLIENTS: dict[str, Callable[[str, int, str], Awaitable[dict[str, list[float]]]]] = {
    "h11 (open_bitmex_rest)": library,
    "httpx.AsyncClient": with_httpx,
}


def measure(requests: int, runs: int, seed: int = 1) -> list[Result]:
    results: dict[tuple[str, str], Result] = {}
    p50: dict[tuple[str, str], list[float]] = {}
    p99: dict[tuple[str, str], list[float]] = {}
    with server_process(seed) as (_, rest_url):
        assert urlsplit(rest_url).scheme == "http"
        for run in range(runs):
            names = list(CLIENTS) if run % 2 == 0 else list(reversed(CLIENTS))
            for name in names:
                timings = trio.run(CLIENTS[name], rest_url, requests, f"r{run}{name[:2]}")
                for what, times in timings.items():
                    key = (name, what)
                    label = (
                        f"rest: {'GET /user/wallet' if what == 'wallet' else 'POST /order'}, {name}"
                    )
                    results.setdefault(key, Result(label, [], requests))
                    results[key].rates.append(len(times) / sum(times))
                    p50.setdefault(key, []).append(statistics.median(times) * 1e6)
                    p99.setdefault(key, []).append(percentile(times, 0.99) * 1e6)
    for key, result in results.items():
        result.extra = {
            "p50_us": round(statistics.median(p50[key]), 1),
            "p99_us": round(statistics.median(p99[key]), 1),
        }
    return sorted(results.values(), key=lambda r: r.path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rest", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="requests per path and run")
    parser.add_argument("--runs", type=int, default=5, help="runs per path (median reported)")
    parser.add_argument("--seed", type=int, default=1, help="market seed")
    parser.add_argument("--json", action="store_true", help="one JSON object per path on stdout")
    args = parser.parse_args(argv)
    results = measure(args.requests, args.runs, args.seed)
    emit(results, args.json, "REST round trip over loopback (requests/s; latencies in extra)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
