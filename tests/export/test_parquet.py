"""Rows to Parquet: one typed column per field, UTC timestamps, bounded batches, honest counts."""

from __future__ import annotations

import builtins
import datetime
from pathlib import Path
from typing import Any

import pytest

from bitmex_trio_websocket import BitMEXError
from bitmex_trio_websocket._export import MissingExtraError, ParquetRowWriter

pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")

UTC = datetime.UTC
TRADE_TYPES = {"timestamp": "timestamp", "symbol": "symbol", "side": "symbol", "size": "long",
               "price": "float", "trdMatchID": "guid", "homeNotional": "float"}  # fmt: skip


def trade(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "timestamp": f"2021-07-22T22:36:{n % 60:02d}.{n % 1000:03d}Z",
        "symbol": "XBTUSD",
        "side": "Buy" if n % 2 else "Sell",
        "size": 100 * n,
        "price": 32000 + n / 2 if n % 3 else 32000 + n,  # ints and floats mixed, as BitMEX wrote
        "trdMatchID": f"id-{n}",
        **extra,
    }


def test_rows_round_trip_with_typed_columns(tmp_path: Path) -> None:
    path = tmp_path / "trades.parquet"
    rows = [trade(n) for n in range(10)]
    with ParquetRowWriter(path, types=TRADE_TYPES, batch_rows=3) as writer:
        for row in rows:
            writer.write(row)
    table = pq.read_table(path)
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("size").type == pa.int64()
    assert schema.field("price").type == pa.float64()
    assert schema.field("symbol").type == pa.string()
    assert schema.field("homeNotional").type == pa.float64()  # declared, never sent: nulls
    assert pq.ParquetFile(path).metadata.num_row_groups == 4  # 3 + 3 + 3 + 1
    got = table.to_pylist()
    assert [r["size"] for r in got] == [r["size"] for r in rows]
    assert [r["price"] for r in got] == [float(r["price"]) for r in rows]
    assert got[7]["timestamp"] == datetime.datetime(2021, 7, 22, 22, 36, 7, 7000, tzinfo=UTC)
    assert all(r["homeNotional"] is None for r in got)
    assert writer.rows_written == 10 and not writer.unfit and not writer.unknown
    assert writer.summary() == f"wrote 10 rows to {path}"
    assert not (tmp_path / "trades.parquet.partial").exists()


def test_without_declared_types_the_first_batch_decides(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    with ParquetRowWriter(path, batch_rows=4) as writer:
        for n in range(4):
            writer.write(trade(n, flag=n > 1, levels=[[1.5, n]]))
        writer.write(trade(4, size=2.5, late="new field", timestamp="not a time"))
    table = pq.read_table(path)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("price").type == pa.float64()  # ints and floats seen
    assert table.schema.field("size").type == pa.int64()
    assert table.schema.field("flag").type == pa.bool_()
    assert table.column("levels").to_pylist()[1] == "[[1.5,1]]"  # nested: JSON text
    assert "late" not in table.schema.names
    last = table.to_pylist()[-1]
    assert last["size"] is None and last["timestamp"] is None  # never a wrong number
    assert writer.unfit == {"size": 1, "timestamp": 1}
    assert writer.unknown == {"late": 1}
    assert "size (1)" in writer.summary() and "late (1)" in writer.summary()


def test_an_empty_export_still_has_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    ParquetRowWriter(path, types=TRADE_TYPES).close()
    table = pq.read_table(path)
    assert table.num_rows == 0 and table.schema.names == list(TRADE_TYPES)


def test_an_interrupted_export_is_a_valid_file_of_the_rows_so_far(tmp_path: Path) -> None:
    path = tmp_path / "partial.parquet"
    with pytest.raises(KeyboardInterrupt), ParquetRowWriter(path, batch_rows=2) as writer:
        for n in range(5):
            writer.write(trade(n))
        raise KeyboardInterrupt
    assert pq.read_table(path).num_rows == 5
    with pytest.raises(ValueError, match="closed"):
        writer.write(trade(6))


def test_a_missing_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    monkeypatch.setattr("importlib.import_module", lambda name: no_pyarrow(name))
    with pytest.raises(MissingExtraError) as caught:
        ParquetRowWriter("never.parquet")
    assert isinstance(caught.value, BitMEXError)
    assert caught.value.extra == "parquet"
    assert str(caught.value) == (
        "writing Parquet needs pyarrow, which is not installed: "
        'pip install "bitmex-trio-websocket[parquet]"'
    )
