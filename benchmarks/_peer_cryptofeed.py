"""Driver for cryptofeed, run INSIDE its own throwaway venv (see ``benchmarks.peers``).

Theory of operation: executed as a script by that venv's Python; imports nothing of ours. It
drives cryptofeed's public ``FeedHandler`` with its ``Bitmex`` feed and three callbacks (L2 book,
trades, open interest = the ``instrument`` table), so cryptofeed subscribes to the same three
tables as our three listeners. Only its addresses are pointed elsewhere: the websocket endpoint
(the emulator's URL instead of BitMEX; cryptofeed insists on ``wss://``, so its connection class
is subclassed to connect in plain text) and the symbol table, filled in advance with the
stream's symbols because the emulator's replay mode serves no REST instrument list (cryptofeed
would otherwise fetch it from BitMEX). The feed's ``message_handler`` is wrapped only to count
table frames: the clock runs from the feed's start until the handler has returned for the last
update (cryptofeed subscribes per symbol, so it gets one partial per symbol and table). Prints
one JSON object: ``{"rate": frames per second, "callbacks": {...}}``.

    /tmp/peer-cryptofeed/bin/python benchmarks/_peer_cryptofeed.py URL FRAMES UPDATES XBTUSD,ETHUSD
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import cryptofeed.feed
from cryptofeed import FeedHandler
from cryptofeed.connection import WebsocketEndpoint, WSAsyncConn
from cryptofeed.defines import BITMEX, L2_BOOK, OPEN_INTEREST, TRADES
from cryptofeed.exchanges import Bitmex
from cryptofeed.symbols import Symbols


def instrument(symbol: str) -> dict[str, Any]:
    """The fields of a perpetual's REST instrument row that cryptofeed reads."""
    root, quote = symbol[:-3], symbol[-3:]
    return {
        "symbol": symbol,
        "rootSymbol": root,
        "quoteCurrency": quote,
        "typ": "FFWCSX",
        "tickSize": 0.1,
        "isQuanto": False,
    }


def main() -> None:
    url, n_frames, n_updates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    exchange_symbols = sys.argv[4].split(",")
    # cryptofeed accepts only wss:// addresses: give it one, then connect in plain text.
    secure = "wss://" + url.removeprefix("ws://")
    Bitmex.websocket_endpoints = [WebsocketEndpoint(secure, options={"compression": None})]

    class PlainConn(WSAsyncConn):  # type: ignore[misc]
        def __init__(self, address: str, *args: Any, **kwargs: Any) -> None:
            super().__init__(address, *args, **kwargs)
            self.address = url

    cryptofeed.feed.WSAsyncConn = PlainConn
    symbols, info = Bitmex._parse_symbol_data([instrument(s) for s in exchange_symbols])
    Symbols.set(BITMEX, symbols, info)

    callbacks: Counter[str] = Counter()
    seen = 0
    # cryptofeed's default: uvloop when installed (it is one of its dependencies).
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    done = loop.create_future()

    async def on_book(book: Any, receipt: float) -> None:
        callbacks["book"] += 1

    async def on_trade(trade: Any, receipt: float) -> None:
        callbacks["trade"] += 1

    async def on_open_interest(oi: Any, receipt: float) -> None:
        callbacks["open_interest"] += 1

    class CountingBitmex(Bitmex):  # type: ignore[misc]
        async def message_handler(self, msg: str, conn: Any, timestamp: float) -> None:
            nonlocal seen
            await super().message_handler(msg, conn, timestamp)
            # Per-symbol subscriptions get one partial per symbol and table, so the updates
            # (every frame but the partials) say when the whole stream has been handled.
            if msg.startswith('{"table"') and '"action":"partial"' not in msg[:60]:
                seen += 1
                if seen == n_updates and not done.done():
                    done.set_result(time.perf_counter())

    asyncio.set_event_loop(loop)
    handler = FeedHandler(config={"log": {"disabled": True}, "uvloop": False})
    handler.add_feed(
        CountingBitmex(
            symbols=list(symbols),
            channels=[L2_BOOK, TRADES, OPEN_INTEREST],
            callbacks={L2_BOOK: on_book, TRADES: on_trade, OPEN_INTEREST: on_open_interest},
        )
    )
    start = time.perf_counter()
    handler.run(start_loop=False, install_signal_handlers=False)
    end = loop.run_until_complete(asyncio.wait_for(done, 900))
    print(json.dumps({"rate": n_frames / (end - start), "callbacks": dict(callbacks)}), flush=True)


if __name__ == "__main__":
    main()
