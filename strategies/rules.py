"""Rule baselines: flat (never trades), buy-and-hold, and an M5 moving-average cross filtered by the H4 trend."""

from __future__ import annotations

import backtrader as bt

from strategies.base import FxStrategy


class Flat(FxStrategy):
    """Never trades: the baseline every agent must beat after costs, and what a walk-forward fold selects when no
    trained candidate scores above it on validation (``training.walk_forward``)."""

    def next(self) -> None:
        pass


class BuyHold(FxStrategy):
    """Buy ``lots`` on the first bar of the trading period and hold to the end."""

    params = (("lots", 1.0),)

    def __init__(self) -> None:
        super().__init__()
        self._done = False

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        if not self._done and self.trading():
            self.target_lots(self.p.lots)
            self._done = True


class SmaCross(FxStrategy):
    """Long when the M5 fast SMA is above the slow one and the H4 close is above its SMA; short mirrored;
    flat otherwise. Decides once per completed M5 bar, so all three timeframes are exercised."""

    params = (("lots", 1.0), ("fast", 12), ("slow", 48), ("h4_period", 30))

    @classmethod
    def min_bars(cls, params: dict) -> dict[str, int]:
        p = {**dict(cls.params._getitems()), **params}
        return {"m5": p["slow"], "h4": p["h4_period"]}

    def __init__(self) -> None:
        super().__init__()
        self.fast = bt.ind.SMA(self.m5.close, period=self.p.fast)
        self.slow = bt.ind.SMA(self.m5.close, period=self.p.slow)
        self.h4_sma = bt.ind.SMA(self.h4.close, period=self.p.h4_period)
        self._m5_seen = 0

    def next(self) -> None:
        n5 = len(self.m5)
        if n5 == self._m5_seen:  # no new completed M5 bar on this M1 bar
            return
        self._m5_seen = n5
        up = self.h4.close[0] > self.h4_sma[0]
        if self.fast[0] > self.slow[0]:
            want = 1.0 if up else 0.0
        elif self.fast[0] < self.slow[0]:
            want = -1.0 if not up else 0.0
        else:
            want = 0.0
        if want * self.p.lots != self.position_lots():
            self.target_lots(want * self.p.lots)
