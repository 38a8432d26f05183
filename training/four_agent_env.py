"""The four-agent env: Regime, Structure, Tactical and Risk on one account, one M1 bar per step.

Same broker core, drawdown guard, validator and joint reward as the MTF-MARL envs (``training.account.Account``,
imported); the decision rule is ``agents.four_agent.acting.JointBook`` (``risk.consensus.decide`` then
``guarded_target``), which the Backtrader strategy ``four_agent`` runs too.

Cadence (``info["acted"]``), each agent at its own bars:

* Regime and Structure: at each M1 bar where an M30 bar completes (``features.matrices``: the one completion rule);
* Tactical: at each M1 bar where an M5 bar completes; between its decisions its action counts as ``hold``;
* Risk: at every M1 bar where the consensus proposes a target other than the position, or a position is open;
* Regime, Structure and Tactical at an episode's first bar (nothing is in force yet); Risk only where due.

Per bar the core env is driven in two calls, because the Risk agent must see the proposal of *this* bar:
``act(regime=, structure=, tactical=)`` takes the due upper agents' actions (others are ignored, as the MTF-MARL
env ignores a director action between H4 bars) and returns the ``Proposal``; then ``step(risk_action)`` decides,
validates, orders (the aggregator's stop-loss / take-profit as real broker levels) and advances one M1 bar: orders
decided on bar i fill at bar i+1's open. Reward: ``Account.reward`` (P&L over the market's volatility, soft-zone and
breach penalties), one cooperative reward for all four. ``terminated`` on a breach, ``truncated`` at the window end.

Observations (``features.matrices`` built once per context, views per bar, no copy):

* regime: ``matrix`` 96 x 19 (M30 + macro), ``mask`` (96,);  action: its class probabilities (4) in [0, 1] (the
  frozen network's softmax; class = arg-max, confidence = the largest);
* structure: ``matrix`` 48 x 8 (M30), ``mask``;  action: (bias in [-1, 1], size, confidence in [0, 1]);
* tactical: ``matrix`` 60 x 7 (M5), ``mask``, ``action_mask`` (5,) (flat: no exit / reduce);  action: an index of
  ``TACTICAL_ACTIONS``;
* risk: ``proposal`` (15, ``RISK_PROPOSAL_FIELDS``: the upper agents' actions, proposed and current position as
  fractions of max lots) and ``account`` (8, ``agents.common.observations.ACCOUNT_FEATURES``);  action: an index of
  ``RISK_ACTIONS``.

The hub's messages are the agents' side (``Controller``), not the env's. ``state()`` is the global state of the
centralised critic (``STATE_FIELDS``, 91 values). ``FourAgentParallelEnv`` is the same env behind PettingZoo's
Parallel API: all four actions come in one ``step``, so there the Risk agent acts on the observation returned by
the previous step (the proposal with the Tactical action ``hold``); the runner and the evaluator use the core env.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from pettingzoo import ParallelEnv

from agents.common.observations import ACCOUNT_FEATURES, OBS_CLIP
from agents.four_agent.acting import ALLOW, HOLD, Controller, JointBook, Proposal
from agents.four_agent.config import AGENTS, RISK_ACTIONS, RISK_PROPOSAL_FIELDS, TACTICAL_ACTIONS
from features.context import MarketContext
from features.engine import FEATURE_NAMES, N_FEATURES
from features.matrices import (
    DEFAULT_MATRIX_SPEC,
    REGIME_COLUMNS,
    STRUCTURE_COLUMNS,
    TACTICAL_COLUMNS,
    MarketMatrices,
    MatrixSpec,
    build_matrices,
)
from feeds.macro import MacroTable
from risk.consensus import DEFAULT_CONSENSUS, REGIME_CLASSES, ConsensusConfig
from training.account import Account, episode_bounds
from training.env_config import EnvConfig
from training.evaluate import _summary

STATE_FIELDS: tuple[str, ...] = (
    *(f"m1_{f}" for f in FEATURE_NAMES), *(f"h4_{f}" for f in FEATURE_NAMES), *ACCOUNT_FEATURES,
    *(f"tactical_{c}" for c in TACTICAL_COLUMNS), *(f"structure_{c}" for c in STRUCTURE_COLUMNS),
    *(f"regime_{c}" for c in REGIME_COLUMNS),
    *(f"regime_p_{c}" for c in REGIME_CLASSES), "regime_confidence", "structure_bias", "structure_size",
    "structure_confidence", *(f"last_tactical_{a}" for a in TACTICAL_ACTIONS), "new_m5", "new_m30",
    "since_tactical", "since_structure",
)
"""the global state (centralised critic), by named slot: the M1 and H4 engine features, the account, the newest row
of each matrix, the actions in force, the cadence flags and the time since the Tactical (in M5 bars) and Structure
(in M30 bars) decisions"""
STATE_DIM = len(STATE_FIELDS)
_S = {name: k for k, name in enumerate(STATE_FIELDS)}
def _span(first: str, n: int) -> slice:
    k = _S[first]
    return slice(k, k + n)


_M1 = _span(f"m1_{FEATURE_NAMES[0]}", N_FEATURES)
_H4 = _span(f"h4_{FEATURE_NAMES[0]}", N_FEATURES)
_ACC = _span(ACCOUNT_FEATURES[0], len(ACCOUNT_FEATURES))
_TAC = _span(f"tactical_{TACTICAL_COLUMNS[0]}", len(TACTICAL_COLUMNS))
_STR = _span(f"structure_{STRUCTURE_COLUMNS[0]}", len(STRUCTURE_COLUMNS))
_REG = _span(f"regime_{REGIME_COLUMNS[0]}", len(REGIME_COLUMNS))
_REG_P = _span(f"regime_p_{REGIME_CLASSES[0]}", len(REGIME_CLASSES))
_STRUCT_A = _span("structure_bias", 3)
_LAST_TAC = _S[f"last_tactical_{TACTICAL_ACTIONS[0]}"]


def context_frame(ctx: MarketContext) -> pd.DataFrame:
    """The M1 bars a context was built from (our data have no volume), for ``build_matrices``."""
    return pd.DataFrame({"open": ctx.open, "high": ctx.high, "low": ctx.low, "close": ctx.close, "volume": 0.0},
                        index=ctx.index)


def context_matrices(ctx: MarketContext, macro: pd.DataFrame | MacroTable | None,
                     spec: MatrixSpec = DEFAULT_MATRIX_SPEC) -> MarketMatrices:
    """The four-agent matrices over exactly a context's bars: built once per context."""
    return build_matrices(context_frame(ctx), macro, spec)


class FourAgentEnv:
    """:param ctx: precomputed market context (account, reward, validator ATR)
    :param matrices: ``context_matrices(ctx, macro)``
    :param config: env settings (shared with the MTF-MARL envs)
    :param consensus: the aggregator's thresholds"""

    def __init__(self, ctx: MarketContext, matrices: MarketMatrices, config: EnvConfig | None = None,
                 consensus: ConsensusConfig = DEFAULT_CONSENSUS) -> None:
        if len(matrices) != len(ctx):
            raise ValueError(f"matrices over {len(matrices)} bars for a context of {len(ctx)}: build them from the "
                             "same bars (context_matrices)")
        self.cfg = config or EnvConfig()
        # episodes start where every input is ready: the context's features and all three matrices
        self.ctx = replace(ctx, first_ready=max(ctx.first_ready, min(matrices.first_ready, len(ctx))))
        self.mm = matrices
        self.acct = Account(self.ctx, self.cfg)
        self.inst = self.acct.inst
        self.book = JointBook(self.inst, consensus)
        self._new5, self._new30 = matrices.new_m5.tolist(), matrices.new_m30.tolist()
        self._next_start = self.ctx.first_ready
        self.np_random = np.random.default_rng()
        self.i = self.end = 0
        self._proposal: Proposal | None = None
        self._acted: tuple[str, ...] = ()

    # ------------------------------------------------------------------ observations
    def due(self) -> tuple[str, ...]:
        """The upper agents (regime, structure, tactical) that act at the current bar, in order."""
        return self.book.due(self._new5[self.i], self._new30[self.i])

    def matrices(self):
        """The three matrices and masks at the current bar (read-only views)."""
        return self.mm.at(self.i)

    def action_mask(self) -> np.ndarray:
        return self.book.tactical_mask(self.acct.sim.lots)

    def account_features(self) -> np.ndarray:
        a = self.acct
        return a.obs.shared(self.i, a.sim, a.guard)[N_FEATURES:]

    def risk_features(self) -> np.ndarray:
        """The Risk agent's proposal features at this bar (after ``act``)."""
        if self._proposal is None:
            raise RuntimeError("call act() first: the Risk agent sees this bar's proposal")
        return self.book.risk_features(self._proposal, self.acct.obs.max_lots)

    def risk_now(self) -> np.ndarray:
        """The Risk agent's proposal features with the actions in force, without acting (the state an episode or a
        rollout is cut at: the DQN's bootstrap)."""
        a = self.acct
        if self.book.structure is None:
            return np.zeros(len(RISK_PROPOSAL_FIELDS), np.float32)
        p = self.book.propose(self.book.account_state(a.sim, a.obs.max_lots, a.atr[self.i]))
        return self.book.risk_features(p, a.obs.max_lots)

    def episode_stats(self) -> dict[str, float]:
        """The episode so far: reward parts, CMDP events, validator interventions, return."""
        a, g = self.acct, self.acct.guard
        return {**{f"reward_{k}": v for k, v in a.reward_parts.items()}, "breaches": len(g.breaches),
                "soft_zone_entries": g.soft_zone_entries, "validator_blocked": a.validator.blocked,
                "validator_shrunk": a.validator.shrunk, "return": a.sim.equity / self.cfg.cash - 1.0}

    def state(self) -> np.ndarray:
        """The global state (``STATE_FIELDS``) at the current bar, with the actions in force."""
        a, i, b = self.acct, self.i, self.book
        out = np.zeros(STATE_DIM, np.float32)
        shared = a.obs.shared(i, a.sim, a.guard)
        out[_M1] = shared[:N_FEATURES]
        out[_H4] = self.ctx.h4_features[i]
        out[_ACC] = shared[N_FEATURES:]
        m = self.mm.at(i)
        out[_TAC], out[_STR], out[_REG] = m.tactical[-1], m.structure[-1], m.regime[-1]
        out[_REG_P] = b.regime_probs
        out[_S["regime_confidence"]] = b.regime_confidence
        if b.structure is not None:
            out[_STRUCT_A] = b.structure
        out[_LAST_TAC + b.last_tactical] = 1.0
        out[_S["new_m5"]], out[_S["new_m30"]] = self._new5[i], self._new30[i]
        out[_S["since_tactical"]] = min(OBS_CLIP, (i - self._tactical_at) / 5.0)
        out[_S["since_structure"]] = min(OBS_CLIP, (i - self._structure_at) / 30.0)
        return out

    # ------------------------------------------------------------------ dynamics
    def reset(self, *, seed: int | None = None) -> dict[str, Any]:
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        start, self.end = episode_bounds(self.ctx, self.cfg, self.np_random, self._next_start)
        self._next_start = self.end
        self.acct.reset()
        self.book.reset()
        self.i = start
        self.acct.bar(start)
        self._tactical_at = self._structure_at = start
        self._proposal, self._acted = None, ()
        return {"bar": start, "due": self.due()}

    def act(self, regime: np.ndarray | None = None, structure: np.ndarray | None = None,
            tactical: int | None = None) -> Proposal:
        """Adopt the actions of the upper agents due at this bar (the others are ignored) and return the proposal."""
        due = self.due()
        b = self.book
        for agent, a in (("regime", regime), ("structure", structure), ("tactical", tactical)):
            if agent in due and a is None:
                raise ValueError(f"the {agent} agent acts at bar {self.i} (due: {due}) but no action was given")
        if "regime" in due:
            b.set_regime(regime)
        if "structure" in due:
            b.set_structure(structure)
            self._structure_at = self.i
        if "tactical" in due:
            b.set_tactical(int(tactical))
            self._tactical_at = self.i
        a = self.acct
        self._state = b.account_state(a.sim, a.obs.max_lots, a.atr[self.i])
        self._proposal = b.propose(self._state)
        self._acted = due
        return self._proposal

    def step(self, risk: int | None = None) -> tuple[float, bool, bool, dict[str, Any]]:
        """Decide (with ``risk`` where the Risk agent is due), validate, order, and advance one M1 bar."""
        p = self._proposal
        if p is None:
            raise RuntimeError("call act() before step(): the upper agents act first")
        if p.risk_due and risk is None:
            raise ValueError(f"the risk agent acts at bar {self.i} (proposal {p.lots} lots, position {p.current})")
        r = int(risk) if p.risk_due else ALLOW
        acct, sim, book = self.acct, self.acct.sim, self.book
        decision = book.decide(self._state, r)
        verdict = book.guard(decision, acct.validator, sim, acct.atr[self.i])
        order = book.order(decision, verdict, sim.lots)
        if order is not None:
            sim.submit_target(*order)
        acted = (*self._acted, "risk") if p.risk_due else self._acted
        info = {"bar": self.i, "acted": acted, "regime": book.regime_class, "tactical": book.tactical,
                "risk_due": p.risk_due, "risk": r, "proposed_lots": p.lots, "decision_lots": decision.lots,
                "target_lots": verdict.lots, "validator": verdict.outcome, "branch": decision.branch,
                "cap_lots": decision.max_exposure, "max_lots": acct.obs.max_lots}
        book.end_bar()
        self._proposal = None
        self.i += 1
        fills = acct.bar(self.i)  # orders decided on bar i fill at bar i+1's open (and SL/TP inside it)
        reward, breached = acct.reward(self.i)
        terminated = breached and self.cfg.terminate_on_breach
        truncated = self.i >= self.end and not terminated  # CRUCIAL: the window's end is not terminal
        info |= {"equity": sim.equity, "fills": len(fills), "position": sim.lots}
        if breached:
            info["breach"] = acct.guard.new_breach.to_dict()
        return float(reward), terminated, truncated, info


# ------------------------------------------------------------------ PettingZoo Parallel API
def _box(shape: tuple[int, ...], lo: float = -OBS_CLIP, hi: float = OBS_CLIP) -> gym.spaces.Box:
    return gym.spaces.Box(lo, hi, shape=shape, dtype=np.float32)


class FourAgentParallelEnv(ParallelEnv):
    """``FourAgentEnv`` as a PettingZoo Parallel env (module docstring); agents ``AGENTS`` share one reward.

    An agent's action only takes effect at its own bars (``infos[agent]["acted"]``); the others are ignored."""

    metadata = {"name": "four_agent_v0", "render_modes": []}
    possible_agents = list(AGENTS)

    def __init__(self, ctx: MarketContext, matrices: MarketMatrices, config: EnvConfig | None = None,
                 consensus: ConsensusConfig = DEFAULT_CONSENSUS) -> None:
        self.env = FourAgentEnv(ctx, matrices, config, consensus)
        s = matrices.spec
        self.agents: list[str] = []
        self._obs_spaces = {
            "regime": gym.spaces.Dict({"matrix": _box((s.regime_rows, len(REGIME_COLUMNS))),
                                       "mask": gym.spaces.MultiBinary(s.regime_rows)}),
            "structure": gym.spaces.Dict({"matrix": _box((s.structure_rows, len(STRUCTURE_COLUMNS))),
                                          "mask": gym.spaces.MultiBinary(s.structure_rows)}),
            "tactical": gym.spaces.Dict({"matrix": _box((s.tactical_rows, len(TACTICAL_COLUMNS))),
                                         "mask": gym.spaces.MultiBinary(s.tactical_rows),
                                         "action_mask": gym.spaces.MultiBinary(len(TACTICAL_ACTIONS))}),
            "risk": gym.spaces.Dict({"proposal": _box((len(RISK_PROPOSAL_FIELDS),)),
                                     "account": _box((len(ACCOUNT_FEATURES),))}),
        }
        self._act_spaces = {
            "regime": gym.spaces.Box(0.0, 1.0, shape=(len(REGIME_CLASSES),), dtype=np.float32),
            "structure": gym.spaces.Box(np.array([-1.0, 0.0, 0.0], np.float32), np.ones(3, np.float32),
                                        dtype=np.float32),
            "tactical": gym.spaces.Discrete(len(TACTICAL_ACTIONS)),
            "risk": gym.spaces.Discrete(len(RISK_ACTIONS)),
        }
        self.state_space = _box((STATE_DIM,), -np.inf, np.inf)

    def observation_space(self, agent: str) -> gym.spaces.Dict:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gym.spaces.Space:
        return self._act_spaces[agent]

    def state(self) -> np.ndarray:
        return self.env.state()

    def _observe(self) -> dict[str, dict[str, np.ndarray]]:
        e = self.env
        m = e.matrices()
        risk = e.risk_now()
        i8 = np.int8
        return {"regime": {"matrix": np.array(m.regime), "mask": m.regime_mask.astype(i8)},
                "structure": {"matrix": np.array(m.structure), "mask": m.structure_mask.astype(i8)},
                "tactical": {"matrix": np.array(m.tactical), "mask": m.tactical_mask.astype(i8),
                             "action_mask": e.action_mask().astype(i8)},
                "risk": {"proposal": np.clip(risk, -OBS_CLIP, OBS_CLIP),
                         "account": e.account_features()}}

    def reset(self, seed: int | None = None, options: dict | None = None):
        info = self.env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        return self._observe(), {a: dict(info) for a in self.agents}

    def step(self, actions: dict[str, Any]):
        e = self.env
        probs = actions.get("regime")
        if probs is not None and not float(np.sum(probs)) > 0:
            probs = np.full(len(REGIME_CLASSES), 0.25)  # a sampled all-zero distribution: no preference
        tac = actions.get("tactical")
        if tac is not None and not e.action_mask()[int(tac)]:
            tac = HOLD  # a masked action is hold
        e.act(regime=probs, structure=actions.get("structure"), tactical=tac)
        r, term, trunc, info = e.step(actions.get("risk", ALLOW))
        agents = self.agents
        if term or trunc:
            self.agents = []
        infos = {a: dict(info, acted=a in info["acted"]) for a in agents}
        return (self._observe(), {a: r for a in agents}, {a: term for a in agents}, {a: trunc for a in agents},
                infos)


# ------------------------------------------------------------------ deterministic evaluation
class RegimeCache:
    """The frozen Regime network's outputs (class probabilities, message) at every complete M30 bar of a context,
    computed once in batches: it reads only its own matrix, so rollouts need not run it again."""

    def __init__(self, nets, matrices: MarketMatrices, first_bar: int = 0, batch: int = 512) -> None:
        import torch

        from agents.four_agent.networks import RegimeObs

        n30 = matrices.regime.n_bars
        self.first = max(0, int(matrices.m30_pos[min(first_bar, len(matrices) - 1)]) if len(matrices) else 0)
        rows = np.arange(self.first, n30)
        self.probs = np.zeros((n30, len(REGIME_CLASSES)))
        self.message = np.zeros((n30, nets.hub.message_dim), np.float32)
        nets.regime.eval()
        with torch.inference_mode():
            for a in range(0, len(rows), batch):
                pos = rows[a:a + batch]
                x, m = matrices.regime.batch(pos)
                out = nets.regime(*RegimeObs(torch.from_numpy(x), torch.from_numpy(m)))
                self.probs[pos] = out.probs.numpy()
                self.message[pos] = out.message.numpy()

    def at(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        if pos < self.first:
            raise IndexError(f"M30 row {pos} precedes the cache (from {self.first})")
        return self.probs[pos], self.message[pos]


def run_policy(env: FourAgentEnv, ctl: Controller, stop: int, cache: RegimeCache | None = None,
               on_step=None) -> None:
    """Drive ``env`` from its current bar to ``stop`` with the controller (one row), as the strategy does: the
    due upper agents act in order, then Risk on this bar's proposal. ``on_step(info, reward)`` sees each step."""
    one = np.zeros(1, np.int64)
    while env.i < stop:
        due = env.due()
        m = env.matrices()
        kw: dict[str, Any] = {}
        if "regime" in due:
            if cache is not None:
                probs, msg = cache.at(int(env.mm.m30_pos[env.i]))
                kw["regime"] = ctl.regime_cached(one, probs[None], msg[None]).action[0]
            else:
                kw["regime"] = ctl.regime(one, m.regime[None], m.regime_mask[None]).action[0]
        if "structure" in due:
            kw["structure"] = ctl.structure(one, m.structure[None], m.structure_mask[None]).action[0]
        if "tactical" in due:
            kw["tactical"] = int(ctl.tactical(one, m.tactical[None], m.tactical_mask[None],
                                              env.action_mask()[None]).action[0])
        p = env.act(**kw)
        risk = None
        if p.risk_due:
            risk = int(ctl.risk(one, env.risk_features()[None], env.account_features()[None]).action[0])
        r, term, trunc, info = env.step(risk)
        if on_step is not None:
            on_step(info, r)
        if term:
            break


def evaluate_four_agent(contexts: list[MarketContext], matrices: list[MarketMatrices], cfg: EnvConfig, nets,
                        max_bars: int = 0, caches: list[RegimeCache] | None = None,
                        consensus: ConsensusConfig = DEFAULT_CONSENSUS, traced: bool = True,
                        risk_margin: float = 0.0) -> dict[str, float | int]:
    """Deterministic run of the four agents over every context from its first ready bar (no exploration, no
    termination: a breach halts trading as in the backtest), summarised as ``training.evaluate`` does, plus the
    agents' decision counts. ``max_bars`` > 0 limits bars per context. With ``traced`` (default) the agents act
    through the batch-1 traces the ``four_agent`` strategy uses, and without ``caches`` the Regime network runs at
    each M30 bar as there, so a validation decides as a backtest of the same bars."""
    cfg = replace(cfg, random_start=False, terminate_on_breach=False, episode_bars=10**9)
    runs, bars, reward = [], 0, 0.0
    counts = {a: 0 for a in AGENTS}
    risk_counts = dict.fromkeys(RISK_ACTIONS, 0)
    regime_bars = dict.fromkeys(REGIME_CLASSES, 0)
    overrides = 0

    for k, (ctx, mm) in enumerate(zip(contexts, matrices, strict=True)):
        env = FourAgentEnv(ctx, mm, cfg, consensus)
        start = env.reset(seed=0)["bar"]
        stop = len(ctx) - 1 if max_bars <= 0 else min(len(ctx) - 1, start + max_bars)
        ctl = Controller(nets, 1, explore=False, traced=traced, risk_margin=risk_margin)
        equity = [env.acct.sim.equity]

        def record(info: dict, r: float, equity: list[float] = equity) -> None:
            nonlocal reward, overrides
            reward += r
            for a in info["acted"]:
                counts[a] += 1
            if info["risk_due"]:
                risk_counts[RISK_ACTIONS[info["risk"]]] += 1
                overrides += info["decision_lots"] != info["proposed_lots"]
            regime_bars[REGIME_CLASSES[info["regime"]]] += 1
            equity.append(info["equity"])

        run_policy(env, ctl, stop, caches[k] if caches is not None else None, record)
        bars += env.i - start
        runs.append((ctx.index[start:env.i + 1], np.asarray(equity), env.acct.guard))
    out, _ = _summary(runs, cfg.cash)
    total = max(1, sum(regime_bars.values()))
    return {"bars": bars, **out, "reward": reward, **{f"decisions_{a}": n for a, n in counts.items()},
            **{f"risk_{a}": n for a, n in risk_counts.items()}, "risk_overrides": overrides,
            **{f"regime_share_{c}": n / total for c, n in regime_bars.items()}}
