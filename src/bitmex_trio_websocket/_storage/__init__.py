"""The sans-IO table store: ``Storage`` and its order-book views (see ``_store`` and ``_book``)."""

from ._store import BOOK_TABLES, ApplyResult, BookSide, Change, OrderBook, Storage, Violation

__all__ = ["BOOK_TABLES", "ApplyResult", "BookSide", "Change", "OrderBook", "Storage", "Violation"]
