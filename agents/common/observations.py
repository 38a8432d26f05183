"""The agents' observations: built by one object for the training envs and the Backtrader strategies.

``ObservationBuilder.after_bar(i, sim)`` must be called once after every M1 bar the broker core processed
(the env after ``sim.on_bar``, the strategy at the start of ``next``); the ``shared``/``h4``/``m1`` methods
then read the account (``brokers.sim.ForexSim`` and its ``risk.drawdown.DrawdownGuard``) and the precomputed
``features.context.MarketContext`` at bar ``i``. Everything is within +-``OBS_CLIP``.

Slots after the 16 features are addressed by name (``S``, ``H4``, ``M1``: name -> index), never by number.

* shared state (24, the single-agent observation and the joint critic's state): the 16 M1 features, then
  ``ACCOUNT_FEATURES``.
* H4 director (22): the 16 features of the newest complete H4 bar, then equity change, total and daily
  drawdown (fractions of their limits), 7-day portfolio volatility (EWMA of M1 equity returns, as daily %),
  macro turbulence (``vix + max(0, -yield_curve)`` features: fear plus curve inversion), H4 ADX.
* M1 executor (23): the 16 M1 features, then position (fraction of max lots), cash balance change, spread
  cost (spread / H4 ATR), volume ratio (range-based substitute: our data have no volume), 15-minute
  momentum (in H4 ATRs), and the director's limit and trend bias (slots ``M1_LIMIT_SLOT``, ``M1_BIAS_SLOT``).

With a market block in the context (``features.market``, opt-in: ``EnvConfig.market_features``) all three end with
its ``N_MARKET`` values at the bar (``obs_dims``): the slots above keep their numbers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from brokers.instruments import Instrument
from features.context import MarketContext
from features.engine import FEATURE_NAMES, N_FEATURES
from features.market import MARKET_NAMES, N_MARKET
from risk.actions import max_lots_for
from risk.drawdown import DrawdownRules

OBS_CLIP = 10.0
ACCOUNT_FEATURES = ("position", "unrealised_pct", "equity_change", "daily_dd_ratio", "total_dd_ratio",
                    "bars_in_position", "spread_atr", "margin_ratio")
H4_EXTRA = ("equity_change", "total_dd_ratio", "daily_dd_ratio", "portfolio_vol", "macro_turbulence", "h4_adx")
M1_EXTRA = ("position", "balance_change", "spread_atr", "volume_ratio", "momentum", "h4_limit", "h4_bias")


def _slots(names: tuple[str, ...]) -> dict[str, int]:
    """Slot of each named value after the 16 features: observations are written and read by name."""
    return {name: N_FEATURES + k for k, name in enumerate(names)}


S, H4, M1 = _slots(ACCOUNT_FEATURES), _slots(H4_EXTRA), _slots(M1_EXTRA)
STATE_DIM = N_FEATURES + len(ACCOUNT_FEATURES)
H4_OBS_DIM = N_FEATURES + len(H4_EXTRA)
M1_OBS_DIM = N_FEATURES + len(M1_EXTRA)
M1_LIMIT_SLOT, M1_BIAS_SLOT = M1["h4_limit"], M1["h4_bias"]
MOMENTUM_BARS = 15


class ObsDims(NamedTuple):
    state: int
    h4: int
    m1: int


def obs_dims(market: bool) -> ObsDims:
    """Observation sizes without or with the market block."""
    k = N_MARKET if market else 0
    return ObsDims(STATE_DIM + k, H4_OBS_DIM + k, M1_OBS_DIM + k)


def obs_names(market: bool) -> dict[str, tuple[str, ...]]:
    """The name of every slot of the H4 and M1 observations, for reports: the H4 bar's features prefixed ``h4_``, the
    director's copy of the H4 ADX (its slot ``h4_adx``) named ``h4_adx_slot``."""
    block = MARKET_NAMES if market else ()
    return {"h4": (*(f"h4_{n}" for n in FEATURE_NAMES), *(f"{n}_slot" if n == "h4_adx" else n for n in H4_EXTRA),
                   *block),
            "m1": (*FEATURE_NAMES, *M1_EXTRA, *block)}

_ADX, _VIX, _YC = (FEATURE_NAMES.index(n) for n in ("adx", "vix", "yield_curve"))


def _clip(x: float) -> float:
    return OBS_CLIP if x > OBS_CLIP else (-OBS_CLIP if x < -OBS_CLIP else x)


class ObservationBuilder:
    """:param ctx: market context (features per M1 bar)
    :param inst: the traded instrument
    :param cash: initial balance (scales account features)
    :param rules: drawdown rules (scale the drawdown features)
    :param max_exposure: notional of a full-size action as a multiple of equity"""

    def __init__(self, ctx: MarketContext, inst: Instrument, cash: float, rules: DrawdownRules,
                 max_exposure: float) -> None:
        self.ctx, self.inst, self.cash, self.rules, self.max_exposure = ctx, inst, cash, rules, max_exposure
        self._c = ctx.close.tolist()
        self._atr = ctx.h4_atr.tolist()
        self._vol = ctx.volume_ratio.tolist()
        self._alpha7 = 1.0 - 0.5 ** (1.0 / (7 * 1440))
        self._market = getattr(ctx, "market", None)
        self.dims = obs_dims(self._market is not None)
        # features arrive clipped; only account slots need it here
        for name in ("m1_features", "h4_features", "market"):
            a = getattr(ctx, name, None)
            if isinstance(a, np.ndarray) and len(a) and float(np.abs(a).max()) > OBS_CLIP:
                raise ValueError(f"{name} exceed +-{OBS_CLIP}: the feature spec's clip must not be larger")
        self.reset()

    def reset(self) -> None:
        self.var7 = 0.0
        self.entry_bar = 0
        self.max_lots = 0.0
        self._prev_equity: float | None = None
        self._prev_lots = 0.0

    def after_bar(self, i: int, sim) -> None:
        """Update the running statistics with bar ``i``'s outcome."""
        eq = sim.equity
        if self._prev_equity is not None:
            ret = (eq - self._prev_equity) / self.cash
            self.var7 += self._alpha7 * (ret * ret - self.var7)
        self._prev_equity = eq
        if sim.lots and not self._prev_lots:
            self.entry_bar = i
        self._prev_lots = sim.lots
        self.max_lots = max_lots_for(eq, sim.bid, self.inst, self.max_exposure)

    def held_bars(self, i: int, sim) -> int:
        """M1 bars the open position has been held (0 when flat): the timing mode's minimum holding time."""
        return i - self.entry_bar if sim.lots else 0

    def shared(self, i: int, sim, guard) -> np.ndarray:
        out = np.empty(self.dims.state, np.float32)
        out[:N_FEATURES] = self.ctx.m1_features[i]
        eq, r = sim.equity, self.rules
        out[S["position"]] = _clip(sim.lots / self.max_lots if self.max_lots > 0 else 0.0)
        out[S["unrealised_pct"]] = _clip(100.0 * (eq - sim.balance) / self.cash)
        out[S["equity_change"]] = _clip(10.0 * (eq / self.cash - 1.0))
        out[S["daily_dd_ratio"]] = _clip(guard.daily_dd / r.daily_limit)
        out[S["total_dd_ratio"]] = _clip(guard.total_dd / r.total_limit)
        out[S["bars_in_position"]] = _clip(min(10.0, (i - self.entry_bar) / 1440.0) if sim.lots else 0.0)
        atr = self._atr[i]
        out[S["spread_atr"]] = _clip(sim.spread / atr if atr > 0 else 0.0)
        out[S["margin_ratio"]] = _clip(sim.margin_used / eq if eq > 0 else OBS_CLIP)
        if self._market is not None:
            out[STATE_DIM:] = self._market[i]
        return out

    def h4(self, i: int, sim, guard) -> np.ndarray:
        f = self.ctx.h4_features[i]
        out = np.empty(self.dims.h4, np.float32)
        out[:N_FEATURES] = f
        out[H4["equity_change"]] = _clip(10.0 * (sim.equity / self.cash - 1.0))
        out[H4["total_dd_ratio"]] = _clip(guard.total_dd / self.rules.total_limit)
        out[H4["daily_dd_ratio"]] = _clip(guard.daily_dd / self.rules.daily_limit)
        out[H4["portfolio_vol"]] = _clip(100.0 * math.sqrt(self.var7 * 1440.0))
        out[H4["macro_turbulence"]] = _clip(f[_VIX] + max(0.0, -float(f[_YC])))
        out[H4["h4_adx"]] = _clip(f[_ADX])
        if self._market is not None:
            out[H4_OBS_DIM:] = self._market[i]
        return out

    def m1(self, i: int, sim, limit: float, bias: float) -> np.ndarray:
        out = np.empty(self.dims.m1, np.float32)
        out[:N_FEATURES] = self.ctx.m1_features[i]
        out[M1["position"]] = _clip(sim.lots / self.max_lots if self.max_lots > 0 else 0.0)
        out[M1["balance_change"]] = _clip(10.0 * (sim.balance / self.cash - 1.0))
        atr = self._atr[i]
        out[M1["spread_atr"]] = _clip(sim.spread / atr if atr > 0 else 0.0)
        out[M1["volume_ratio"]] = _clip(self._vol[i])
        c = self._c
        out[M1["momentum"]] = _clip((c[i] - c[max(0, i - MOMENTUM_BARS)]) / atr if atr > 0 else 0.0)
        out[M1["h4_limit"]] = _clip(limit)
        out[M1["h4_bias"]] = _clip(bias)
        if self._market is not None:
            out[M1_OBS_DIM:] = self._market[i]
        return out
