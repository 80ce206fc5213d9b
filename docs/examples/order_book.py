"""The tutorial's order book: keep a book current with one listener, read it from storage."""

from contextlib import aclosing

import trio

from bitmex_trio_websocket import BitMEXWebsocket, open_bitmex_websocket
from bitmex_trio_websocket.emulator import open_emulator


async def keep_book(bws: BitMEXWebsocket, symbol: str) -> None:
    # Storage keeps a topic current only while someone listens to it.
    async with aclosing(bws.listen("orderBookL2", symbol)) as rows:
        async for _ in rows:
            pass


async def main() -> None:
    async with open_emulator(seed=1, rate=200) as emulator:
        async with open_bitmex_websocket(emulator.url) as bws:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_book, bws, "XBTUSD")
                book = bws.storage.book("XBTUSD")
                for _ in range(3):
                    await trio.sleep(1)
                    print("best bid", book.best_bid, "best ask", book.best_ask)
                    print("top 3 bids", book.bids[:3])
                    print("top 3 asks", book.asks[:3])
                print("tables kept:", sorted(bws.storage.data))  # only what is listened to
                nursery.cancel_scope.cancel()


trio.run(main)
