"""Exports of replayed history: Parquet files, order-book snapshots, plots, progress.

Theory of operation: the pieces are small and independent, so the command line (``replay``),
the benchmarks and a user's own scripts combine them as they need:

* ``_columns`` (sans-IO): each field's column kind, declared by BitMEX's partial or inferred, and
  values made to fit it;
* ``_parquet``: ``ParquetRowWriter``, rows to a typed Parquet file in bounded batches (pyarrow,
  extra ``parquet``);
* ``_scan`` (sans-IO but for reading files): ``DataTimeScan``, a source's table messages with
  their receive times, for a caller that drives a ``Storage`` itself;
* ``_snapshots`` (sans-IO): ``BookSampler``, top-N book snapshots at steps of data time;
* ``_plot``: ``MarketSeries`` (sans-IO) and ``render_plot`` (matplotlib, extra ``plot``);
* ``_progress``: the one-line progress display;
* ``_errors``: ``ExportError`` and ``MissingExtraError`` (one line naming the extra to install).

Optional libraries are imported on use, so importing this package needs neither extra.
"""

from ._columns import Kind, infer_kinds, timestamp_text
from ._errors import ExportError, MissingExtraError, require
from ._parquet import ParquetRowWriter
from ._plot import MarketSeries, render_plot
from ._progress import Progress, progress_line
from ._scan import DataTimeScan, table_of
from ._snapshots import BookSampler, snapshot_types

__all__ = [
    "BookSampler",
    "DataTimeScan",
    "ExportError",
    "Kind",
    "MarketSeries",
    "MissingExtraError",
    "ParquetRowWriter",
    "Progress",
    "infer_kinds",
    "progress_line",
    "render_plot",
    "require",
    "snapshot_types",
    "table_of",
    "timestamp_text",
]
