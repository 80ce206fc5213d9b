"""The tutorial's first listener: trades from a local emulator, printed as they happen."""

from contextlib import aclosing

import trio

from bitmex_trio_websocket import open_bitmex_websocket
from bitmex_trio_websocket.emulator import open_emulator


async def main() -> None:
    async with open_emulator(seed=1, rate=200) as emulator:  # 127.0.0.1, a free port
        print("emulator at", emulator.url)
        async with open_bitmex_websocket(emulator.url) as bws:
            async with aclosing(bws.listen("trade", "XBTUSD")) as trades:
                count = 0
                async for trade in trades:  # one dict per row
                    side, size, price = trade["side"], trade["size"], trade["price"]
                    print(trade["timestamp"], side, size, "@", price)
                    count += 1
                    if count == 5:
                        break  # leaving the loop unsubscribes


trio.run(main)
