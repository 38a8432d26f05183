"""Single-agent forex env for stable-baselines3, on the same broker core as the Backtrader backtest.

Observation (24, float32): the shared state of ``agents.common.observations`` (16 M1 features, then the 8
``ACCOUNT_FEATURES``; then the market block when the context has one),
built by the same object the Backtrader strategies use. Action Box(2) in [-1, 1]:
target position and exit confidence, mapped by ``risk.actions.single_target`` and sized by the pre-trade validator.

One step = one M1 bar. The action is decided on bar ``i``'s close; its order fills at bar ``i+1``'s open
inside ``sim.on_bar`` (fill timing: never on the bar that decided it). The reward is the joint reward of
``training.account.Account.reward`` for bar ``i+1``. ``terminated`` means a drawdown breach (the guard
flattened the account); ``truncated`` means the episode window or the data ended, which is not a terminal
state for bootstrapping.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from agents.common.observations import OBS_CLIP, STATE_DIM
from features.context import MarketContext
from risk.actions import single_target
from risk.validator import validated_target
from training.account import Account, episode_bounds
from training.env_config import EnvConfig

OBS_DIM = STATE_DIM


class ForexEnv(gym.Env):
    """:param ctx: precomputed market context (``features.context.build_context``)
    :param config: env settings"""

    metadata = {"render_modes": []}

    def __init__(self, ctx: MarketContext, config: EnvConfig | None = None) -> None:
        super().__init__()
        self.cfg = config or EnvConfig()
        self.ctx = ctx
        self.acct = Account(ctx, self.cfg)
        self.inst = self.acct.inst
        self.observation_space = gym.spaces.Box(-OBS_CLIP, OBS_CLIP, shape=(self.acct.obs.dims.state,),
                                                dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._next_start = ctx.first_ready
        self.i = self.end = 0
        self.fill_log: list = []  # every fill of the current episode (brokers.sim.Fill)

    def _obs(self) -> np.ndarray:
        return self.acct.obs.shared(self.i, self.acct.sim, self.acct.guard)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        start, self.end = episode_bounds(self.ctx, self.cfg, self.np_random, self._next_start)
        self._next_start = self.end
        self.acct.reset()
        self.i = start
        self.fill_log = list(self.acct.bar(start))  # the account exists from this bar's close on
        return self._obs(), {"bar": start}

    def step(self, action):
        acct, sim = self.acct, self.acct.sim
        a0, a1 = float(action[0]), float(action[1])
        target = single_target(a0, a1, acct.obs.max_lots, self.inst, current=sim.lots)
        verdict = validated_target(acct.validator, sim, target, acct.atr[self.i])
        if verdict.lots != sim.lots:
            sim.submit_target(verdict.lots)
        self.i += 1
        fills = acct.bar(self.i)  # the order fills at this bar's open
        if fills:
            self.fill_log.extend(fills)
        reward, breached = acct.reward(self.i)
        terminated = breached and self.cfg.terminate_on_breach
        truncated = self.i >= self.end and not terminated  # CRUCIAL: end of data is a truncation, not terminal
        info = {"bar": self.i, "equity": sim.equity, "validator": verdict.outcome, "fills": len(fills)}
        if breached:
            info["breach"] = acct.guard.new_breach.to_dict()
        return self._obs(), float(reward), terminated, truncated, info
