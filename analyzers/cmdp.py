"""The drawdown-CMDP analyzer: reports every event of the ``DrawdownGuard`` that enforces the rules.

The guard is installed with the broker (``brokers.bt_broker.ForexBroker(sim, guard=...)``, or
``brokers.use_forex_broker``; the MT5 live broker has its own), so equity is measured at every M1 bar's worst
price by the same code the training envs run; on a breach the position is closed at the floor (or at a gapped
open), what is left is flattened and new entries are refused (for the day on a daily breach, for good on a
total one). The analyzer records the drawdown per bar, soft-zone entries and breaches with their time, and the
pre-trade validator's blocks and shrinks.
"""

from __future__ import annotations

import backtrader as bt

from risk.drawdown import DrawdownGuard
from risk.validator import PreTradeValidator


class CmdpAnalyzer(bt.Analyzer):
    """:param validator: the pre-trade validator whose blocks and shrinks are reported (optional)"""

    params = (("validator", None),)

    def __init__(self) -> None:
        account = getattr(self.strategy.broker, "account", None)
        guard = getattr(account, "guard", None)
        if not isinstance(guard, DrawdownGuard):
            raise TypeError("CmdpAnalyzer reports a broker's drawdown guard: use a broker with one "
                            "(brokers.use_forex_broker(cerebro, symbol) or ForexBroker(sim, guard=DrawdownGuard(...)))")
        self.guard: DrawdownGuard = guard
        self.validator: PreTradeValidator | None = self.p.validator
        self.soft_zone_times: list[str] = []
        self._was_soft = False
        self.daily_dd: list[float] = []  # per M1 bar, at the bar's worst price, for the drawdown plot
        self.total_dd: list[float] = []

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
