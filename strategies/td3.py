"""The single-agent TD3 baseline (``training.train_td3``) as a Backtrader strategy: one actor on the shared
state acts on every M1 bar through the same observations, action mapping, validator and broker core as
``training.env.ForexEnv``, so a checkpoint acts here exactly as it did in training."""

from __future__ import annotations

from pathlib import Path

from agents.checkpoint import CheckpointError, load_checkpoint
from agents.networks import Actor, NumpyActor
from agents.observations import STATE_DIM
from features.engine import DEFAULT_SPEC
from feeds.paths import REPO_ROOT
from risk.actions import single_target
from strategies.base import AgentStrategy

DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "td3_eurusd"


def load_actor(path: Path) -> tuple[NumpyActor, dict]:
    """The actor of a TD3 checkpoint (refused if its feature spec or observation size is not ours).

    The checkpoint holds SB3's ``policy.actor.mu`` (Linear, ReLU, ..., Linear, Tanh): the same layer layout
    and state-dict keys as ``agents.networks.Actor.net``, so it loads into an ``Actor`` without SB3."""
    tensors, man = load_checkpoint(path, DEFAULT_SPEC.to_dict(), "td3")
    if man["obs"]["state"] != STATE_DIM:
        raise CheckpointError(f"{path} expects observations of {man['obs']['state']} values, "
                              f"this code builds {STATE_DIM}")
    actor = Actor(STATE_DIM, 2, tuple(man["net_arch"]))
    actor.net.load_state_dict(tensors["actor"])
    return NumpyActor(actor), man


class Td3Agent(AgentStrategy):
    """:param checkpoint: folder with ``weights.pt`` + ``manifest.json`` (default: checkpoints/td3_eurusd)"""

    default_checkpoint = DEFAULT_CHECKPOINT

    def load(self, path: Path) -> dict:
        self.actor, manifest = load_actor(path)
        return manifest

    def decide(self, i: int, sim) -> None:
        a = self.actor(self.obs.shared(i, sim, sim.guard))
        self.trade_to(single_target(float(a[0]), float(a[1]), self.obs.max_lots, self.inst, current=sim.lots), i)
