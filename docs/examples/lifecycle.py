"""The tutorial's lifecycle events: a dropped connection as ``events()`` shows it."""

from contextlib import aclosing

import trio

from bitmex_trio_websocket import Change, Disconnected, Reconnected, open_bitmex_websocket
from bitmex_trio_websocket.emulator import FaultKind, open_emulator


async def main() -> None:
    async with open_emulator(seed=1, rate=200) as emulator:
        # The first connection is dropped (no close frame) after it sent 5 messages.
        emulator.schedule_fault(FaultKind.DROP, connection=0, after_messages=5)
        async with open_bitmex_websocket(emulator.url, backoff_initial=0.1) as bws:
            async with aclosing(bws.events("instrument", "XBTUSD")) as events:
                partials = 0
                async for event in events:
                    if isinstance(event, Change):
                        if event.action == "partial":
                            partials += 1
                            print(f"partial #{partials}: {len(event.rows)} row(s)")
                            if partials == 2:
                                break  # the fresh image after the reconnect
                    elif isinstance(event, Disconnected):
                        print("disconnected:", event.code, event.reason)
                    elif isinstance(event, Reconnected):
                        print("reconnected after", event.attempts, "attempt(s)")
        print("reconnects:", bws.stats.reconnects)


trio.run(main)
