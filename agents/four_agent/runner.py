"""Rollout collection for the four-agent system (on-policy's runner: collect -> env.step -> insert), nothing learned.

``Runner.collect(steps)`` drives B four-agent envs in lockstep, one M1 bar per step, through one ``Controller``
(batched forwards of the agents due in each env) and returns a ``Rollout``: one sample per *decision* of each
MAPPO agent (Structure, Tactical), one transition per decision of the Risk agent (its DQN), and per-episode
statistics. Every env is reset at the start of a rollout, so rollouts (and checkpoints, and resumes) fall on
episode boundaries; a rollout is one episode per env unless a breach ends one early (it then restarts).

Macro-actions (Xiao, Tan and Amato 2022): an agent's decision at bar t lasts until its next decision at bar
t + k (or the end of its episode). Its sample accumulates the joint reward of those k M1 steps discounted from
its start, ``R = sum_{m<k} gamma^m r_{t+m}``, and records ``discount = gamma^k``, the global state at its decision
and at the next one (``next_state``), whether a breach ended it (``terminated``) and whether it is the last of
its episode (``last``; at the window's end or the rollout's cut, ``next_state`` is the state there: the timeout
bootstrap). ``agents.common.gae`` then gives the advantages. Every publication to the hub is logged in order
(``Rollout.hub_log``, ``agents.four_agent.hub.Publication``), so that the update can rebuild the hub with a
graph. The Risk agent's transitions are the same macro-actions, for SMDP double Q-learning: target
``R + gamma^k (1 - terminated) Q'(s', argmax_a Q(s', a))`` (``agents.four_agent.dqn``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agents.four_agent.acting import Controller, HubRead, Proposal
from agents.four_agent.config import RISK_ACTIONS, TACTICAL_ACTIONS
from agents.four_agent.hub import Publication

PPO_AGENTS: tuple[str, ...] = ("structure", "tactical")
"""the agents MAPPO trains (the Regime network is pretrained and frozen; Risk is the DQN)"""


class FourAgentEnvLike(Protocol):
    """What the runner needs of ``training.four_agent_env.FourAgentEnv`` (agents never import training)."""

    i: int
    mm: Any

    def reset(self, *, seed: int | None = None) -> dict[str, Any]: ...
    def due(self) -> tuple[str, ...]: ...
    def matrices(self) -> Any: ...
    def action_mask(self) -> np.ndarray: ...
    def act(self, regime=None, structure=None, tactical=None) -> Proposal: ...
    def risk_features(self) -> np.ndarray: ...
    def account_features(self) -> np.ndarray: ...
    def state(self) -> np.ndarray: ...
    def risk_now(self) -> np.ndarray: ...
    def episode_stats(self) -> dict[str, float]: ...
    def step(self, risk: int | None = None) -> tuple[float, bool, bool, dict[str, Any]]: ...


class _Seq:
    """Samples of one agent under construction: per field a list, per env slot the open macro-action."""

    def __init__(self, n_envs: int) -> None:
        self.cols: dict[str, list] = {}
        self.open: list[int] = [-1] * n_envs
        self.reward: list[float] = []
        self.disc: list[float] = []

    def add(self, row: int, **values: Any) -> None:
        """Open a macro-action in env row ``row`` (its previous one must be closed)."""
        if self.open[row] >= 0:
            raise RuntimeError(f"env row {row} still has an open macro-action")
        k = len(self.reward)
        for name, v in values.items():
            col = self.cols.setdefault(name, [])
            col.extend([None] * (k - len(col)))
            col.append(v)
        self.reward.append(0.0)
        self.disc.append(1.0)
        self.open[row] = k

    def reward_step(self, slot: int, r: float, gamma: float) -> None:
        k = self.open[slot]
        if k >= 0:
            self.reward[k] += self.disc[k] * r
            self.disc[k] *= gamma

    def close(self, slot: int, **values: Any) -> None:
        """Close the open macro-action of ``slot`` (if any) with its end-of-action fields."""
        k = self.open[slot]
        if k < 0:
            return
        for name, v in values.items():
            col = self.cols.setdefault(name, [])
            col.extend([None] * (k + 1 - len(col)))
            col[k] = v
        self.open[slot] = -1

    def arrays(self, order: list[str]) -> dict[str, np.ndarray]:
        n = len(self.reward)
        if any(k >= 0 for k in self.open):
            raise RuntimeError("a macro-action is still open")
        out = {"reward": np.asarray(self.reward, np.float64), "discount": np.asarray(self.disc, np.float64)}
        for name in order:
            col = self.cols.get(name, [])
            col.extend([None] * (n - len(col)))
            if any(v is None for v in col):
                raise RuntimeError(f"field {name} is missing for some samples")
            out[name] = np.asarray(col) if n else np.zeros(0)
        return out


@dataclass
class Rollout:
    """What one ``collect`` gathered: per MAPPO agent a dict of arrays (one row per decision, in time order per env
    slot: ``slot``, ``state``, ``next_state``, observations, ``action``, ``log_prob``, ``reward``, ``discount``,
    ``terminated``, ``last``), the Risk agent's transitions, and episode statistics."""

    agents: dict[str, dict[str, np.ndarray]]
    risk: dict[str, np.ndarray]
    steps: int
    episodes: list[dict[str, float]] = field(default_factory=list)
    actions: dict[str, np.ndarray] = field(default_factory=dict)  # counts per action, for TensorBoard
    n_envs: int = 1
    hub_log: list[Publication] = field(default_factory=list)  # every publication, in order (``src``: sample rows)
    regime_messages: np.ndarray | None = None  # (n, M) the frozen Regime network's, ``hub_log``'s regime ``src``


_PPO_FIELDS = {
    "structure": ["slot", "bar", "state", "next_state", "matrix", "mask", "messages", "visible", "memory", "action",
                  "log_prob", "terminated", "last"],
    "tactical": ["slot", "bar", "state", "next_state", "matrix", "mask", "action_mask", "messages", "visible",
                 "memory", "action", "log_prob", "terminated", "last"],
}
RISK_FIELDS = ("proposal", "account", "messages", "visible", "memory", "action", "next_proposal", "next_account",
               "next_messages", "next_visible", "next_memory", "terminated", "last")


def _read_row(read: HubRead, j: int) -> dict[str, np.ndarray]:
    return {"messages": read.messages[j], "visible": read.visible[j], "memory": read.memory[j]}


class Runner:
    """:param controller: acting for ``len(envs)`` rows (``explore=True``)
    :param envs: one four-agent env per row
    :param gamma: discount per M1 step
    :param rng: the trainer's generator (epsilon-greedy draws)
    :param regime_caches: per env, the frozen Regime network's outputs (``training.four_agent_env.RegimeCache``),
        or None to run the network
    """

    def __init__(self, controller: Controller, envs: list[FourAgentEnvLike], gamma: float, rng: np.random.Generator,
                 regime_caches: list | None = None) -> None:
        if controller.batch != len(envs) or not controller.explore:
            raise ValueError("the runner needs an exploring controller with one row per env")
        self.ctl, self.envs, self.gamma, self.rng, self.caches = controller, envs, gamma, rng, regime_caches

    def _risk_now(self, slot: int) -> dict[str, np.ndarray]:
        """The Risk agent's observation at the slot's current bar without acting (a cut's bootstrap state)."""
        env = self.envs[slot]
        read = self.ctl.read("risk", np.array([slot]))
        return {"next_proposal": env.risk_now(), "next_account": env.account_features(),
                **{f"next_{k}": v for k, v in _read_row(read, 0).items()}}

    def collect(self, steps: int, epsilon: float, risk_default: int | None = None) -> Rollout:
        """``steps`` M1 steps in every env, each reset first; Risk acts epsilon-greedy (``risk_default`` in place of
        the greedy action during a warm-up)."""
        envs, ctl, g = self.envs, self.ctl, self.gamma
        B = len(envs)
        seqs = {a: _Seq(B) for a in PPO_AGENTS}
        risk = _Seq(B)
        episodes: list[dict[str, float]] = []
        counts = {"tactical": np.zeros(len(TACTICAL_ACTIONS), np.int64), "risk": np.zeros(len(RISK_ACTIONS),
                                                                                           np.int64)}
        ep_reward = [0.0] * B
        for e in envs:
            e.reset()
        ctl.reset()
        slots = np.arange(B)
        hub_log: list[Publication] = []
        regime_messages: list[np.ndarray] = []
        n_regime = 0
        for t in range(steps):
            dues = [e.due() for e in envs]
            mats = [e.matrices() for e in envs]
            # the global state where a MAPPO agent decides (its sample's state, the previous one's next state)
            states = [e.state() if ("structure" in d or "tactical" in d) else None for e, d in zip(envs, dues,
                                                                                                  strict=True)]
            kw: list[dict[str, Any]] = [{} for _ in range(B)]
            # --- the upper agents, in the hub's order, each batched over the envs where it is due
            rows = slots[[("regime" in d) for d in dues]]
            if len(rows):
                if self.caches is not None:
                    got = [self.caches[b].at(int(envs[b].mm.m30_pos[envs[b].i])) for b in rows]
                    acted = ctl.regime_cached(rows, np.stack([p for p, _ in got]), np.stack([m for _, m in got]))
                else:
                    acted = ctl.regime(rows, np.stack([mats[b].regime for b in rows]),
                                       np.stack([mats[b].regime_mask for b in rows]))
                for j, b in enumerate(rows):
                    kw[b]["regime"] = acted.action[j]
                regime_messages.append(acted.message)
                hub_log.append(Publication("regime", rows, np.arange(n_regime, n_regime + len(rows))))
                n_regime += len(rows)
            for agent in PPO_AGENTS:
                rows = slots[[(agent in d) for d in dues]]
                if not len(rows):
                    continue
                mx = np.stack([getattr(mats[b], agent) for b in rows])
                mk = np.stack([getattr(mats[b], f"{agent}_mask") for b in rows])
                if agent == "structure":
                    acted = ctl.structure(rows, mx, mk)
                    am = None
                else:
                    am = np.stack([envs[b].action_mask() for b in rows])
                    acted = ctl.tactical(rows, mx, mk, am)
                    np.add.at(counts["tactical"], acted.action, 1)
                seq = seqs[agent]
                hub_log.append(Publication(agent, rows, np.arange(len(seq.reward), len(seq.reward) + len(rows))))
                for j, b in enumerate(rows):
                    seq.close(b, next_state=states[b], terminated=False, last=False)
                    extra = {"action_mask": am[j]} if am is not None else {}
                    seq.add(b, slot=b, bar=envs[b].i, state=states[b], matrix=mx[j], mask=mk[j],
                            action=acted.action[j], log_prob=acted.log_prob[j], **_read_row(acted.read, j), **extra)
                    kw[b][agent] = acted.action[j]
            props = [envs[b].act(**kw[b]) for b in range(B)]
            # --- the Risk agent, on this bar's proposal
            rows = slots[[p.risk_due for p in props]]
            risk_act = [None] * B
            if len(rows):
                prop = np.stack([envs[b].risk_features() for b in rows])
                acc = np.stack([envs[b].account_features() for b in rows])
                acted = ctl.risk(rows, prop, acc, epsilon, self.rng, risk_default)
                np.add.at(counts["risk"], acted.action, 1)
                hub_log.append(Publication("risk", rows, np.arange(len(risk.reward), len(risk.reward) + len(rows))))
                for j, b in enumerate(rows):
                    obs = {"proposal": prop[j], "account": acc[j], **_read_row(acted.read, j)}
                    risk.close(b, terminated=False, last=False, **{f"next_{k}": v for k, v in obs.items()})
                    risk.add(b, action=int(acted.action[j]), **obs)
                    risk_act[b] = int(acted.action[j])
            # --- one M1 bar in every env; the reward joins every open macro-action of its env
            for b, e in enumerate(envs):
                r, term, trunc, info = e.step(risk_act[b])
                ep_reward[b] += r
                for seq in (*seqs.values(), risk):
                    seq.reward_step(b, r, g)
                if term or trunc:
                    self._end_episode(b, seqs, risk, term, ep_reward[b], episodes)
                    ep_reward[b] = 0.0
                    if t < steps - 1:
                        e.reset()
                        ctl.reset(np.array([b]))
                        hub_log.append(Publication(None, np.array([b]), np.zeros(0, np.int64)))
        for b in range(B):  # the rollout's cut: a truncation, bootstrapped from the state reached
            if any(s.open[b] >= 0 for s in (*seqs.values(), risk)):
                self._end_episode(b, seqs, risk, False, None, episodes)
        agents = {a: seqs[a].arrays(_PPO_FIELDS[a]) for a in PPO_AGENTS}
        msgs = (np.concatenate(regime_messages).astype(np.float32) if regime_messages
                else np.zeros((0, ctl.nets.hub.message_dim), np.float32))
        return Rollout(agents, risk.arrays(list(RISK_FIELDS)), steps * B, episodes, counts, B, hub_log, msgs)

    def _end_episode(self, b: int, seqs: dict[str, _Seq], risk: _Seq, terminated: bool, reward: float | None,
                     episodes: list[dict[str, float]]) -> None:
        env = self.envs[b]
        state = env.state()
        for seq in seqs.values():
            seq.close(b, next_state=state, terminated=terminated, last=True)
        if risk.open[b] >= 0:
            risk.close(b, terminated=terminated, last=True, **self._risk_now(b))
        if reward is not None:  # a finished episode (not the rollout's cut of one restarted after a breach)
            episodes.append({"reward": reward, **env.episode_stats()})
