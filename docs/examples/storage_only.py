"""The tutorial's sans-IO storage: feed decoded messages, read tables and books back."""

from bitmex_trio_websocket import Storage

storage = Storage()
result = storage.apply(
    {
        "table": "orderBookL2",
        "action": "partial",
        "keys": ["symbol", "id", "side"],
        "filter": {"symbol": "XBTUSD"},
        "data": [
            {"symbol": "XBTUSD", "id": 17, "side": "Sell", "size": 10, "price": 101.0},
            {"symbol": "XBTUSD", "id": 3, "side": "Buy", "size": 5, "price": 100.5},
        ],
    }
)
book = storage.book("XBTUSD")
print(book.best_bid, book.best_ask)  # (100.5, 5) (101.0, 10)

result = storage.apply(
    {
        "table": "orderBookL2",
        "action": "update",
        "data": [{"symbol": "XBTUSD", "id": 3, "side": "Buy", "size": 7, "price": 100.5}],
    }
)
print(book.best_bid)  # (100.5, 7): the view reads the store's current state
print([change.action for change in result.changes], result.violations)  # ['update'] ()

# An update for a level nobody sent is a violation, not a silent change.
result = storage.apply(
    {
        "table": "orderBookL2",
        "action": "update",
        "data": [{"symbol": "XBTUSD", "id": 99, "side": "Buy", "size": 1, "price": 99.0}],
    }
)
print([violation.kind for violation in result.violations])
