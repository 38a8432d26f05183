"""Seed ensembles of MTF-MARL checkpoints (agents.mtf_marl.ensemble): the mean action of the members, one checkpoint
folder every loader takes, and refusal of members that were not trained alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.common.observations import H4_OBS_DIM, M1_OBS_DIM
from agents.mtf_marl.checkpoint import load_mtf_marl_actors
from agents.mtf_marl.ensemble import MeanActor, write_ensemble
from feeds.paths import REPO_ROOT

COMMITTED = REPO_ROOT / "checkpoints" / "mtf_marl_eurusd"


def _perturbed(src: Path, dst: Path, seed: int, **manifest_changes) -> Path:
    """A copy of ``src`` with every actor weight moved by N(0, 0.1) noise (and manifest fields changed)."""
    tensors, man = load_checkpoint(src)
    g = torch.Generator().manual_seed(seed)
    for name in ("h4_actor", "m1_actor"):
        tensors[name] = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in tensors[name].items()}
    man = {k: v for k, v in man.items() if k not in ("format", "versions")} | {"seed": seed} | manifest_changes
    return save_checkpoint(dst, tensors, man)


def test_an_ensemble_acts_as_the_mean_of_its_members(tmp_path: Path) -> None:
    members = [COMMITTED, _perturbed(COMMITTED, tmp_path / "b", 1), _perturbed(COMMITTED, tmp_path / "c", 2)]
    ens = write_ensemble(members, tmp_path / "ens", seeds=[0, 1, 2], note="test")
    h4, m1, man = load_mtf_marl_actors(ens)
    assert isinstance(h4, MeanActor) and len(h4.members) == 3
    assert man["ensemble"]["members"] == 3 and man["ensemble"]["seeds"] == [0, 1, 2]
    assert man["env_config"] == json.loads((COMMITTED / "manifest.json").read_text())["env_config"]
    singles = [load_mtf_marl_actors(p)[:2] for p in members]
    rng = np.random.default_rng(0)
    for _ in range(20):
        o4, o1 = rng.normal(size=H4_OBS_DIM), rng.normal(size=M1_OBS_DIM)
        want4 = sum(a(o4) for a, _ in singles) / 3  # loaded one by one: an independent path to the same mean
        want1 = sum(b(o1) for _, b in singles) / 3
        np.testing.assert_allclose(h4(o4), want4, rtol=0, atol=1e-12)
        np.testing.assert_allclose(m1(o1), want1, rtol=0, atol=1e-12)
    # the members differ, so the mean is not any one of them
    o4 = rng.normal(size=H4_OBS_DIM)
    assert min(np.abs(h4(o4) - a(o4)).max() for a, _ in singles) > 1e-3
    # the ensemble stores actors only: no critic to resume from
    assert not any(k.startswith("critic") for k in load_checkpoint(ens)[0])


def test_members_trained_differently_are_refused(tmp_path: Path) -> None:
    man = json.loads((COMMITTED / "manifest.json").read_text())
    other_costs = _perturbed(COMMITTED, tmp_path / "b", 1,
                             env_config=man["env_config"] | {"exec_minutes": 5})
    with pytest.raises(CheckpointError, match="env_config"):
        write_ensemble([COMMITTED, other_costs], tmp_path / "ens")
    other_symbol = _perturbed(COMMITTED, tmp_path / "c", 2, symbol="GBPUSD")
    with pytest.raises(CheckpointError, match="symbol"):
        write_ensemble([COMMITTED, other_symbol], tmp_path / "ens")
    more_data = _perturbed(COMMITTED, tmp_path / "d", 3, args=man["args"] | {"extra_symbols": ["GBPUSD"]})
    with pytest.raises(CheckpointError, match="args.extra_symbols"):
        write_ensemble([COMMITTED, more_data], tmp_path / "ens")
    ens = write_ensemble([COMMITTED], tmp_path / "one")
    with pytest.raises(CheckpointError, match="ensemble already"):
        write_ensemble([ens, COMMITTED], tmp_path / "nested")
    with pytest.raises(ValueError, match="at least one"):
        write_ensemble([], tmp_path / "none")
