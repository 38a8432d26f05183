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


def load_checkpoint(path: Path, feature_spec: dict[str, Any] | None = None,
                    algorithm: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load (tensors, manifest); refuse a checkpoint for another algorithm or another feature spec."""
    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / MANIFEST).is_file():
        raise CheckpointError(f"no checkpoint at {path}: expected {WEIGHTS} and {MANIFEST}")
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
    try:
        tensors = torch.load(path / WEIGHTS, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{path / WEIGHTS}: cannot load with weights_only=True: {e}") from e
    return tensors, manifest
