"""Contracts of a replayed market: what an ``instrument`` row (or, lacking one, the book) says.

Theory of operation: the paper exchange does its arithmetic through ``Contract`` (tick, lot,
multiplier, inverse/quanto/linear). A replayed market learns its contracts from the data: an
``instrument`` row recorded for the symbol gives them exactly (``tickSize``, ``lotSize``,
``multiplier``, ``isInverse``/``isQuanto``, currencies, ``underlyingToPositionMultiplier``).
A recording without the ``instrument`` table falls back to BitMEX's last listing of the symbol
for the symbols ``_instruments`` lists (XBTUSD, ETHUSD...), else to a spec inferred from the
book: the tick is the finest price step among the recorded prices, the lot 1, the kind told by
the name (``...USDT``: linear, else quanto). An instrument whose tick does not divide 1 (a tick
of 5) cannot be expressed as a ``Contract`` and is not tradable (``None``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._instruments import _KNOWN_SPECS, Contract, InstrumentSpec

__all__ = ["contract_from_book", "contract_from_instrument", "is_index"]


def is_index(symbol: str, row: Mapping[str, Any] | None = None) -> bool:
    """Whether ``symbol`` is an index (``.BXBT``): instrument rows, no book, not tradable."""
    return symbol.startswith(".") or (row is not None and row.get("typ") == "MRCXXX")


def _number(row: Mapping[str, Any], name: str) -> float | None:
    value = row.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _spec(
    symbol: str,
    tick: float,
    lot: int,
    price: float | None,
    kind: str,
    multiplier: int,
    underlying: str,
    quote: str,
    settle: str,
    to_position: int,
) -> Contract | None:
    # depth 1 keeps InstrumentSpec's sanity check (a start price many ticks above zero) loose:
    # the replayed market draws no book from the spec.
    start = max(price or 0.0, tick * 100)
    try:
        spec = InstrumentSpec(
            symbol, tick, max(1, lot), start, kind, multiplier, underlying, quote, settle,
            max(1, to_position), depth=1, spacing=1.0,
        )  # fmt: skip
    except ValueError:
        return None
    return Contract(spec)


def contract_from_instrument(row: Mapping[str, Any]) -> Contract | None:
    """The contract an ``instrument`` row describes (``None``: an index, or not expressible)."""
    symbol = row.get("symbol")
    tick = _number(row, "tickSize")
    if not isinstance(symbol, str) or is_index(symbol, row) or tick is None or tick <= 0:
        return None
    if row.get("isInverse"):
        kind = "inverse"
    elif row.get("isQuanto"):
        kind = "quanto"
    else:
        kind = "linear"
    lot = _number(row, "lotSize") or 1.0
    multiplier = _number(row, "multiplier") or 1.0
    to_position = _number(row, "underlyingToPositionMultiplier") or 1.0
    price = _number(row, "lastPrice") or _number(row, "markPrice")
    settle = row.get("settlCurrency")
    return _spec(
        symbol, tick, int(lot), price, kind, int(multiplier), str(row.get("underlying") or ""),
        str(row.get("quoteCurrency") or "USD"), str(settle or "XBt"), int(to_position),
    )  # fmt: skip


def _decimals(price: float) -> int:
    text = repr(float(price))
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        return max(0, len(mantissa.partition(".")[2].rstrip("0")) - int(exponent))
    return len(text.partition(".")[2].rstrip("0"))


def contract_from_book(symbol: str, prices: Iterable[float]) -> Contract | None:
    """A contract for a symbol recorded without its ``instrument`` row (module docstring)."""
    decimals = 0
    first: float | None = None
    for count, price in enumerate(prices):
        if count >= 500:
            break
        first = price if first is None else first
        decimals = max(decimals, _decimals(price))
    tick = 10.0**-decimals if decimals else 1.0
    linear = symbol.endswith("USDT")
    root = symbol[:-4] if linear else symbol[:-3] if symbol.endswith("USD") else symbol
    spec = _KNOWN_SPECS.get(symbol)
    if spec is not None:
        steps = tick / spec.tick_size
        if steps >= 1 - 1e-9 and abs(steps - round(steps)) < 1e-6:  # its prices fit the tick
            return Contract(spec)
    return _spec(
        symbol, tick, 1000 if linear else 1, first, "linear" if linear else "quanto",
        1 if linear else 100, root or symbol, "USDT" if linear else "USD",
        "USDt" if linear else "XBt", 1_000_000 if linear else 1,
    )  # fmt: skip
