"""training.ablation on Ray: each (variant, seed) run as a Ray task gives exactly the run trained alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.ray_fixtures import ray_session  # noqa: F401
from training import ablation, train_mtf_marl, train_td3

PLAN = dict(train_start="2024-01-01", train_end="2024-01-16", val_start="2024-01-17", val_end="2024-01-24",
            total_steps=600, learning_starts=300, eval_every=300)


def _same_run(a: Path, b: Path) -> None:
    sa, sb = (json.loads((p / "train_summary.json").read_text()) for p in (a, b))
    for k in ("steps", "updates", "episodes", "best_score", "history"):
        assert sa[k] == sb[k], k
    for which in ("best", "last"):
        ta, tb = (torch.load(p / which / "weights.pt", weights_only=True) for p in (a, b))
        flat_a, flat_b = _flatten(ta), _flatten(tb)
        assert flat_a.keys() == flat_b.keys()
        for k in flat_a:
            assert torch.equal(flat_a[k], flat_b[k]), (which, k)


def _flatten(d: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        elif torch.is_tensor(v):
            out[prefix + k] = v
    return out


@pytest.mark.xdist_group("ray")  # one xdist worker holds the Ray session
@pytest.mark.usefixtures("ray_session")
def test_ray_tasks_reproduce_the_runs_trained_alone(tmp_path: Path, fx_dir: Path) -> None:
    args = ablation.Args(**PLAN, seeds=(0,), variants=("mtf_marl_shared", "td3"), test_start="2024-01-25",
                         test_end="2024-01-31", runs=str(tmp_path / "runs"), out=str(tmp_path / "out"), workers=2)
    table = ablation.main(args)
    assert "mtf_marl_shared" in table.read_text() and "| td3 | 0 |" in table.read_text()
    common = PLAN | {"seed": 0}
    train_mtf_marl.main(train_mtf_marl.Args(**common, out=str(tmp_path / "alone_mtf"), progress=False))
    train_td3.main(train_td3.Args(**common, out=str(tmp_path / "alone_td3")))
    _same_run(tmp_path / "runs" / "mtf_marl_shared-s0", tmp_path / "alone_mtf")
    _same_run(tmp_path / "runs" / "td3-s0", tmp_path / "alone_td3")
