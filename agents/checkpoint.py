"""Checkpoint I/O: tensors in ``weights.pt`` (loaded with ``weights_only=True``) plus ``manifest.json``.

The manifest records what the weights mean: feature spec, observation sizes, symbol, data periods,
configs, seed and library versions. A checkpoint whose feature spec differs from the one the caller will
feed is refused, because the same numbers would then mean something else.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.networks import Actor, NumpyActor
from agents.observations import H4_OBS_DIM, M1_OBS_DIM, STATE_DIM
from features.context import H4_SPEC
from features.engine import DEFAULT_SPEC

WEIGHTS, MANIFEST = "weights.pt", "manifest.json"
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or incompatible with the caller."""


def versions() -> dict[str, str]:
    import gymnasium
    import stable_baselines3

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "gymnasium": gymnasium.__version__, "stable_baselines3": stable_baselines3.__version__}


def save_checkpoint(path: Path, tensors: dict[str, Any], manifest: dict[str, Any]) -> Path:
    """Write ``tensors`` (state dicts and tensors; nothing that needs pickled classes) and the manifest."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(tensors, path / WEIGHTS)
    man = {"format": FORMAT, **manifest, "versions": versions()}
    (path / MANIFEST).write_text(json.dumps(man, indent=2, default=str) + "\n")
    return path


def read_manifest(path: Path, feature_spec: dict[str, Any] | None = None,
                  algorithm: str | None = None) -> dict[str, Any]:
    """The manifest of the checkpoint at ``path``, after every check that needs no weights (so a CLI can refuse
    a wrong checkpoint before it loads any data): the files exist, the format, the algorithm, the feature spec."""
    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / MANIFEST).is_file():
        inside = [d.name for d in (path / "best", path / "last") if (d / MANIFEST).is_file()]
        hint = f"; it is a training output folder: use {' or '.join(str(path / d) for d in inside)}" if inside \
            else ""
        raise CheckpointError(f"no checkpoint at {path}: expected {WEIGHTS} and {MANIFEST}{hint}")
    manifest = json.loads((path / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {manifest.get('format')} is not {FORMAT}")
    if algorithm is not None and manifest.get("algorithm") != algorithm:
        raise CheckpointError(f"{path} holds a {manifest.get('algorithm')!r} checkpoint, not {algorithm!r}")
    if feature_spec is not None:
        theirs = manifest.get("feature_spec", {})
        diff = sorted(k for k in set(theirs) | set(feature_spec) if theirs.get(k) != feature_spec.get(k))
        if diff:
            detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs now {feature_spec.get(k)!r}" for k in diff[:5])
            raise CheckpointError(f"{path} was trained on another feature spec ({detail}); retrain or use the "
                                  "matching code version")
    return manifest


def load_checkpoint(path: Path, feature_spec: dict[str, Any] | None = None,
                    algorithm: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load (tensors, manifest); refuse a checkpoint for another algorithm or another feature spec."""
    path = Path(path)
    manifest = read_manifest(path, feature_spec, algorithm)
    try:
        tensors = torch.load(path / WEIGHTS, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{path / WEIGHTS}: cannot load with weights_only=True: {e}") from e
    return tensors, manifest


def check_symbol(manifest: dict[str, Any], symbol: str, allow_mismatch: bool, path: Path) -> str | None:
    """Refuse a checkpoint trained on another symbol unless ``allow_mismatch``; then return that symbol (the run
    must say it), else None. Observations are scale-free, but costs, volatility and behaviour differ."""
    trained_on = manifest.get("symbol")
    if trained_on == symbol:
        return None
    if not allow_mismatch:
        raise CheckpointError(f"{path} was trained on {trained_on}, not {symbol}: pass --allow-symbol-mismatch "
                              "(allow_symbol_mismatch=True) to trade it on another instrument")
    return str(trained_on)


# ------------------------------------------------------------------ actors of the two trainers' checkpoints
# Here, not in ``strategies``, so that training-side tools (the ablation's test-period evaluation) and the
# Backtrader strategies load a checkpoint the same way without importing each other.

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


def load_mtf_marl_actors(path: Path) -> tuple[NumpyActor, NumpyActor, dict]:
    """The two actors of an MTF-MARL checkpoint (refused if its feature spec is not ours)."""
    man = mtf_marl_manifest(path)
    tensors, _ = load_checkpoint(path)
    hidden = tuple(man["learner_config"]["hidden"])
    actors = []
    for name, dim in (("h4_actor", H4_OBS_DIM), ("m1_actor", M1_OBS_DIM)):
        a = Actor(dim, 2, hidden)
        a.load_state_dict(tensors[name])
        actors.append(NumpyActor(a))
    return actors[0], actors[1], man


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
    and state-dict keys as ``agents.networks.Actor.net``, so it loads into an ``Actor`` without SB3."""
    man = td3_manifest(path)
    tensors, _ = load_checkpoint(path)
    actor = Actor(STATE_DIM, 2, tuple(man["net_arch"]))
    actor.net.load_state_dict(tensors["actor"])
    return NumpyActor(actor), man


# ------------------------------------------------------------------ the four-agent system's checkpoints
def four_agent_manifest(path: Path) -> dict:
    """The manifest of a four-agent checkpoint (``training.train_four_agent``), refused (before any weights load)
    if its feature specs or matrix spec (columns, lengths, the M5 / M30 engine specs) are not this code's."""
    from features.matrices import DEFAULT_MATRIX_SPEC

    man = read_manifest(path, DEFAULT_SPEC.to_dict(), "four_agent")
    if man.get("h4_feature_spec") != H4_SPEC.to_dict():
        raise CheckpointError(f"{path} was trained on another H4 feature spec; retrain it")
    theirs, ours = man.get("matrix_spec", {}), DEFAULT_MATRIX_SPEC.to_dict()
    if theirs != ours:
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise CheckpointError(f"{path} was trained on other four-agent matrices (differs in {', '.join(diff[:5])}); "
                              "retrain it")
    return man


def load_four_agent(path: Path):
    """The four networks and hub of a four-agent checkpoint, in eval mode, and its manifest (refused if its specs
    are not this code's)."""
    from agents.four_agent.config import FourAgentConfig
    from agents.four_agent.networks import FourAgentNetworks

    man = four_agent_manifest(path)
    tensors, _ = load_checkpoint(path)
    nets = FourAgentNetworks(FourAgentConfig.from_dict(man["config"]))
    try:
        nets.load_state_dict(tensors["networks"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the weights do not fit the {man.get('preset')!r} networks: {e}") from e
    return nets.eval(), man
