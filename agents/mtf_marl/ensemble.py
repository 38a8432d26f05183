"""Seed ensembles of MTF-MARL checkpoints: K independently trained seeds acting as one model (issue 15, item 6).

The ensemble's action is the *mean action* of its members, for each agent separately: the director's
``[trend_bias, limit]`` is the mean of the K directors' actions, and every member's executor then sees that mean
decision (the ensemble's, which is the one in force) and the ensemble's executor action is the mean of theirs. Mean
actions, not mean targets: the mapping to a target (``risk.actions``) is applied once, to the mean, so the ensemble
obeys the same clamp, band and validator as any single checkpoint.

An ensemble is one checkpoint folder in the usual format (``agents.common.checkpoint``): ``weights.pt`` holds the
members' actors as ``h4_actor/<k>`` and ``m1_actor/<k>`` (critics are dropped: nothing acts with them), and
``manifest.json`` is the first member's with ``ensemble`` = {members, seeds, sources, rule} added. Members must share
the feature specs, observation sizes, learner config (the actors' sizes), env config (costs, action mode, cadence),
symbol and training data (periods, extra symbols), or ``write_ensemble`` refuses them: their mean would mix two
meanings of the same numbers.
``agents.mtf_marl.checkpoint.load_mtf_marl_actors`` reads both kinds, so the strategy, the envs' evaluation and the
walk-forward take an ensemble wherever they take a checkpoint (``benchmarks/bench_latency.py`` times one member's
torch actors and does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

SHARED = ("algorithm", "feature_spec", "h4_feature_spec", "obs", "learner_config", "env_config", "symbol",
          "history_days", "train_period", "val_period", "market_spec")
"""manifest fields every member must agree on"""


def _extra_symbols(man: dict[str, Any]) -> list[str]:
    """The training data beyond the periods (``train_mtf_marl --extra-symbols``; absent in older manifests)."""
    return list(man.get("args", {}).get("extra_symbols", []))


class MeanActor:
    """The mean of several actors' actions (each maps an observation to an action in [-1, 1]^2)."""

    def __init__(self, members: Sequence) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.mean([m(obs) for m in self.members], axis=0)


def write_ensemble(members: Sequence[Path], dst: Path, seeds: Sequence[int] | None = None,
                   note: str = "") -> Path:
    """One ensemble checkpoint at ``dst`` from member checkpoints (each a ``best`` or ``last`` folder)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    tensors: dict[str, Any] = {}
    mans = []
    for k, path in enumerate(members):
        t, man = load_checkpoint(Path(path), algorithm="mtf_marl")
        if "ensemble" in man:
            raise CheckpointError(f"{path} is an ensemble already; give its members")
        mans.append(man)
        tensors[f"h4_actor/{k}"], tensors[f"m1_actor/{k}"] = t["h4_actor"], t["m1_actor"]
    for k, man in enumerate(mans[1:], start=1):
        diff = [f for f in SHARED if man.get(f) != mans[0].get(f)]
        diff += ["args.extra_symbols"] if _extra_symbols(man) != _extra_symbols(mans[0]) else []
        if diff:
            raise CheckpointError(f"{members[k]} differs from {members[0]} in {', '.join(diff)}: members of an "
                                  "ensemble must be trained alike")
    seeds = list(seeds) if seeds is not None else [m.get("seed") for m in mans]
    manifest = {k: v for k, v in mans[0].items() if k not in ("format", "versions")}
    manifest |= {"seed": seeds, "step": [m.get("step") for m in mans],
                 "validation": [m.get("validation") for m in mans],
                 "ensemble": {"members": len(mans), "seeds": seeds, "rule": "mean action per agent",
                              "sources": [str(p) for p in members], "note": note}}
    return save_checkpoint(dst, tensors, manifest)


def ensemble_tensors(tensors: dict[str, Any], manifest: dict[str, Any]) -> list[tuple[Any, Any]]:
    """[(h4 state dict, m1 state dict)] per member of an ensemble checkpoint's tensors."""
    k = int(manifest["ensemble"]["members"])
    missing = [n for i in range(k) for n in (f"h4_actor/{i}", f"m1_actor/{i}") if n not in tensors]
    if missing:
        raise CheckpointError(f"ensemble checkpoint lacks {', '.join(missing[:4])}")
    return [(tensors[f"h4_actor/{i}"], tensors[f"m1_actor/{i}"]) for i in range(k)]
