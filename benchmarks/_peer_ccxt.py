"""Driver for ccxt pro (the ``ccxt`` package's ``ccxt.pro.bitmex``), run INSIDE its own venv.

Theory of operation: executed as a script by that venv's Python (see ``benchmarks.peers``);
imports nothing of ours. ccxt removed BitMEX after the exchange closed, so the venv pins a
release that still has it (and an older aiohttp: see ``benchmarks.peers``). Per symbol of the
stream, three tasks loop on ccxt's public ``watch_order_book``, ``watch_trades`` and
``watch_ticker`` (the ``instrument`` table): the same three tables as our three listeners. Only
the addresses are pointed elsewhere: ``urls['api']['ws']`` is the emulator's URL, and the market
list, which ccxt would fetch from BitMEX's REST API (the emulator's replay mode serves none), is
built from each symbol's instrument fields through ccxt's own ``parse_market``. The exchange's
``handle_message`` is wrapped only to count table frames: the clock runs from the first watch
call until it has returned for the last update (ccxt subscribes per symbol, so partials come one
per symbol and table). ccxt hands a watcher the latest state, so a watcher does not wake for
every frame: that is its design, measured as is. Prints one JSON object: ``{"rate": frames per
second, "wakeups": {...}}``.

    /tmp/peer-ccxt/bin/python benchmarks/_peer_ccxt.py URL FRAMES UPDATES XBTUSD,ETHUSD
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import ccxt.pro


def instrument(symbol: str) -> dict[str, Any]:
    """The fields of a perpetual's REST instrument row that ccxt's ``parse_market`` reads."""
    root, quote = symbol[:-3], symbol[-3:]
    return {
        "symbol": symbol,
        "rootSymbol": root,
        "underlying": root,
        "quoteCurrency": quote,
        "settlCurrency": "XBt",
        "positionCurrency": quote,
        "typ": "FFWCSX",
        "state": "Open",
        "isInverse": root == "XBT",
        "isQuanto": root != "XBT",
        "multiplier": -100000000 if root == "XBT" else 100,
        "lotSize": 100,
        "tickSize": 0.1,
        "maxOrderQty": 10000000,
        "maxPrice": 1000000,
        "makerFee": 0.0005,
        "takerFee": 0.0005,
    }


async def run(url: str, n_frames: int, n_updates: int, symbols: list[str]) -> dict[str, Any]:
    exchange = ccxt.pro.bitmex({"enableRateLimit": False})
    exchange.urls["api"]["ws"] = url
    markets = [exchange.parse_market(instrument(s)) for s in symbols]
    exchange.set_markets(markets)
    wakeups: Counter[str] = Counter()
    seen = 0
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    handle = exchange.handle_message

    def counting(client: Any, message: Any) -> Any:
        nonlocal seen
        try:
            return handle(client, message)
        finally:
            count(message)

    def count(message: Any) -> None:
        nonlocal seen
        if isinstance(message, dict) and "table" in message and message["action"] != "partial":
            seen += 1
            if seen == n_updates and not done.done():
                done.set_result(time.perf_counter())

    exchange.handle_message = counting

    async def watch(kind: str, symbol: str) -> None:
        method = getattr(exchange, f"watch_{kind}")
        while True:
            await method(symbol)
            wakeups[kind] += 1

    start = time.perf_counter()
    tasks = [
        asyncio.create_task(watch(kind, market["symbol"]))
        for market in markets
        for kind in ("order_book", "trades", "ticker")
    ]
    try:
        end = await asyncio.wait_for(done, 900)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await exchange.close()
    return {"rate": n_frames / (end - start), "wakeups": dict(wakeups)}


def main() -> None:
    url, n_frames, n_updates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    result = asyncio.run(run(url, n_frames, n_updates, sys.argv[4].split(",")))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
