"""The drawdown-CMDP analyzer: reports every event of the ``DrawdownGuard`` that enforces the rules.

The guard is installed with the broker (``brokers.bt_broker.ForexBroker(sim, guard=...)``, or
``brokers.use_forex_broker``; the MT5 live broker has its own), so equity is measured at every M1 bar's worst
price by the same code the training envs run; on a breach the position is closed at the floor (or at a gapped
open), what is left is flattened and new entries are refused (for the day on a daily breach, for good on a
total one). The analyzer records the drawdown per bar, soft-zone entries and breaches with their time, and the
pre-trade validator's blocks and shrinks.
"""

from __future__ import annotations

import datetime as dt

import backtrader as bt

from risk.drawdown import DrawdownGuard
from risk.validator import PreTradeValidator

_EPOCH_NUM = bt.date2num(dt.datetime(1970, 1, 1))


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
        # per hour of the trading period: [hour (minutes since the epoch), max daily dd, max total dd] at the bars'
        # worst prices, for the drawdown plot (hourly: a live process must not grow with the bars it has seen)
        self.hours: list[list[float]] = []
        self._last_len = 0

    def next(self) -> None:
        d = self.strategy.datas[0]
        n = len(d)
        if n == self._last_len:
            return
        self._last_len = n
        if n - 1 < getattr(self.strategy, "first_bar", 0):  # history bars: nothing is traded, nothing to report
            return
        g = self.guard
        hour = round((d.datetime[0] - _EPOCH_NUM) * 1440.0) // 60 * 60
        if self.hours and self.hours[-1][0] == hour:
            row = self.hours[-1]
            row[1], row[2] = max(row[1], g.daily_dd), max(row[2], g.total_dd)
        else:
            self.hours.append([hour, g.daily_dd, g.total_dd])
        if g.in_soft_zone and not self._was_soft and len(self.soft_zone_times) < 200:
            self.soft_zone_times.append(d.datetime.datetime(0).isoformat())
        self._was_soft = g.in_soft_zone

    prenext = next

    def get_analysis(self) -> dict:
        v = self.validator
        out = self.guard.summary()
        out["blocked_actions"] = v.blocked if v else 0
        out["shrunk_actions"] = v.shrunk if v else 0
        out["soft_zone_times"] = self.soft_zone_times
        return out
