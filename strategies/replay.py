"""Replays a recorded action sequence of the single-agent env: the backtest half of the parity contract."""

from __future__ import annotations

import numpy as np

from risk.actions import max_lots_for, single_target
from strategies.base import FxStrategy


class ReplayActions(FxStrategy):
    """``actions[i]`` (env action, shape (n, 2)) is decided on M1 bar ``i``; rows of NaN are skipped."""

    uses_context = True
    params = (("actions", None), ("max_exposure", 10.0))

    def __init__(self) -> None:
        super().__init__()
        self.actions = np.asarray(self.p.actions, dtype=np.float64)

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        i = self.bar()
        if i >= len(self.actions) or np.isnan(self.actions[i, 0]):
            return
        acct = self.account
        max_lots = max_lots_for(acct.equity, acct.bid, self.inst, self.p.max_exposure)
        a0, a1 = float(self.actions[i, 0]), float(self.actions[i, 1])
        self.trade_to(single_target(a0, a1, max_lots, self.inst, current=acct.lots), i)
