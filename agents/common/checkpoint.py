"""Checkpoint I/O: tensors in ``weights.pt`` (loaded with ``weights_only=True``) plus ``manifest.json``.

The manifest records what the weights mean: feature spec, observation sizes, symbol, data periods,
configs, seed and library versions. A checkpoint whose feature spec differs from the one the caller will
feed is refused, because the same numbers would then mean something else. Each algorithm's folder has the loader
that turns its checkpoint into acting networks (``agents.mtf_marl.checkpoint``, ``agents.td3.checkpoint``,
``agents.four_agent.checkpoint``): there, not in ``strategies``, so that training-side tools and the Backtrader
strategies load a checkpoint the same way without importing each other.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
