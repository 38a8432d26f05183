"""Common base for our Backtrader strategies: names the feeds, converts lots to Backtrader sizes, and routes
agent targets through the pre-trade validator."""

from __future__ import annotations

import backtrader as bt

from brokers.instruments import Instrument
from features.context import MarketContext
from risk.validator import PreTradeValidator, Verdict, validated_target


class FxStrategy(bt.Strategy):
    """data0 is the M1 feed, data1 M5, data2 H4 (as ``strategies.backtest`` adds them).

    Sizes in Backtrader are units of the base currency; strategies think in lots and go through
    ``target_lots`` so the lot step is respected by the strategy, never by the broker. Strategies with
    ``uses_context = True`` get the precomputed ``MarketContext`` (features, H4 ATR) as ``self.ctx``, indexed
    by M1 bar position ``len(self.m1) - 1``.
    """

    uses_context = False
    params = (("instrument", None), ("context", None), ("validator", None))

    def __init__(self) -> None:
        self.m1, self.m5, self.h4 = self.datas[0], self.datas[1], self.datas[2]
        if self.p.instrument is None:
            raise ValueError(f"{type(self).__name__} needs instrument=")
        self.inst: Instrument = self.p.instrument
        self.ctx: MarketContext | None = self.p.context
        self.validator: PreTradeValidator | None = self.p.validator
        if self.uses_context and self.ctx is None:
            raise ValueError(f"{type(self).__name__} needs context= (strategies.backtest builds it)")

    @classmethod
    def min_bars(cls, params: dict) -> dict[str, int]:
        """Complete bars each timeframe ("m5", "h4") needs before the strategy can run at all."""
        return {}

    def position_lots(self) -> float:
        return self.getposition(self.m1).size / self.inst.contract_size

    def target_lots(self, lots: float, **kwargs) -> bt.Order | None:
        """Order the difference to ``lots`` (rounded towards zero to the lot step) on the M1 feed."""
        units = round(self.inst.round_lots(lots) * self.inst.contract_size, 6)
        return self.order_target_size(data=self.m1, target=units, **kwargs)

    def trade_to(self, target: float, i: int) -> Verdict:
        """Validate an agent's target (lots) at M1 bar ``i`` against the drawdown floor, then order it."""
        sim = self.broker.sim
        verdict = validated_target(self.validator, sim, target, float(self.ctx.h4_atr[i]))
        if verdict.lots != sim.lots:
            self.target_lots(verdict.lots)
        return verdict
