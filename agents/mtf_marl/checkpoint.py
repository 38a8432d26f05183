"""Loading an MTF-MARL checkpoint (``training.train_mtf_marl``) for acting: its manifest checked, its two actors."""

from __future__ import annotations

from pathlib import Path

from agents.common.checkpoint import CheckpointError, load_checkpoint, read_manifest
from agents.common.networks import Actor, NumpyActor
from agents.common.observations import obs_dims
from agents.mtf_marl.ensemble import MeanActor, ensemble_tensors
from features.context import H4_SPEC
from features.engine import DEFAULT_SPEC
from features.market import DEFAULT_MARKET_SPEC


def mtf_marl_manifest(path: Path) -> dict:
    """The manifest of an MTF-MARL checkpoint, refused (before any weights load) if its feature specs or
    observation sizes are not this code's."""
    man = read_manifest(path, DEFAULT_SPEC.to_dict(), "mtf_marl")
    if man.get("h4_feature_spec") != H4_SPEC.to_dict():
        raise CheckpointError(f"{path} was trained on another H4 feature spec; retrain it")
    market = uses_market(man)
    if market and man.get("market_spec") != DEFAULT_MARKET_SPEC.to_dict():
        raise CheckpointError(f"{path} was trained on another market block (features/market.py); retrain it")
    obs, d = man["obs"], obs_dims(market)
    if (obs["h4"], obs["m1"]) != (d.h4, d.m1):
        raise CheckpointError(f"{path} expects observations of {obs['h4']}/{obs['m1']} values, "
                              f"this code builds {d.h4}/{d.m1}")
    return man


def uses_market(manifest: dict) -> bool:
    """Whether a checkpoint's observations end with the market block (``features.market``)."""
    return bool(manifest["env_config"].get("market_features", False))


def _numpy_actor(state: dict, dim: int, hidden: tuple[int, ...]) -> NumpyActor:
    a = Actor(dim, 2, hidden)
    a.load_state_dict(state)
    return NumpyActor(a)


def load_mtf_marl_actors(path: Path) -> tuple[NumpyActor | MeanActor, NumpyActor | MeanActor, dict]:
    """The two actors of an MTF-MARL checkpoint (refused if its feature spec is not ours); of a seed ensemble
    (``agents.mtf_marl.ensemble``), the members' mean actors."""
    man = mtf_marl_manifest(path)
    tensors, _ = load_checkpoint(path)
    hidden = tuple(man["learner_config"]["hidden"])
    d = obs_dims(uses_market(man))
    if "ensemble" in man:
        pairs = ensemble_tensors(tensors, man)
        return (MeanActor([_numpy_actor(h, d.h4, hidden) for h, _ in pairs]),
                MeanActor([_numpy_actor(m, d.m1, hidden) for _, m in pairs]), man)
    return (_numpy_actor(tensors["h4_actor"], d.h4, hidden), _numpy_actor(tensors["m1_actor"], d.m1, hidden), man)
