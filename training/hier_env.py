"""Hierarchical two-agent env: an H4 risk director and an M1 execution agent on one account.

``step(h4_action, m1_action)`` advances one M1 bar. The director's action is adopted only on an M1 bar at which a
new H4 bar has completed (``agents.mtf_marl.cadence``; also on the first step of an episode); in between, its last
action holds and the ``h4_action`` passed is ignored (``info["h4_decision"]``). The executor's likewise, at its
cadence (``EnvConfig.exec_minutes``; every M1 bar by default): between its decisions the ``m1_action`` passed is
ignored, no order is sent (``info["m1_decision"]``) and ``m1_decision_due()`` says when it acts next. The pair maps
to a target position through ``risk.actions.joint_target_for`` (|target| <= limit x max_lots), then the pre-trade
validator sizes it; fills, costs and drawdown enforcement are the shared broker core's, as in the single-agent env
and the backtest.

Observations come from ``agents.common.observations`` (H4: 22, M1: 23; more with the market
block). The M1 agent sees the director's decision:
the M1 observation returned by ``step``/``reset`` shows the action in force; on a step where the director
decides (``h4_decision_due()``), call ``m1_obs(h4_action)`` to show the M1 agent the new one before it acts.
Reward: one joint cooperative reward (``training.account.Account.reward``) for both agents.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from agents.common.observations import H4_OBS_DIM, M1_OBS_DIM, OBS_CLIP
from agents.mtf_marl.cadence import director_due, executor_due
from features.context import MarketContext
from risk.actions import director_decision, joint_target_for
from risk.validator import validated_target
from training.account import Account, episode_bounds
from training.env_config import EnvConfig

_BOX2 = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)


class HierarchicalForexEnv:
    """:param ctx: precomputed market context
    :param config: env settings (shared with the single-agent env)"""

    h4_observation_space = gym.spaces.Box(-OBS_CLIP, OBS_CLIP, shape=(H4_OBS_DIM,), dtype=np.float32)
    m1_observation_space = gym.spaces.Box(-OBS_CLIP, OBS_CLIP, shape=(M1_OBS_DIM,), dtype=np.float32)
    """the default sizes; an env over a context with the market block has its own, larger ones"""
    action_space = _BOX2

    def __init__(self, ctx: MarketContext, config: EnvConfig | None = None) -> None:
        self.cfg = config or EnvConfig()
        self.ctx = ctx
        self.acct = Account(ctx, self.cfg)
        self.inst = self.acct.inst
        dims = self.acct.obs.dims
        if dims.h4 != H4_OBS_DIM:
            self.h4_observation_space = gym.spaces.Box(-OBS_CLIP, OBS_CLIP, shape=(dims.h4,), dtype=np.float32)
            self.m1_observation_space = gym.spaces.Box(-OBS_CLIP, OBS_CLIP, shape=(dims.m1,), dtype=np.float32)
        self._h4_pos = ctx.h4_pos.tolist()
        self._next_start = ctx.first_ready
        self.np_random = np.random.default_rng()
        self.i = self.end = 0

    def _obs(self) -> tuple[np.ndarray, np.ndarray]:
        a = self.acct
        return a.obs.h4(self.i, a.sim, a.guard), a.obs.m1(self.i, a.sim, self.limit, self.bias)

    def shared_state(self) -> np.ndarray:
        """The 24-D shared state at the current bar (the joint critic's input)."""
        return self.acct.obs.shared(self.i, self.acct.sim, self.acct.guard)

    def m1_obs(self, h4_action) -> np.ndarray:
        """The M1 observation showing ``h4_action`` as the director's decision (use it when one is due)."""
        bias, limit = director_decision(h4_action)
        return self.acct.obs.m1(self.i, self.acct.sim, limit, bias)

    def reset(self, *, seed: int | None = None) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        start, self.end = episode_bounds(self.ctx, self.cfg, self.np_random, self._next_start)
        self._next_start = self.end
        self.acct.reset()
        self.i = start
        self.acct.bar(start)
        self.bias, self.limit = 0.0, 0.0
        self._h4_action: tuple[float, float] | None = None
        self._m1_acted = False
        return self._obs(), {"bar": start, "h4_decision_due": True, "m1_decision_due": True}

    def h4_decision_due(self) -> bool:
        """True when the director acts on this step: the first step, or a new H4 bar completed at this bar."""
        return director_due(self._h4_pos, self.i, self._h4_action is None)

    def m1_decision_due(self, director_decides: bool | None = None) -> bool:
        """True when the executor acts on this step (every step at ``exec_minutes`` = 1); ``director_decides``:
        whether the director acts on it (default: ``h4_decision_due()``)."""
        director = self.h4_decision_due() if director_decides is None else director_decides
        return executor_due(self.acct.minutes, self.i, self.cfg.exec_minutes, not self._m1_acted, director)

    def step(self, h4_action, m1_action):
        acct, sim = self.acct, self.acct.sim
        decision = self.h4_decision_due()
        if decision:
            self._h4_action = (float(h4_action[0]), float(h4_action[1]))
            self.bias, self.limit = director_decision(self._h4_action)
        cfg = self.cfg
        m1_decision = self.m1_decision_due(decision)  # the director's decision, taken before its action was adopted
        if m1_decision:
            self._m1_acted = True
            jt = joint_target_for(cfg.action_mode, self._h4_action, (float(m1_action[0]), float(m1_action[1])),
                                  acct.obs.max_lots, self.inst, current=sim.lots,
                                  held_bars=acct.obs.held_bars(self.i, sim), min_hold_bars=cfg.min_hold_bars)
            verdict = validated_target(acct.validator, sim, jt.lots, acct.atr[self.i])
            if verdict.lots != sim.lots:
                sim.submit_target(verdict.lots)
            self._last = jt, verdict.outcome
        jt, outcome = self._last  # between executor decisions: the decision in force, no new order
        self.i += 1
        fills = acct.bar(self.i)  # orders decided on bar i fill at bar i+1's open
        reward, breached = acct.reward(self.i)
        terminated = breached and self.cfg.terminate_on_breach
        truncated = self.i >= self.end and not terminated  # CRUCIAL: end of the window is not terminal
        live = not terminated and not truncated
        info = {"bar": self.i, "h4_decision": decision, "m1_decision": m1_decision,
                "m1_constraint_violation": jt.violation and m1_decision, "validator": outcome,
                "target_fraction": jt.fraction, "target_lots": jt.lots,
                "h4_limit": self.limit, "h4_bias": self.bias, "equity": sim.equity, "fills": len(fills),
                "h4_decision_due": live and self.h4_decision_due(), "m1_decision_due": live and self.m1_decision_due()}
        if breached:
            info["breach"] = acct.guard.new_breach.to_dict()
        return self._obs(), float(reward), terminated, truncated, info


class HierarchicalParallelEnv(ParallelEnv):
    """PettingZoo Parallel API over ``HierarchicalForexEnv``: agents ``"h4"`` and ``"m1"`` share one reward.

    Both agents act every M1 step; the director's action only takes effect when ``infos["h4"]["h4_decision"]``
    is true (an H4 bar completed), the executor's when ``infos["m1"]["m1_decision"]`` is, as in the underlying env.
    """

    metadata = {"name": "mtf_marl_hierarchical_v0", "render_modes": []}
    possible_agents = ["h4", "m1"]

    def __init__(self, ctx: MarketContext, config: EnvConfig | None = None) -> None:
        self.env = HierarchicalForexEnv(ctx, config)
        self.agents: list[str] = []
        self._obs_spaces = {"h4": self.env.h4_observation_space, "m1": self.env.m1_observation_space}

    def observation_space(self, agent: str) -> gym.spaces.Box:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gym.spaces.Box:
        return _BOX2

    def reset(self, seed: int | None = None, options: dict | None = None):
        (oh, om), info = self.env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        return {"h4": oh, "m1": om}, {"h4": dict(info), "m1": dict(info)}

    def step(self, actions: dict[str, np.ndarray]):
        (oh, om), r, term, trunc, info = self.env.step(actions["h4"], actions["m1"])
        agents = self.agents
        if term or trunc:
            self.agents = []
        return ({"h4": oh, "m1": om}, {a: r for a in agents}, {a: term for a in agents},
                {a: trunc for a in agents}, {a: dict(info) for a in agents})
