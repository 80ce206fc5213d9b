"""The progress line: what it says, and how often it redraws."""

from __future__ import annotations

import io

from bitmex_trio_websocket._export import Progress, progress_line


def test_the_line_says_messages_data_time_and_rate() -> None:
    assert progress_line(1234567, 1626993370.9, 45678.4) == (
        "1,234,567 msgs  data 2021-07-22 22:36:10Z  45,678 msg/s"
    )
    assert progress_line(5, None, 0.0, 0.25) == "[#####...............]  25%  5 msgs  0 msg/s"


def test_redraws_at_most_every_interval_and_rewrites_its_line() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(stream, now=lambda: now[0], interval=0.5)
    for step in range(1, 11):  # 10 updates, 0.1 s apart: two redraws
        now[0] = step / 10
        progress.update(step * 1000, 1626993370.0 + step)
    assert progress.drawn == 2
    text = stream.getvalue()
    assert text.count("\r") == 2 and "\n" not in text
    assert "5,000 msgs" in text and "10,000 msg/s" in text  # 5,000 messages in 0.5 s
    progress.close(10_500, 1626993381.0)
    assert stream.getvalue().endswith("\n") and "10,500 msgs" in stream.getvalue()


def test_nothing_is_written_when_nothing_was_drawn() -> None:
    stream = io.StringIO()
    progress = Progress(stream, now=lambda: 0.0)
    progress.update(1, None)
    progress.close(1, None)
    assert stream.getvalue() == ""
