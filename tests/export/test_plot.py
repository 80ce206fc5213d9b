"""The market picture: what the series keeps, and the PNG it draws."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bitmex_trio_websocket import Storage
from bitmex_trio_websocket._export import ExportError, MarketSeries, render_plot

from ..replay.helpers import captured_session, reference_book, table_frames

PNG = b"\x89PNG\r\n\x1a\n"


def series_of(frames: list[tuple[float, str]], **options: str | None) -> MarketSeries:
    storage = Storage()
    series = MarketSeries(**options)  # type: ignore[arg-type]
    for t, text in frames:
        series.note(storage.apply(orjson.loads(text)), t, storage)
    return series


def test_the_series_follows_the_top_of_book_and_the_trades() -> None:
    frames = table_frames(captured_session())
    series = series_of(frames, symbol="XBTUSD")
    assert list(series.tracks) == ["XBTUSD"]
    track = series.tracks["XBTUSD"]
    assert len(track.times) > 5 and list(track.times) == sorted(track.times)
    # Each point is the recomputed top of book as of that message.
    for t, mid, spread in zip(track.times, track.mids, track.spreads, strict=True):
        bids, asks = reference_book(((u, x) for u, x in frames if u <= t), "XBTUSD")
        assert (mid, spread) == ((bids[0][0] + asks[0][0]) / 2, asks[0][0] - bids[0][0])
    trades = [
        row
        for _, text in frames
        if text.startswith('{"table":"trade","action":"insert"')
        for row in orjson.loads(text)["data"]
        if row["symbol"] == "XBTUSD"
    ]
    assert list(track.trade_sizes) == [row["size"] for row in trades] and trades
    assert list(track.trade_buys) == [row["side"] == "Buy" for row in trades]


def test_without_a_symbol_the_busiest_with_trades_is_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    series = series_of(table_frames(captured_session()))
    assert len(series.tracks) > 5
    chosen = series.chosen()
    assert chosen is not None and chosen[0] == "XBTUSD"  # the one with trades in this capture
    path = tmp_path / "market.png"
    bucket = render_plot(series, path)
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 20_000
    assert bucket == 0.2  # a nice step for a 30-second capture: about 150 bars
    assert render_plot(series, tmp_path / "m.png", bucket=5.0) == 5.0


def test_quotes_serve_as_a_book(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    series = series_of(table_frames(captured_session()), book_table="quote", symbol="XBTUSD")
    assert len(series.tracks["XBTUSD"].times) > 3
    render_plot(series, tmp_path / "quotes.png")


def test_nothing_to_plot_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="nothing to plot: the data holds no orderBookL2:DOGE"):
        render_plot(MarketSeries(symbol="DOGE"), tmp_path / "x.png")
    with pytest.raises(ValueError):
        MarketSeries(book_table="trade")
