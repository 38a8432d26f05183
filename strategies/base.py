"""Common base for our Backtrader strategies: names the feeds and converts lots to Backtrader sizes."""

from __future__ import annotations

import backtrader as bt

from brokers.instruments import Instrument


class FxStrategy(bt.Strategy):
    """data0 is the M1 feed, data1 M5, data2 H4 (as ``strategies.backtest`` adds them).

    Sizes in Backtrader are units of the base currency; strategies think in lots and go through
    ``target_lots`` so the lot step is respected by the strategy, never by the broker.
    """

    params = (("instrument", None),)

    def __init__(self) -> None:
        self.m1, self.m5, self.h4 = self.datas[0], self.datas[1], self.datas[2]
        if self.p.instrument is None:
            raise ValueError(f"{type(self).__name__} needs instrument=")
        self.inst: Instrument = self.p.instrument

    def position_lots(self) -> float:
        return self.getposition(self.m1).size / self.inst.contract_size

    def target_lots(self, lots: float, **kwargs) -> bt.Order | None:
        """Order the difference to ``lots`` (rounded towards zero to the lot step) on the M1 feed."""
        units = round(self.inst.round_lots(lots) * self.inst.contract_size, 6)
        return self.order_target_size(data=self.m1, target=units, **kwargs)
