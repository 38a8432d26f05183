"""What the training envs share besides their config: the account (broker core, drawdown guard, validator and
observations, wired as the backtest wires them), the joint reward and the episode windows.

Observations (``agents.common.observations``), the broker (``brokers.sim``), drawdown rules (``risk.drawdown``),
validator and action mapping (``risk``) and features (``features.context``) are imported, never copied; the
Backtrader strategies import the same modules."""

from __future__ import annotations

import math

import numpy as np

from agents.common.observations import ObservationBuilder
from brokers.instruments import get_instrument
from brokers.sim import ForexSim
from features.context import MarketContext
from risk.drawdown import DrawdownGuard
from risk.validator import PreTradeValidator
from training.env_config import EnvConfig
from training.rewards import DifferentialSharpe


class Account:
    """The broker core, its drawdown guard and the validator, wired as the backtest wires them."""

    def __init__(self, ctx: MarketContext, cfg: EnvConfig) -> None:
        has_block = getattr(ctx, "market", None) is not None
        if has_block != cfg.market_features:
            raise ValueError(f"the env config says market_features={cfg.market_features} but the context was built "
                             f"{'with' if has_block else 'without'} the market block: build it with "
                             "training.data.period_contexts(..., market=...) / build_context(..., market=instrument)")
        self.ctx = ctx
        self.cfg = cfg
        self.inst = get_instrument(cfg.symbol)
        self.sim = ForexSim(self.inst, cash=cfg.cash, leverage=cfg.leverage)
        self.guard = DrawdownGuard(cfg.rules, cfg.cash)
        self.sim.guard = self.guard
        self.validator = PreTradeValidator(self.inst, on_excess=cfg.on_excess)
        # scalar Python lists: indexing them is several times faster than numpy scalars in the step path
        self.minutes = ctx.minutes.tolist()
        self.o, self.h, self.l, self.c = (a.tolist() for a in (ctx.open, ctx.high, ctx.low, ctx.close))
        self.atr = ctx.h4_atr.tolist()
        self.obs = ObservationBuilder(ctx, self.inst, cfg.cash, cfg.rules, cfg.max_exposure)
        # one minute's typical P&L of a full-size position (max_exposure x initial cash of notional), USD per
        # unit of relative price move: the reward's scale, fixed by the market, not by the agent's own P&L
        self._full_size = cfg.max_exposure * cfg.cash
        self._vol_scale = 1.0 / math.sqrt(cfg.vol_minutes)
        self.dsr = DifferentialSharpe(cfg.dsr_eta) if cfg.reward == "dsr" else None
        self.reset()

    def reset(self) -> None:
        self.sim.reset()
        self.validator.blocked = self.validator.shrunk = 0
        self.prev_equity = self.cfg.cash
        self.obs.reset()
        self.reward_parts = {"pnl": 0.0, "soft_penalty": 0.0, "breach_penalty": 0.0, "turnover_penalty": 0.0}
        self.traded_lots = 0.0
        if self.dsr is not None:
            self.dsr.reset()

    def bar(self, i: int) -> list:
        """Advance the account over bar ``i`` (pending orders fill at its open) and update the observations."""
        fills = self.sim.on_bar(self.minutes[i], self.o[i], self.h[i], self.l[i], self.c[i])
        self.obs.after_bar(i, self.sim)
        self.traded_lots = sum(abs(f.lots) for f in fills) if fills else 0.0
        return fills

    def reward(self, i: int) -> tuple[float, bool]:
        """Joint reward of the last bar, ``i`` (design 2.D: P&L over portfolio volatility, soft-zone and breach
        penalties) and whether a drawdown limit was breached.

        The volatility is the market's, not the agent's own P&L's: one minute's typical P&L of a full-size
        position (H4 ATR / sqrt(240) relative move x full-size notional), as known at bar ``i``'s close. An
        earlier version divided by an EWMA of the agent's own P&L volatility with a floor while flat; that
        made the first minutes of every trade (costs included) hit the clip and taught every learner to
        stay flat."""
        sim, g, cfg = self.sim, self.guard, self.cfg
        pnl = sim.equity - self.prev_equity
        self.prev_equity = sim.equity
        vol = self._full_size * self._vol_scale * self.atr[i] / self.c[i]
        if not vol > 0.0:
            raise ValueError(f"reward undefined at bar {i} ({self.ctx.index[i]}): H4 ATR is {self.atr[i]} "
                             "(constant prices?)")
        base = pnl / vol
        if self.dsr is not None:  # EnvConfig.reward = "dsr": the differential Sharpe ratio of the normalised P&L
            base = self.dsr.step(base)
        r = base = max(-cfg.reward_clip, min(cfg.reward_clip, base))
        parts = self.reward_parts
        parts["pnl"] += base
        if cfg.turnover_penalty and self.traded_lots and self.obs.max_lots > 0:
            pen = cfg.turnover_penalty * self.traded_lots / self.obs.max_lots
            r -= pen
            parts["turnover_penalty"] -= pen
        if g.daily_dd > cfg.rules.soft_zone:
            pen = cfg.soft_penalty * (g.daily_dd - cfg.rules.soft_zone)
            r -= pen
            parts["soft_penalty"] -= pen
        b = g.new_breach
        if b is not None:
            pen = cfg.total_breach_penalty if b.kind == "total" else cfg.daily_breach_penalty
            r += pen
            parts["breach_penalty"] += pen
        return r, b is not None


def episode_bounds(ctx: MarketContext, cfg: EnvConfig, rng: np.random.Generator | None,
                   next_start: int) -> tuple[int, int]:
    """(first bar, last bar) of an episode: it starts after the feature warm-up, never past the data."""
    lo, n = ctx.first_ready, len(ctx)
    if n - lo < 2:
        raise ValueError(f"not enough bars after the warm-up: {n} bars, first ready at {lo}")
    span = min(cfg.episode_bars, n - 1 - lo)
    if cfg.random_start and rng is not None:
        start = int(rng.integers(lo, n - span))
    else:
        start = next_start if lo <= next_start < n - 1 else lo
    return start, min(start + span, n - 1)
