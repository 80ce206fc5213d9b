"""The sans-IO table store, in layers.

* ``_validate``: what a message must be before anything changes (``RemoteProtocolError``);
* ``_views``: read-only views handed to users (``OrderBook``, ``BookSide``, level mappings);
* ``_book``: order-book tables, compact levels and their price index (the hot path);
* ``_orders``: closed orders leaving the ``order`` table (the eviction rule);
* ``_store``: ``Storage``, which gates, dispatches and keeps the other tables;
* ``_core``: which ``Storage`` is exported: the mypyc-compiled copy of ``_validate``, ``_book``
  and ``_store`` where it was built, else these modules (``BITMEX_TRIO_WEBSOCKET_PURE=1``).

The values ``apply`` returns (``ApplyResult``, ``Change``, ``Violation``) live in ``.._events``
and are re-exported here.
"""

from .._events import ApplyResult, Change, Violation
from ._book import BOOK_TABLES
from ._core import Storage
from ._views import BookSide, OrderBook

__all__ = ["BOOK_TABLES", "ApplyResult", "BookSide", "Change", "OrderBook", "Storage", "Violation"]
