"""benchmarks.orders still runs (a handful of orders, one run; nothing timed is asserted)."""

from __future__ import annotations

from benchmarks import orders


def test_orders_benchmark_runs() -> None:
    results = orders.measure(orders=12, connections=3, runs=1)
    assert [r.path for r in results] == [
        "orders: round trip, POST -> execution row",
        "orders: round trip, POST -> HTTP response",
        "orders: sequential, 1 keep-alive connection",
        "orders: 3 concurrent connections",
    ]
    assert all(r.median > 0 for r in results)
    trip = results[0].extra
    assert 0 < trip["p50_ms"] <= trip["p99_ms"]
