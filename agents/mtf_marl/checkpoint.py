"""Loading an MTF-MARL checkpoint (``training.train_mtf_marl``) for acting: its manifest checked, its two actors."""

from __future__ import annotations

from pathlib import Path

from agents.common.checkpoint import CheckpointError, load_checkpoint, read_manifest
from agents.common.networks import Actor, NumpyActor
from agents.common.observations import H4_OBS_DIM, M1_OBS_DIM
from agents.mtf_marl.ensemble import MeanActor, ensemble_tensors
from features.context import H4_SPEC
from features.engine import DEFAULT_SPEC


def mtf_marl_manifest(path: Path) -> dict:
    """The manifest of an MTF-MARL checkpoint, refused (before any weights load) if its feature specs or
    observation sizes are not this code's."""
    man = read_manifest(path, DEFAULT_SPEC.to_dict(), "mtf_marl")
    if man.get("h4_feature_spec") != H4_SPEC.to_dict():
        raise CheckpointError(f"{path} was trained on another H4 feature spec; retrain it")
    obs = man["obs"]
    if (obs["h4"], obs["m1"]) != (H4_OBS_DIM, M1_OBS_DIM):
        raise CheckpointError(f"{path} expects observations of {obs['h4']}/{obs['m1']} values, "
                              f"this code builds {H4_OBS_DIM}/{M1_OBS_DIM}")
    return man


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
    if "ensemble" in man:
        pairs = ensemble_tensors(tensors, man)
        return (MeanActor([_numpy_actor(h, H4_OBS_DIM, hidden) for h, _ in pairs]),
                MeanActor([_numpy_actor(m, M1_OBS_DIM, hidden) for _, m in pairs]), man)
    return (_numpy_actor(tensors["h4_actor"], H4_OBS_DIM, hidden),
            _numpy_actor(tensors["m1_actor"], M1_OBS_DIM, hidden), man)
