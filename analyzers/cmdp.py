"""The drawdown-CMDP analyzer: enforces ``DrawdownRules`` on the run and reports every event.

On ``start`` it installs its ``DrawdownGuard`` on the broker's simulation core, so equity is measured at
every M1 bar's worst price by the same code the training envs run; on a breach the core closes the
position at the floor (or at a gapped open), flattens what is left and halts new entries (for the day on
a daily breach, for good on a total one). The analyzer records soft-zone entries and breaches with
their time, and the pre-trade validator's blocks and shrinks.
"""

from __future__ import annotations

import backtrader as bt

from risk.drawdown import DrawdownGuard
from risk.validator import PreTradeValidator


class CmdpAnalyzer(bt.Analyzer):
    params = (("guard", None), ("validator", None))

    def __init__(self) -> None:
        if not isinstance(self.p.guard, DrawdownGuard):
            raise TypeError("CmdpAnalyzer needs guard=DrawdownGuard(...)")
        self.guard: DrawdownGuard = self.p.guard
        self.validator: PreTradeValidator | None = self.p.validator
        self.soft_zone_times: list[str] = []
        self._was_soft = False
        self.daily_dd: list[float] = []  # per M1 bar, at the bar's worst price, for the drawdown plot
        self.total_dd: list[float] = []

    def start(self) -> None:
        sim = self.strategy.broker.sim
        if sim.guard is not None and sim.guard is not self.guard:
            raise RuntimeError("the broker already has another drawdown guard")
        sim.guard = self.guard

    def next(self) -> None:
        g = self.guard
        self.daily_dd.append(g.daily_dd)
        self.total_dd.append(g.total_dd)
        if g.in_soft_zone and not self._was_soft:
            self.soft_zone_times.append(self.data.datetime.datetime(0).isoformat())
        self._was_soft = g.in_soft_zone

    prenext = next

    def get_analysis(self) -> dict:
        v = self.validator
        out = self.guard.summary()
        out["blocked_actions"] = v.blocked if v else 0
        out["shrunk_actions"] = v.shrunk if v else 0
        out["soft_zone_times"] = self.soft_zone_times[:200]
        return out
