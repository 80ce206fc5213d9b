"""Backtest speed: messages of history per wall second, with a strategy trading every data second.

Theory of operation: the seeded benchmark stream (``gen_stream``: the emulator's synthetic
market, ~93% order-book deltas, three symbols) is written once as a Tardis raw slice file at
``--rate`` messages per data second (default 50, about what BitMEX's XBTUSD ``orderBookL2``,
``trade`` and ``instrument`` sent together on an ordinary day), so ``--messages`` 200,000 are
about 67 minutes of data. ``run_backtest`` then runs over it (``MockClock``, the emulator in
memory, the report recorded), per path:

* ``idle strategy``: connected, doing nothing (the cost of the market, the clients' upkeep and
  the report's sampling);
* ``an order every data second``: a 100-contract XBTUSD market order each data second, buys and
  sells alternating (each one a REST round trip in memory, a fill, the private rows to the
  strategy's websocket and to the runner's);
* ``... + listening to orderBookL2:XBTUSD``: the same, with the strategy also reading every row of
  the XBTUSD book on its websocket, as a strategy that looks at the market does.

Per path the figure is messages of history per wall second (median of ``--runs``), with the
data seconds per wall second and the fills of the run.

``--sleeping-pump`` adds each path once more with the emulator's history pump sleeping until
every frame (a cancel scope per frame, trio's autojump moving the clock), as it did before it
fast-forwarded the clock itself (``emulator._fast_forward``): the two alternate in every round,
so drift hits both alike, and the reports of the two must be the same bytes (checked).

    python -m benchmarks.backtest --messages 200000 --runs 3 [--sleeping-pump]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import Any, Final

import trio

from bitmex_trio_websocket.backtest import Report, run_backtest
from bitmex_trio_websocket.emulator._fast_forward import FastForward

from ._common import Result, add_common_arguments, cache_dir, emit
from .gen_stream import generate

__all__ = ["SLEEPING", "history_file", "main", "measure", "sleeping_pump"]

Strategy = Callable[[Any, Any], Any]


def _stamp(t: float) -> str:
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def history_file(messages: int, seed: int = 1, rate: float = 50.0) -> Path:
    """The cached slice file of ``messages`` frames at ``rate`` per data second."""
    path = cache_dir() / f"backtest-{messages}-seed{seed}-rate{rate:g}.txt"
    if not path.exists():
        frames = generate(messages, seed, rate=rate)
        tmp = Path(f"{os.fspath(path)}.tmp")
        tmp.write_bytes(b"".join(f"{_stamp(t)} {text}\n".encode() for t, text in frames))
        tmp.replace(path)
    return path


async def idle(bws: Any, rest: Any) -> None:
    await trio.sleep_forever()


async def order_every_second(bws: Any, rest: Any) -> None:
    side = "Buy"
    while True:
        await rest.place_order(symbol="XBTUSD", side=side, orderQty=100, ordType="Market")
        side = "Sell" if side == "Buy" else "Buy"
        await trio.sleep(1)


async def order_every_second_reading_the_book(bws: Any, rest: Any) -> None:
    async def read() -> None:
        async with aclosing(bws.listen("orderBookL2", "XBTUSD")) as rows:
            async for _ in rows:
                pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await order_every_second(bws, rest)


PATHS: dict[str, Strategy] = {
    "idle strategy": idle,
    "an order every data second": order_every_second,
    "... + listening to orderBookL2:XBTUSD": order_every_second_reading_the_book,
}


SLEEPING: Final = " [sleeping pump]"


@contextmanager
def sleeping_pump() -> Iterator[None]:
    """The history pump without fast-forward: it sleeps until each frame."""
    saved = FastForward.__dict__["of_current_clock"]
    FastForward.of_current_clock = staticmethod(lambda: None)  # type: ignore[method-assign]
    try:
        yield
    finally:
        FastForward.of_current_clock = saved  # type: ignore[method-assign]


def measure(
    path: Path, runs: int, paths: Sequence[str] = tuple(PATHS), *, sleeping: bool = False
) -> list[Result]:
    results: dict[str, Result] = {}
    reports: dict[str, bytes] = {}
    for round_ in range(runs):
        for name in paths:  # interleaved: drift hits every path alike
            modes = [False, True] if sleeping else [False]
            for asleep in modes if round_ % 2 == 0 else modes[::-1]:
                label = name + SLEEPING if asleep else name
                gc.collect()
                begin = time.perf_counter()
                if asleep:
                    with sleeping_pump():
                        report: Report = run_backtest(PATHS[name], path)
                else:
                    report = run_backtest(PATHS[name], path)
                wall = time.perf_counter() - begin
                data = report.to_json()
                if reports.setdefault(name, data) != data:
                    raise AssertionError(f"{label}: the report's bytes differ between runs")
                result = results.setdefault(label, Result(label, [], report.messages))
                result.rates.append(report.messages / wall)
                seconds = report.end - report.start
                result.extra = {"data seconds": round(seconds), "fills": len(report.fills)}
    for result in results.values():  # at the median rate
        data_seconds = result.extra["data seconds"]
        result.extra["data seconds per wall second"] = round(
            data_seconds * result.median / result.messages
        )
    return list(results.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backtest", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument("--rate", type=float, default=50.0, help="messages per data second")
    parser.add_argument(
        "--sleeping-pump",
        action="store_true",
        help="also each path with the history pump sleeping until every frame (alternating)",
    )
    args = parser.parse_args(argv)
    path = Path(args.stream) if args.stream else history_file(args.messages, args.seed, args.rate)
    results = measure(path, args.runs, sleeping=args.sleeping_pump)
    emit(results, args.json, f"Backtest over {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
