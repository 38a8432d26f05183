"""What the training envs share: their configuration, the episode windows, the account and the joint reward.

Observations (``agents.observations``), the broker (``brokers.sim``), drawdown rules (``risk.drawdown``),
validator and action mapping (``risk``) and features (``features.context``) are imported, never copied;
the Backtrader strategies import the same modules."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from agents.cadence import check_exec_minutes
from agents.observations import ObservationBuilder
from brokers.instruments import get_instrument
from brokers.sim import ForexSim
from features.context import H4_SPEC, HISTORY_DAYS, MarketContext
from features.engine import DEFAULT_SPEC
from risk.drawdown import DrawdownGuard, DrawdownRules
from risk.validator import PreTradeValidator


@dataclass
class RunPlan:
    """Data periods and step budget: what one training run and an ablation over many runs share."""

    train_start: str = "2017-01-01"
    """first day of the training period (UTC)"""
    train_end: str = "2022-12-31"
    """last day of the training period"""
    val_start: str = "2023-01-01"
    """first day of the validation period"""
    val_end: str = "2023-12-31"
    """last day of the validation period"""
    total_steps: int = 300_000
    """environment steps (M1 bars) to train for"""
    learning_starts: int = 10_000
    """random-action steps before learning"""
    eval_every: int = 50_000
    """steps between validation runs"""


@dataclass
class TrainArgs(RunPlan):
    """The fields every trainer's CLI shares (tyro reads the field docstrings as help)."""

    symbol: str = "EURUSD"
    """instrument to train on"""
    data: str = ""
    """M1 data file or folder; empty: $MTF_DATA_DIR or ../shared/data/fx"""
    update_every: int = 2
    """environment steps per gradient update (SB3's train_freq for td3)"""
    gamma: float = 0.995
    """discount per M1 step; 0.995 has a half-life of about 2.3 hours"""
    batch_size: int = 256
    """minibatch size"""
    buffer_size: int = 300_000
    """replay capacity (transitions)"""
    episode_bars: int = 1440 * 5
    """M1 bars per training episode"""
    max_exposure: float = 10.0
    """notional of a full-size position, multiple of equity"""
    eval_bars: int = 0
    """bars of each validation segment to use; 0: all"""
    seed: int = 0
    """seed of every random generator"""
    out: str = ""
    """output folder; empty: runs/train-<algorithm>-<UTC time>"""
    torch_threads: int = 1
    """torch CPU threads (1 is fastest for these small networks and keeps runs reproducible)"""
    tensorboard: bool = True
    """write TensorBoard logs to OUT/tb"""
    action_mode: Literal["free", "timing"] = "free"
    """MTF-MARL action design: free (the executor sizes inside the director's limit) or timing (the director
    decides direction and size, the executor only times entries and exits: risk/actions.py)"""
    min_hold_bars: int = 0
    """timing mode: M1 bars an entry is held before the executor may leave it"""
    turnover_penalty: float = 0.0
    """reward penalty per full-size position traded (on top of the real costs, which the P&L already holds)"""
    exec_minutes: int = 1
    """the M1 executor decides every EXEC_MINUTES minutes, on completed bars (1: every M1 bar; 5, 15: M5, M15)"""

    def env_config(self) -> EnvConfig:
        return EnvConfig(symbol=self.symbol, episode_bars=self.episode_bars, max_exposure=self.max_exposure,
                         action_mode=self.action_mode, min_hold_bars=self.min_hold_bars,
                         turnover_penalty=self.turnover_penalty, exec_minutes=self.exec_minutes)

    def base_manifest(self, algorithm: str, step: int) -> dict:
        """What every checkpoint's manifest says about its data, config and features."""
        cfg = self.env_config()
        return {"algorithm": algorithm, "feature_spec": DEFAULT_SPEC.to_dict(), "h4_feature_spec": H4_SPEC.to_dict(),
                "symbol": self.symbol, "train_period": [self.train_start, self.train_end],
                "val_period": [self.val_start, self.val_end], "history_days": HISTORY_DAYS, "args": asdict(self),
                "env_config": {k: v for k, v in asdict(cfg).items() if k != "rules"} | {"rules": cfg.rules.to_dict()},
                "seed": self.seed, "step": step}


@dataclass(frozen=True)
class EnvConfig:
    """Env settings.

    :param symbol: instrument (costs, pip value)
    :param cash: initial balance, USD
    :param leverage: account leverage
    :param max_exposure: notional of a full-size action, as a multiple of equity
    :param episode_bars: M1 steps per episode (truncation after that many steps, or at the end of the data)
    :param random_start: random window starts (seeded by ``reset(seed=...)``); else consecutive windows
    :param rules: drawdown rules
    :param terminate_on_breach: end the episode on a breach (else go on, halted, as the backtest does)
    :param on_excess: validator behaviour for unsafe sizes
    :param vol_minutes: minutes per H4 bar: the H4 ATR / sqrt(this) is the typical one-minute move that
        scales the reward
    :param soft_penalty: reward penalty per unit of daily drawdown beyond the soft zone (design: 100)
    :param daily_breach_penalty: reward on a daily breach (design: -1000)
    :param total_breach_penalty: reward on a total breach (design: -10000)
    :param reward_clip: the P&L part of the reward is clipped to +-this
    :param action_mode: the MTF-MARL action design (``risk.actions.joint_target_for``)
    :param min_hold_bars: timing mode: bars an entry is held before the executor may leave it
    :param turnover_penalty: reward penalty per full-size position traded, beyond the costs in the P&L
    :param exec_minutes: the M1 executor's cadence (``agents.cadence``): 1, every M1 bar; 5 / 15, each completed
        M5 / M15 bar
    """

    symbol: str = "EURUSD"
    cash: float = 100_000.0
    leverage: float = 30.0
    max_exposure: float = 10.0
    episode_bars: int = 1440 * 5
    random_start: bool = True
    rules: DrawdownRules = field(default_factory=DrawdownRules.from_config)
    terminate_on_breach: bool = True
    on_excess: str = "shrink"
    vol_minutes: float = 240.0
    soft_penalty: float = 100.0
    daily_breach_penalty: float = -1000.0
    total_breach_penalty: float = -10000.0
    reward_clip: float = 10.0
    action_mode: str = "free"
    min_hold_bars: int = 0
    turnover_penalty: float = 0.0
    exec_minutes: int = 1

    def __post_init__(self) -> None:
        check_exec_minutes(self.exec_minutes)

    @classmethod
    def from_dict(cls, d: dict) -> EnvConfig:
        """The config a manifest recorded (``manifest["env_config"]``), so a policy is evaluated under the
        costs and drawdown rules it was trained with."""
        return cls(**{k: v for k, v in d.items() if k != "rules"}, rules=DrawdownRules(**d["rules"]))


class Account:
    """The broker core, its drawdown guard and the validator, wired as the backtest wires them."""

    def __init__(self, ctx: MarketContext, cfg: EnvConfig) -> None:
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
        self.reset()

    def reset(self) -> None:
        self.sim.reset()
        self.validator.blocked = self.validator.shrunk = 0
        self.prev_equity = self.cfg.cash
        self.obs.reset()
        self.reward_parts = {"pnl": 0.0, "soft_penalty": 0.0, "breach_penalty": 0.0, "turnover_penalty": 0.0}
        self.traded_lots = 0.0

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
        r = base = max(-cfg.reward_clip, min(cfg.reward_clip, pnl / vol))
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
