"""A seeded random-action agent that trades through the pre-trade validator: the CMDP's stress test."""

from __future__ import annotations

import numpy as np

from risk.actions import max_lots_for, single_target
from strategies.base import FxStrategy


class RandomAgent(FxStrategy):
    """Every ``every`` M1 bars from its first decision bar draws a uniform action in [-1, 1]^2 (target position,
    exit confidence) and maps it with the same function as the single-agent env; sizes reach ``max_exposure`` x
    equity."""

    uses_context = True
    params = (("every", 30), ("max_exposure", 10.0), ("seed", 0))

    def __init__(self) -> None:
        super().__init__()
        self.rng = np.random.default_rng(self.p.seed)

    def next(self) -> None:
        i = self.bar()
        if not self.trading() or not self.ctx.decides_at(i) or (i - self.ctx.first_ready) % self.p.every:
            return  # every ``every`` bars from the first decision bar: the same bars whatever the history
        a = self.rng.uniform(-1.0, 1.0, size=2)
        acct = self.account
        target = single_target(float(a[0]), float(a[1]), max_lots_for(acct.equity, acct.bid, self.inst,
                                                                       self.p.max_exposure), self.inst,
                               current=acct.lots, band=0.0)  # a stress agent: every change is an order
        self.trade_to(target, i)
