"""Named, seeded market regimes: quiet, trending, flash crash, funding flip, thin book, deploy.

Theory of operation: a ``Scenario`` is a few numbers that bend the synthetic market (``Market(
scenario=...)``, ``open_emulator(scenario=...)``, ``--scenario NAME``); with the same seed and
start time a scenario's output is byte-identical, like the plain market's. What each does:

* ``quiet``: the fair price moves a quarter as much, trades are rarer; a calm weekend.
* ``trending``: the fair price drifts up steadily (the drift regime never changes).
* ``flash_crash``: ``crash_after`` seconds in, the fair price of every contract falls by
  ``crash_depth`` over ``crash_seconds`` while sell liquidations cascade (``liquidation``
  inserts of growing size just under the bid, then aggressive sells through the book), then the
  market recovers part of the fall.
* ``funding_flip``: the market's clock is set ``funding_in`` seconds before a funding time
  (04:00, 12:00 or 20:00 UTC); the current rate is positive and the predicted rate negative, so
  the funding paid then flips the sign of ``fundingRate`` for the next interval.
* ``thin_book``: a tenth of the levels, three times as far apart, a third of the size: wide
  spreads and big moves on small trades.
* ``exchange_deploy``: the server (not the market) closes every connection with 1000 "Bye"
  ``deploy_after`` seconds in, refuses upgrades with 503 for ``deploy_down`` seconds, so every
  client reconnects at once when it is back; it repeats every ``deploy_every`` seconds.

Scenarios read no clock and draw no chance of their own: the market applies them with its own
time and ``Random``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from ._instruments import InstrumentSpec

__all__ = ["SCENARIOS", "Scenario", "scenario_named"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A market regime; see the module docstring for each named one."""

    name: str
    volatility: float = 1.0  # scale of the fair price's moves
    trade_share: float = 1.0  # scale of the share of trade events
    trend: float | None = None  # a fixed drift of the fair price (-1..1), None: random regimes
    depth: float = 1.0  # scale of the levels per side
    spacing: float = 1.0  # scale of the gaps between levels
    size: float = 1.0  # scale of level sizes
    crash_after: float | None = None  # seconds after the start
    crash_depth: float = 0.0  # fraction of the price lost
    crash_seconds: float = 20.0
    funding_in: float | None = None  # the market opens this long before a funding time
    funding_rates: tuple[float, float] = (0.0001, 0.0001)  # (current, predicted)
    deploy_after: float | None = None  # server: seconds until the first 1000 "Bye"
    deploy_down: float = 5.0  # server: seconds of 503 refusals after it
    deploy_every: float | None = None  # server: repeat interval (None: once)

    def adjust(self, spec: InstrumentSpec) -> InstrumentSpec:
        """``spec`` with this scenario's book shape."""
        if (self.depth, self.spacing, self.size) == (1.0, 1.0, 1.0):
            return spec
        return replace(
            spec,
            depth=max(60, round(spec.depth * self.depth)),
            spacing=spec.spacing * self.spacing,
            typical_lots=max(1, round(spec.typical_lots * self.size)),
        )


SCENARIOS: Final[dict[str, Scenario]] = {
    scenario.name: scenario
    for scenario in (
        Scenario("quiet", volatility=0.25, trade_share=0.3),
        Scenario("trending", trend=0.8, volatility=3.0),
        Scenario("flash_crash", crash_after=30.0, crash_depth=0.03, crash_seconds=20.0),
        Scenario("funding_flip", funding_in=300.0, funding_rates=(0.0003, -0.0005)),
        Scenario("thin_book", depth=0.1, spacing=3.0, size=0.3),
        Scenario("exchange_deploy", deploy_after=30.0, deploy_down=5.0, deploy_every=120.0),
    )
}


def scenario_named(name: str) -> Scenario:
    """The named scenario; ``ValueError`` naming the known ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        known = ", ".join(SCENARIOS)
        raise ValueError(f"unknown scenario {name!r} (known: {known})") from None
