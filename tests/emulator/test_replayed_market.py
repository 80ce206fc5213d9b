"""The replayed market (issue 17 item 5): history as the emulator's venue.

Hand-written frames check each rule (time, partials as deltas, level changes, trades, prices,
taking without impact); cryptofeed's 2021 capture (read in place from ../shared/captures, skipped
when absent) checks that the replayed book is the client's book and that snapshots converge
with the deltas. The paper exchange is a recording fake here: what the venue tells it, in order.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from bitmex_trio_websocket import ReplaySourceError
from bitmex_trio_websocket._storage import Storage
from bitmex_trio_websocket.emulator.market import Delta
from bitmex_trio_websocket.emulator.market._replayed import ReplayedMarket
from bitmex_trio_websocket.emulator.market._schemas import TABLE_SCHEMAS

from ..replay.helpers import captured_session, stamped_time, table_frames, write_slices

T0 = 1_735_689_600.0
TS = "2025-01-01T00:00:00.000Z"


class FakeExchange:
    """Records what the venue reports; each report adds one private delta (to check order)."""

    def __init__(self, contracts: Any, liquidity: Any, rng: Any, fmt: Any, marks: Any) -> None:
        self.contracts = contracts
        self.liquidity = liquidity
        self.marks = marks
        self.events: list[tuple[Any, ...]] = []
        self.accounts: dict[int, dict[str, int]] = {}

    def _note(self, event: tuple[Any, ...], out: list[Delta]) -> None:
        self.events.append(event)
        out.append(Delta("execution", "insert", event[1], [{"event": list(event)}], account=1))

    def on_level(self, symbol: str, side: str, price: float, size: int, now: float,
                 out: list[Delta]) -> None:  # fmt: skip
        self._note(("level", symbol, side, price, size, now), out)

    def on_trade(self, symbol: str, side: str, price: float, qty: int, now: float,
                 out: list[Delta]) -> None:  # fmt: skip
        self._note(("trade", symbol, side, price, qty, now), out)

    def on_prices(self, symbol: str, now: float, out: list[Delta], *, last: float | None = None,
                  mark: float | None = None, index: float | None = None) -> None:  # fmt: skip
        self._note(("prices", symbol, now, last, mark, index), out)

    def add_contract(self, symbol: str, contract: Any, mark: float) -> None:
        self.events.append(("contract", symbol, contract.tick_size, mark))

    def add_account(self, account: int, deposits: dict[str, int], now: float) -> None:
        self.accounts[account] = dict(deposits)

    def rows(self, table: str, account: int, symbol: str | None) -> list[dict[str, Any]]:
        return [{"account": account, "table": table}]


FAKE: Any = FakeExchange  # stands in for the exchange factory


def msg(table: str, action: str, data: list[dict[str, Any]], **extra: Any) -> str:
    return orjson.dumps({"table": table, "action": action, **extra, "data": data}).decode()


def level(id_: int, side: str, size: int, price: float, symbol: str = "XBTUSD") -> dict[str, Any]:
    return {"symbol": symbol, "id": id_, "side": side, "size": size, "price": price,
            "timestamp": TS, "transactTime": TS}  # fmt: skip


BOOK_KEYS = {"keys": ["symbol", "id", "side"], "types": dict(TABLE_SCHEMAS["orderBookL2"].types)}


def book_partial(levels: list[dict[str, Any]], symbol: str = "XBTUSD") -> str:
    return msg("orderBookL2", "partial", levels, **BOOK_KEYS, filter={"symbol": symbol})


INSTRUMENT = {
    "symbol": "XBTUSD", "state": "Open", "typ": "FFWCSX", "tickSize": 0.5, "lotSize": 100,
    "multiplier": -100_000_000, "isInverse": True, "isQuanto": False, "underlying": "XBT",
    "quoteCurrency": "USD", "settlCurrency": "XBt", "referenceSymbol": ".BXBT",
    "lastPrice": 100.0, "markPrice": 100.25, "indicativeSettlePrice": 100.1, "timestamp": TS,
}  # fmt: skip

BASE_BOOK = [
    level(1, "Sell", 300, 101.0),
    level(2, "Sell", 200, 100.5),
    level(3, "Buy", 100, 100.0),
    level(4, "Buy", 400, 99.5),
]


def market(tmp_path: Path, frames: list[tuple[float, str]], **options: Any) -> ReplayedMarket:
    path = write_slices(tmp_path / "slices.txt", frames)
    return ReplayedMarket(path, exchange_factory=FAKE, **options)


def fake(venue: ReplayedMarket) -> FakeExchange:
    exchange = venue.exchange
    assert isinstance(exchange, FakeExchange)
    return exchange


def as_messages(deltas: list[Delta]) -> list[dict[str, Any]]:
    return [{"table": d.table, "action": d.action, "data": d.rows} for d in deltas]


# --------------------------------------------------------------------------- time


def test_step_consumes_frames_by_data_time(tmp_path: Path) -> None:
    frames = [
        (T0, book_partial(BASE_BOOK)),
        (T0 + 1, msg("orderBookL2", "update", [level(3, "Buy", 150, 100.0)])),
        (T0 + 2, msg("orderBookL2", "delete", [level(1, "Sell", 300, 101.0)])),
    ]
    venue = market(tmp_path, frames)
    assert venue.start == venue.next_time() == stamped_time(T0)
    assert not venue.symbols  # nothing replayed yet: no state
    assert venue.snapshot("orderBookL2", "XBTUSD").rows == []

    first = venue.step(T0 + 0.5)
    assert [(d.table, d.action) for d in first if d.account is None] == [("orderBookL2", "insert")]
    assert venue.symbols == ("XBTUSD",)
    assert venue.next_time() == stamped_time(T0 + 1)
    assert venue.step(T0 + 0.9) == []  # nothing recorded in between
    second = venue.step(T0 + 1)  # a frame exactly at `now` is due
    assert [d.action for d in second if d.account is None] == ["update"]
    assert venue.step(T0 + 10)[0].action == "delete"
    assert venue.next_time() is None
    assert venue.step(T0 + 20) == []
    assert venue.frames == 3


def test_deltas_go_out_as_recorded_and_those_before_a_partial_are_dropped(
    tmp_path: Path,
) -> None:
    early = msg("orderBookL2", "update", [level(3, "Buy", 1, 100.0)])
    update = msg("orderBookL2", "update", [level(3, "Buy", 150, 100.0)])
    frames = [
        (T0, '{"info":"Welcome to the BitMEX Realtime API.","version":"2.0.0"}'),
        (T0, early),  # BitMEX sent deltas before partials: never sent, never reported
        (T0 + 1, book_partial(BASE_BOOK)),
        (T0 + 2, update),
    ]
    venue = market(tmp_path, frames)
    assert venue.step(T0) == []
    assert fake(venue).events == []
    assert venue.ignored == 1
    venue.step(T0 + 1)
    public = [d for d in venue.step(T0 + 2) if d.account is None]
    assert public == [Delta("orderBookL2", "update", "XBTUSD", orjson.loads(update)["data"])]


# --------------------------------------------------------------------------- the exchange's events


def test_level_changes_trades_and_prices_reach_the_exchange_in_order(tmp_path: Path) -> None:
    index_row = {"symbol": ".BXBT", "typ": "MRCXXX", "lastPrice": 99.9, "timestamp": TS}
    frames = [
        (T0, msg("instrument", "partial", [INSTRUMENT, index_row], keys=["symbol"], filter={})),
        (T0, book_partial(BASE_BOOK)),
        (T0, msg("trade", "partial", [], keys=[], filter={"symbol": "XBTUSD"})),
        (T0 + 1, msg("orderBookL2", "update", [level(2, "Sell", 50, 100.5)])),
        (
            T0 + 2,
            msg(
                "trade",
                "insert",
                [
                    {
                        "symbol": "XBTUSD",
                        "side": "Buy",
                        "size": 150,
                        "price": 100.5,
                        "timestamp": TS,
                    },
                    {
                        "symbol": "XBTUSD",
                        "side": "Buy",
                        "size": 50,
                        "price": 101.0,
                        "timestamp": TS,
                    },
                ],
            ),
        ),
        (T0 + 3, msg("orderBookL2", "delete", [level(2, "Sell", 50, 100.5)])),
        (T0 + 3, msg("orderBookL2", "insert", [level(5, "Buy", 70, 100.0)])),  # 2nd at 100.0
        (T0 + 4, msg("instrument", "update", [{"symbol": "XBTUSD", "markPrice": 100.75}])),
        (T0 + 5, msg("instrument", "update", [{"symbol": ".BXBT", "lastPrice": 100.2}])),
    ]
    venue = market(tmp_path, frames)
    venue.step(T0)
    exchange = fake(venue)
    assert exchange.contracts["XBTUSD"].tick_size == 0.5  # the instrument row's contract
    assert exchange.marks == {"XBTUSD": 100.25}
    assert venue.indices == (".BXBT",)
    exchange.events.clear()
    deltas = venue.step(T0 + 10)
    t = [stamped_time(T0 + k) for k in range(6)]
    assert exchange.events == [
        ("level", "XBTUSD", "Sell", 100.5, 50, t[1]),
        ("trade", "XBTUSD", "Buy", 100.5, 150, t[2]),
        ("trade", "XBTUSD", "Buy", 101.0, 50, t[2]),
        ("level", "XBTUSD", "Sell", 100.5, 0, t[3]),
        ("level", "XBTUSD", "Buy", 100.0, 170, t[3]),  # two levels at one price: summed
        ("prices", "XBTUSD", t[4], None, 100.75, None),
        ("prices", "XBTUSD", t[5], None, None, 100.2),  # the index the contract references
    ]
    assert exchange.marks == {"XBTUSD": 100.75}
    # Each frame's public delta first, then the private deltas the exchange made of it.
    kinds = [("private" if d.account else d.table) for d in deltas]
    assert kinds == [
        "orderBookL2", "private", "trade", "private", "private", "orderBookL2", "private",
        "orderBookL2", "private", "instrument", "private", "instrument", "private",
    ]  # fmt: skip


def test_pre_2023_updates_without_prices_are_resolved_through_the_store(tmp_path: Path) -> None:
    legacy = [{k: v for k, v in row.items() if k not in ("timestamp", "transactTime")}
              for row in BASE_BOOK]  # fmt: skip
    partial = msg("orderBookL2", "partial", legacy, keys=["symbol", "id", "side"],
                  types={"symbol": "symbol", "id": "long", "side": "symbol", "size": "long",
                         "price": "float"}, foreignKeys={"symbol": "instrument", "side": "side"},
                  attributes={"symbol": "parted", "id": "sorted"},
                  filter={"symbol": "XBTUSD"})  # fmt: skip
    update = msg("orderBookL2", "update", [{"symbol": "XBTUSD", "id": 4, "side": "Buy",
                                            "size": 10}])  # fmt: skip
    delete = msg("orderBookL2", "delete", [{"symbol": "XBTUSD", "id": 1, "side": "Sell"}])
    venue = market(tmp_path, [(T0, partial), (T0 + 1, update), (T0 + 2, delete)])
    venue.step(T0)
    fake(venue).events.clear()
    deltas = venue.step(T0 + 2)
    assert [d.rows for d in deltas if d.account is None] == [
        orjson.loads(update)["data"],
        orjson.loads(delete)["data"],  # as BitMEX sent them
    ]
    assert [e[:5] for e in fake(venue).events] == [
        ("level", "XBTUSD", "Buy", 99.5, 10),
        ("level", "XBTUSD", "Sell", 101.0, 0),
    ]
    snap = venue.snapshot("orderBookL2", "XBTUSD")
    assert snap.attributes == {"symbol": "parted", "id": "sorted"}  # the recorded partial's form
    assert "timestamp" not in snap.types


# --------------------------------------------------------------------------- taking


def test_take_walks_the_recorded_book_without_impact_until_the_level_changes(
    tmp_path: Path,
) -> None:
    frames = [
        (T0, book_partial(BASE_BOOK)),
        (T0 + 5, msg("orderBookL2", "update", [level(2, "Sell", 250, 100.5)])),
    ]
    venue = market(tmp_path, frames)
    venue.step(T0)
    books = venue.liquidity
    before = venue.snapshot("orderBookL2", "XBTUSD").rows
    out: list[Delta] = []
    fills = books.take("XBTUSD", True, 101.0, 400, T0, out)
    assert [(p, q) for p, q, _ in fills] == [(100.5, 200), (101.0, 200)]
    assert len({match for _, _, match in fills}) == 2
    assert out == []  # history has no public trade of ours
    assert venue.snapshot("orderBookL2", "XBTUSD").rows == before  # the record is unchanged
    # What we took is remembered: a second order cannot take it again.
    assert books.best("XBTUSD", "Sell") == 101.0
    assert books.level_size("XBTUSD", "Sell", 100.5) == 0
    assert books.level_size("XBTUSD", "Sell", 101.0) == 100
    again = books.take("XBTUSD", True, None, 1000, T0, out)
    assert [(p, q) for p, q, _ in again] == [(101.0, 100)]
    assert books.best("XBTUSD", "Sell") is None
    assert books.take("XBTUSD", False, 100.0, 1000, T0, out)[0][:2] == (100.0, 100)  # a limit
    # The level's next recorded update makes the record the truth again.
    venue.step(T0 + 5)
    assert books.level_size("XBTUSD", "Sell", 100.5) == 250
    assert books.level_size("XBTUSD", "Sell", 101.0) == 0  # not updated: still taken
    assert books.best("XBTUSD", "Sell") == 100.5


def test_orders_find_no_book_before_its_partial(tmp_path: Path) -> None:
    venue = market(tmp_path, [(T0 + 1, book_partial(BASE_BOOK))])
    books = venue.liquidity
    assert books.best("XBTUSD", "Buy") is None
    assert books.take("XBTUSD", True, None, 100, T0, []) == []
    assert "XBTUSD" not in fake(venue).contracts  # the exchange refuses the symbol
    venue.step(T0 + 1)
    assert "XBTUSD" in fake(venue).contracts
    assert books.best("XBTUSD", "Buy") == 100.0


# --------------------------------------------------------------------------- partials


def test_a_re_partial_goes_out_as_the_deltas_that_make_it(tmp_path: Path) -> None:
    changed = [
        level(1, "Sell", 300, 101.0),  # unchanged
        level(2, "Sell", 120, 100.5),  # size changed
        level(4, "Buy", 400, 99.5),
        level(6, "Buy", 80, 99.0),  # new; level 3 is gone
    ]
    frames = [(T0, book_partial(BASE_BOOK)), (T0 + 1, ""), (T0 + 2, book_partial(changed))]
    path = tmp_path / "slices.txt"
    path.write_bytes(write_slices(tmp_path / "x", frames[:1]).read_bytes() + b"\n"
                     + write_slices(tmp_path / "y", frames[2:]).read_bytes())  # fmt: skip
    venue = ReplayedMarket(path, exchange_factory=FAKE)
    client = Storage()
    snap = venue.snapshot("orderBookL2", "XBTUSD")
    client.apply({"table": "orderBookL2", "action": "partial", "keys": snap.keys,
                  "filter": snap.filter, "data": snap.rows})  # fmt: skip
    deltas = venue.step(T0 + 10)
    assert venue.gaps == 1
    public = [d for d in deltas if d.account is None]
    assert [(d.action, len(d.rows)) for d in public] == [
        ("insert", 4),
        ("delete", 1),
        ("update", 1),
        ("insert", 1),
    ]
    for message in as_messages(public):
        client.apply(message)
    assert client.rows("orderBookL2", "XBTUSD") == venue.snapshot("orderBookL2", "XBTUSD").rows
    levels = [e[2:5] for e in fake(venue).events if e[0] == "level"][-3:]
    assert levels == [("Buy", 100.0, 0), ("Sell", 100.5, 120), ("Buy", 99.0, 80)]


def test_snapshots_of_tables_not_recorded_and_private_tables(tmp_path: Path) -> None:
    venue = market(tmp_path, [(T0, book_partial(BASE_BOOK))])
    venue.step(T0)
    funding = venue.snapshot("funding")
    assert (funding.keys, funding.rows) == (["timestamp", "symbol"], [])
    order = venue.snapshot("order", "XBTUSD", 7)
    assert order.filter == {"account": 7, "symbol": "XBTUSD"}
    assert order.rows == [{"account": 7, "table": "order"}]
    with pytest.raises(ValueError, match="private"):
        venue.snapshot("position")
    with pytest.raises(KeyError):
        venue.snapshot("noSuchTable")
    venue.add_account(9, balance_usdt=5)
    assert fake(venue).accounts[9] == {"XBt": 10**8, "USDt": 5}


def test_public_rows_for_the_rest_api(tmp_path: Path) -> None:
    trades = [
        (T0 + k, msg("trade", "insert", [{"symbol": "XBTUSD", "side": "Sell", "size": 100,
                                          "price": 100.0, "timestamp": TS, "n": k}]))
        for k in range(1, 8)
    ]  # fmt: skip
    frames = [
        (T0, book_partial(BASE_BOOK)),
        (T0, msg("trade", "partial", [], keys=[], filter={"symbol": "XBTUSD"})),
        *trades,
    ]
    venue = market(tmp_path, frames, max_trades=5)
    venue.step(T0 + 100)
    assert [row["n"] for row in venue.public_rows("trade", "XBTUSD")] == [3, 4, 5, 6, 7]
    book = venue.public_rows("orderBookL2", "XBTUSD")
    assert [(row["side"], row["price"]) for row in book] == [
        ("Sell", 101.0),
        ("Sell", 100.5),
        ("Buy", 100.0),
        ("Buy", 99.5),
    ]  # a partial's order: asks then bids, each by descending price
    assert venue.public_rows("orderBookL2", "ETHUSD") == []
    assert venue.public_rows("instrument") == []


def test_a_message_the_store_rejects_names_its_file_and_line(tmp_path: Path) -> None:
    bad = msg("orderBookL2", "insert", [{"symbol": "XBTUSD", "id": "x", "side": "Buy"}])
    venue = market(tmp_path, [(T0, book_partial(BASE_BOOK)), (T0 + 1, bad)])
    with pytest.raises(ReplaySourceError) as caught:
        venue.step(T0 + 1)
    assert caught.value.line == 2
    assert str(caught.value.path).endswith("slices.txt")


# --------------------------------------------------------------------------- a real session


def replayed_capture(tmp_path: Path) -> tuple[ReplayedMarket, list[tuple[float, str]]]:
    frames = captured_session()
    path = write_slices(tmp_path / "capture.txt", frames)
    return ReplayedMarket(path, exchange_factory=FAKE), frames


def test_the_replayed_book_is_the_clients_book(tmp_path: Path) -> None:
    venue, frames = replayed_capture(tmp_path)
    client = Storage()
    for _, text in table_frames(frames):
        client.apply(orjson.loads(text))
    venue.step(frames[-1][0] + 1)
    assert venue.symbols and set(venue.symbols) == set(client.data["orderBookL2"])
    for symbol in venue.symbols:
        rows = venue.snapshot("orderBookL2", symbol).rows
        assert rows == client.rows("orderBookL2", symbol)
        book = client.book(symbol)
        assert venue.liquidity.best(symbol, "Buy") == book.best_bid[0]  # type: ignore[index]
        assert venue.liquidity.best(symbol, "Sell") == book.best_ask[0]  # type: ignore[index]
        for price, _ in book.asks[:20]:
            expected = sum(int(s) for p, s in book.asks if p == price)
            assert venue.liquidity.level_size(symbol, "Sell", price) == expected


def test_snapshots_converge_with_the_deltas_sent(tmp_path: Path) -> None:
    venue, frames = replayed_capture(tmp_path)
    rng = random.Random(5)
    middle = frames[len(frames) // 3][0]
    venue.step(middle)
    clients: dict[str, Storage] = {}
    for symbol in venue.symbols:
        snap = venue.snapshot("orderBookL2", symbol)
        client = clients[symbol] = Storage()
        client.apply({"table": "orderBookL2", "action": "partial", "keys": snap.keys,
                      "filter": snap.filter, "data": snap.rows})  # fmt: skip
    now = middle
    while venue.next_time() is not None:
        now += rng.uniform(0.0, 0.05)
        for delta in venue.step(now):
            if delta.table == "orderBookL2" and delta.symbol in clients:
                result = clients[delta.symbol].apply(as_messages([delta])[0])
                assert not result.violations
    for symbol, client in clients.items():
        assert client.rows("orderBookL2", symbol) == venue.snapshot("orderBookL2", symbol).rows


def test_two_runs_make_the_same_bytes(tmp_path: Path) -> None:
    def run() -> bytes:
        venue, frames = replayed_capture(tmp_path)
        out = bytearray()
        now = frames[0][0]
        while venue.next_time() is not None:
            now += 0.01
            deltas = venue.step(now)
            out += orjson.dumps([(d.table, d.action, d.symbol, d.rows) for d in deltas])
            if deltas and venue.symbols:
                fills = venue.liquidity.take(venue.symbols[0], True, None, 1, now, [])
                out += orjson.dumps(fills)
        out += orjson.dumps(fake(venue).events)
        return bytes(out)

    assert run() == run()


# --------------------------------------------------------------------------- bounded memory


def test_a_long_source_is_streamed_with_bounded_memory(tmp_path: Path) -> None:
    total = 60_000
    lines = [(T0, book_partial(BASE_BOOK))]
    lines.append((T0, msg("trade", "partial", [], keys=[], filter={"symbol": "XBTUSD"})))
    for k in range(total):
        size = 100 + k % 50
        lines.append((T0 + 1 + k / 100, msg("orderBookL2", "update",
                                              [level(3, "Buy", size, 100.0)])))  # fmt: skip
        if k % 10 == 0:
            lines.append((T0 + 1 + k / 100, msg("trade", "insert", [
                {"symbol": "XBTUSD", "side": "Sell", "size": 100, "price": 100.0,
                 "timestamp": TS, "k": k}])))  # fmt: skip
    venue = market(tmp_path, lines, max_trades=100)
    most = 0
    now = T0
    while venue.next_time() is not None:
        now += 1.0
        venue.step(now)
        most = max(most, venue.held)
    assert venue.frames == len(lines)
    assert 0 < most < len(lines) // 5  # one block of lines at a time, never the whole file
    assert len(venue.public_rows("trade")) == 100
    assert venue.liquidity.level_size("XBTUSD", "Buy", 100.0) == 100 + (total - 1) % 50
