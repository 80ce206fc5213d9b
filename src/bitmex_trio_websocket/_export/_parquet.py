"""Rows to a Parquet file: one column per field, typed, written in batches.

Theory of operation: ``ParquetRowWriter`` buffers rows (dicts) and writes them ``batch_rows`` at a
time as one row group each, so memory stays bounded however long the replay. The schema is fixed
by the first batch (``_columns.infer_kinds``: the partial's declared ``types`` when the caller has
them, inferred kinds for the rest); every later batch is fitted to it (``_columns.fit``). What
cannot be written faithfully is counted, never guessed: ``unfit[field]`` values that did not fit
their column (written as null), ``unknown[field]`` values of fields that first appeared after the
schema was fixed (not written). ``summary()`` says both in one line.

Timestamps (BitMEX's ``...Z`` text) become ``timestamp[us, tz=UTC]`` columns, parsed a column at a
time by Arrow. The file is written to ``PATH.partial`` and renamed into place on ``close``, which
happens however the export ends (an interrupted replay leaves a valid file of the rows so far,
never a truncated one). pyarrow is imported on first use: without the ``parquet`` extra the
writer's constructor raises ``MissingExtraError`` naming it.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Mapping
from itertools import repeat
from types import TracebackType
from typing import Any, Final, Self

from ._columns import Kind, fit, infer_kinds
from ._errors import require

__all__ = ["DEFAULT_BATCH_ROWS", "ParquetRowWriter"]

DEFAULT_BATCH_ROWS: Final = 65_536


class ParquetRowWriter:
    """Write row dicts of one table to ``path`` as Parquet; see the module docstring.

    ``types`` is a BitMEX partial's ``types`` mapping (optional); ``compression`` any codec
    pyarrow knows (``"zstd"`` by default).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        types: Mapping[str, object] | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        compression: str = "zstd",
    ) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self._pa: Any = require("pyarrow", extra="parquet", purpose="writing Parquet")
        self._pq: Any = require("pyarrow.parquet", extra="parquet", purpose="writing Parquet")
        self.path = os.fspath(path)
        self._partial = self.path + ".partial"
        self._declared = dict(types or {})
        self._batch_rows = batch_rows
        self._compression = compression
        self._rows: list[dict[str, Any]] = []
        self._kinds: dict[str, Kind] | None = None
        self._schema: Any = None
        self._writer: Any = None
        self._closed = False
        self.rows_written = 0
        self.unfit: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()

    # -- writing -------------------------------------------------------------------------------

    def write(self, row: Mapping[str, Any]) -> None:
        """Add one row (written when its batch is full)."""
        if self._closed:
            raise ValueError("write to a closed ParquetRowWriter")
        self._rows.append(row if type(row) is dict else dict(row))
        if len(self._rows) >= self._batch_rows:
            self._flush()

    def close(self) -> None:
        """Write what is buffered and put the file in place (idempotent).

        A file with no rows still gets its schema (from ``types``, or no columns).
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._flush(final=True)
            if self._writer is not None:
                self._writer.close()
            os.replace(self._partial, self.path)
        except BaseException:
            _remove_quietly(self._partial)
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def summary(self) -> str:
        """One line: rows written, and what could not be written faithfully (if anything)."""
        text = f"wrote {self.rows_written:,} rows to {self.path}"
        if self.unfit:
            text += "; values that did not fit their column, written as null: " + _counts(
                self.unfit
            )
        if self.unknown:
            text += "; fields first seen after the schema was fixed, not written: " + _counts(
                self.unknown
            )
        return text

    # -- internals -----------------------------------------------------------------------------

    def _flush(self, *, final: bool = False) -> None:
        rows, self._rows = self._rows, []
        if self._kinds is None:
            if not rows and not final:
                return
            self._kinds = infer_kinds(rows, self._declared)
            self._schema = self._pa.schema(
                [(name, self._arrow_type(kind)) for name, kind in self._kinds.items()]
            )
            self._writer = self._pq.ParquetWriter(
                self._partial, self._schema, compression=self._compression
            )
        if not rows:
            return
        kinds = self._kinds
        known = frozenset(kinds)
        if not all(map(known.issuperset, rows)):  # rare: count the fields not in the schema
            for row in rows:
                self.unknown.update(row.keys() - known)
        columns = [self._column(name, kind, rows) for name, kind in kinds.items()]
        self._writer.write_table(self._pa.Table.from_arrays(columns, schema=self._schema))
        self.rows_written += len(rows)

    def _column(self, name: str, kind: Kind, rows: list[dict[str, Any]]) -> Any:
        pa = self._pa
        # dict.get mapped over the rows runs in C: the hot loop of an export.
        values, unfit = fit(kind, list(map(dict.get, rows, repeat(name))))
        if kind is Kind.TIMESTAMP:
            try:
                column = pa.array(values, pa.string()).cast(self._arrow_type(kind))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                values, unfit = fit(kind, values, strict=True)
                column = pa.array(values, pa.string()).cast(self._arrow_type(kind))
        else:
            column = pa.array(values, self._arrow_type(kind))
        if unfit:
            self.unfit[name] += unfit
        return column

    def _arrow_type(self, kind: Kind) -> Any:
        pa = self._pa
        if kind is Kind.BOOL:
            return pa.bool_()
        if kind is Kind.INT:
            return pa.int64()
        if kind is Kind.FLOAT:
            return pa.float64()
        if kind is Kind.TIMESTAMP:
            return pa.timestamp("us", tz="UTC")
        return pa.string()  # STRING and JSON (text)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} ({count:,})" for name, count in counter.most_common())


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
