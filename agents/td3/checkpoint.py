"""Loading a TD3 baseline checkpoint (``training.train_td3``, stable-baselines3's TD3) for acting, without SB3."""

from __future__ import annotations

from pathlib import Path

from agents.common.checkpoint import CheckpointError, load_checkpoint, read_manifest
from agents.common.networks import Actor, NumpyActor
from agents.common.observations import STATE_DIM
from features.engine import DEFAULT_SPEC


def td3_manifest(path: Path) -> dict:
    """The manifest of a TD3 checkpoint, refused (before any weights load) if its feature spec or observation
    size is not this code's."""
    man = read_manifest(path, DEFAULT_SPEC.to_dict(), "td3")
    if man["obs"]["state"] != STATE_DIM:
        raise CheckpointError(f"{path} expects observations of {man['obs']['state']} values, "
                              f"this code builds {STATE_DIM}")
    return man


def load_td3_actor(path: Path) -> tuple[NumpyActor, dict]:
    """The actor of a TD3 checkpoint (refused if its feature spec or observation size is not ours).

    The checkpoint holds SB3's ``policy.actor.mu`` (Linear, ReLU, ..., Linear, Tanh): the same layer layout
    and state-dict keys as ``agents.common.networks.Actor.net``, so it loads into an ``Actor`` without SB3."""
    man = td3_manifest(path)
    tensors, _ = load_checkpoint(path)
    actor = Actor(STATE_DIM, 2, tuple(man["net_arch"]))
    actor.net.load_state_dict(tensors["actor"])
    return NumpyActor(actor), man
