"""The MTF-MARL agents as a Backtrader strategy: the H4 director decides on each completed H4 bar, the M1
executor on every M1 bar, through the same observations, action mapping, validator and broker core as the
training env (``training.hier_env``), so a checkpoint acts here exactly as it did in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.checkpoint import CheckpointError, load_checkpoint
from agents.mtf_marl import h4_changes
from agents.networks import Actor, NumpyActor
from agents.observations import H4_OBS_DIM, M1_OBS_DIM
from features.context import H4_SPEC
from features.engine import DEFAULT_SPEC
from feeds.paths import REPO_ROOT
from risk.actions import joint_target, unit_interval
from strategies.base import AgentStrategy

DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "mtf_marl_eurusd"


def load_actors(path: Path) -> tuple[NumpyActor, NumpyActor, dict]:
    """The two actors of an MTF-MARL checkpoint (refused if its feature spec is not ours)."""
    tensors, man = load_checkpoint(path, DEFAULT_SPEC.to_dict(), "mtf_marl")
    if man.get("h4_feature_spec") != H4_SPEC.to_dict():
        raise CheckpointError(f"{path} was trained on another H4 feature spec; retrain it")
    obs = man["obs"]
    if (obs["h4"], obs["m1"]) != (H4_OBS_DIM, M1_OBS_DIM):
        raise CheckpointError(f"{path} expects observations of {obs['h4']}/{obs['m1']} values, "
                              f"this code builds {H4_OBS_DIM}/{M1_OBS_DIM}")
    hidden = tuple(man["learner_config"]["hidden"])
    actors = []
    for name, dim in (("h4_actor", H4_OBS_DIM), ("m1_actor", M1_OBS_DIM)):
        a = Actor(dim, 2, hidden)
        a.load_state_dict(tensors[name])
        actors.append(NumpyActor(a))
    return actors[0], actors[1], man


class MtfMarl(AgentStrategy):
    """:param checkpoint: folder with ``weights.pt`` + ``manifest.json`` (default: the committed one)"""

    default_checkpoint = DEFAULT_CHECKPOINT

    def load(self, path: Path) -> dict:
        self.h4_actor, self.m1_actor, manifest = load_actors(path)
        self.h4_pos = self.ctx.h4_pos.tolist()
        self.a_h4: np.ndarray | None = None
        self.limit = self.bias = 0.0
        self.decisions: list[tuple[int, float, float]] = []  # (bar, limit, bias) at each H4 decision
        self.entries: list[tuple[int, float, float]] = []  # (bar, target fraction, limit) at each M1 decision
        self.attempted_violations = self.violations = 0
        return manifest

    def decide(self, i: int, sim) -> None:
        if self.a_h4 is None or self.h4_pos[i] != self.h4_pos[i - 1]:  # an H4 bar completed: the director acts
            self.a_h4 = self.h4_actor(self.obs.h4(i, sim, sim.guard))
            self.bias = max(-1.0, min(1.0, float(self.a_h4[0])))
            self.limit = unit_interval(float(self.a_h4[1]))
            self.decisions.append((i, self.limit, self.bias))
        a_m1 = self.m1_actor(self.obs.m1(i, sim, self.limit, self.bias))
        jt = joint_target((float(self.a_h4[0]), float(self.a_h4[1])), (float(a_m1[0]), float(a_m1[1])),
                          self.obs.max_lots, self.inst, current=sim.lots)
        self.attempted_violations += jt.violation
        self.violations += abs(jt.fraction) > jt.limit + 1e-9
        self.entries.append((i, jt.fraction, jt.limit))
        self.trade_to(jt.lots, i)

    def coordination(self) -> dict[str, float | int]:
        days = max(1, len(np.unique(self.ctx.index[[e[0] for e in self.entries]].normalize()))) if self.entries else 1
        changes = h4_changes([(lim, b) for _, lim, b in self.decisions])
        return {"h4_decisions": len(self.decisions), "h4_changes_per_day": changes / days,
                "m1_constraint_violations": int(self.violations),
                "m1_attempted_violations": int(self.attempted_violations)}
