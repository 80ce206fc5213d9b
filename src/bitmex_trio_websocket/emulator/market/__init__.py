"""The emulator's synthetic BitMEX market, sans-IO (no trio, no clock, no global randomness).

Theory of operation: ``Market`` is the one object a server drives: ``step(now)`` makes one seeded
market event and returns the ``Delta`` messages it caused, ``snapshot`` gives a table's partial
image (a ``Snapshot``) at any moment, and ``exchange`` is the paper exchange
(``emulator.exchange``) trading against it: the market is a ``Venue`` (``_venue``) whose books are
the exchange's ``Liquidity``. ``place_order``/``cancel_order``/``cancel_all`` are thin wrappers of
the exchange for Python callers. Its parts, one module each:

* ``_book``: order books (levels, derived ``orderBookL2_25``/``orderBook10``), trades, quotes;
* ``_flow``: the random order flow that changes them, step by step;
* ``_instruments``: contract specs and arithmetic, the ``instrument`` rows, funding;
* ``_accounts``: the default account's initial state (accounts live in the exchange);
* ``_schemas``: the shapes of the messages (deltas, partials, table schemas, text formats);
* ``_clock`` (what the clock brings: quote messages, ``_indices`` prints, ``_bins`` closes,
  funding, ``_history``'s insurance rows) and ``_scenarios`` (named market regimes).

Dependencies point one way: ``_market`` -> ``_flow`` -> ``_book`` -> ``_instruments`` ->
``_schemas``; ``_market`` -> ``emulator.exchange`` (which uses ``_instruments`` and ``_schemas``).
"""

from ._accounts import DEFAULT_ACCOUNT
from ._instruments import DEFAULT_SYMBOLS, Contract, InstrumentSpec, spec_for
from ._market import Market
from ._scenarios import SCENARIOS, Scenario, scenario_named
from ._schemas import (
    KEYLESS_TABLES,
    PRIVATE_TABLES_SERVED,
    PUBLIC_TABLES_SERVED,
    Delta,
    Snapshot,
    UnknownTableError,
)

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_SYMBOLS",
    "KEYLESS_TABLES",
    "PRIVATE_TABLES_SERVED",
    "PUBLIC_TABLES_SERVED",
    "SCENARIOS",
    "Contract",
    "Delta",
    "InstrumentSpec",
    "Market",
    "Scenario",
    "Snapshot",
    "UnknownTableError",
    "scenario_named",
    "spec_for",
]
