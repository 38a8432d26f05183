"""Regime labels (future windows only) and the supervised pretraining script: the rule on a hand-built path,
what a label and an input may read, a subprocess smoke run, determinism, the checkpoint round trip."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from agents.common.checkpoint import CheckpointError, load_checkpoint
from agents.four_agent.networks import load_regime_network
from features.matrices import m30_windows
from feeds.loaders import load_bars
from feeds.macro import MacroTable, load_macro
from feeds.paths import REPO_ROOT
from feeds.resample import htf_bars
from training.pretrain_regime import Args, load_period, main, period_samples, predict, scores
from training.regime_labels import (
    RANGING,
    TRANSITION,
    TRENDING,
    UNLABELLED,
    VOLATILE,
    LabelConfig,
    previous_label,
    regime_labels,
)

SMALL_CFG = LabelConfig(horizon=4, vol_lookback=6, vol_min_periods=3)
SMOKE = ["--train-start", "2024-01-02", "--train-end", "2024-03-08", "--val-start", "2024-03-11",
         "--val-end", "2024-04-12", "--epochs", "1", "--samples-per-epoch", "256", "--preset", "small", "--seed", "3"]


def _bars(close: np.ndarray, step_minutes: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """M30 bars opening at the previous close, with a small range around open and close."""
    n = len(close)
    steps = np.full(n, 30) if step_minutes is None else step_minutes
    t = (pd.Timestamp("2024-03-04", tz="UTC").value + np.cumsum(steps) * 60_000_000_000).astype(np.int64)
    o = np.r_[close[0], close[:-1]]
    return t, o, np.maximum(o, close) + 1e-6, np.minimum(o, close) - 1e-6, close


def _path() -> np.ndarray:
    flat = np.where(np.arange(20) % 2 == 0, 1.0, 1.0001)  # back and forth between two prices
    trend = 1.0001 + 1e-4 * np.arange(1, 9)  # bars 20..27: one way
    wild = 1.0009 + np.where(np.arange(12) % 2 == 0, 0.002, -0.002)  # bars 28..39: ten times the swings
    return np.r_[flat, trend, wild]


def test_label_rule_on_a_hand_built_path() -> None:
    lab = regime_labels(*_bars(_path()), SMALL_CFG)
    y = lab.labels
    # the first windows' volatility reference needs 3 windows that ended (s + 4 <= t): t >= 6
    assert (y[:6] == UNLABELLED).all() and np.isnan(lab.vol_ref[:6]).all() and np.isfinite(lab.z[:6]).all()
    # t = 6..15: windows inside the back-and-forth: net exactly 0, efficiency 0, the same rv as before -> ranging
    assert (y[6:16] == RANGING).all() and (lab.z[6:16] == 0).all() and (lab.efficiency[6:16] == 0).all()
    # t = 16: bars 17..20 are +a, -a, +a, then the first trend step: |net| ~ 2a, rv ~ 2a -> z ~ 1: transition
    assert y[16] == TRANSITION and 0.9 < lab.z[16] < 1.1
    # t = 19: bars 20..23 all up by ~1e-4: z = 4x / 2x = 2 >= 1.25, rv slightly below the reference -> trending
    assert y[19] == TRENDING and lab.z[19] == pytest.approx(2.0, abs=1e-3)
    assert lab.rv[19] < lab.vol_ref[19]
    # t = 28: bars 29..32 swing 0.4 %: rv far above the 80 % quantile of the windows ended by t -> volatile
    assert y[28] == VOLATILE and lab.rv[28] > 10 * lab.vol_ref[28]
    assert (y[36:] == UNLABELLED).all()  # no complete future window
    assert list(previous_label(y, 4)[:8]) == [UNLABELLED] * 4 + list(y[:4])


def test_a_window_across_a_data_stop_has_no_label() -> None:
    steps = np.full(40, 30)
    steps[11] = 180  # bar 11 opens three hours after bar 10
    y = regime_labels(*_bars(_path(), steps), SMALL_CFG).labels
    assert (y[7:10] == UNLABELLED).all()  # windows 8..11, 9..12, 10..13 contain the stop
    assert y[6] == RANGING and y[10] == RANGING  # 7..10 ends before it; 11..14 starts after it


def test_labels_read_only_the_future_window_and_inputs_only_the_past() -> None:
    rng = np.random.default_rng(5)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 4e-4, 3000)))
    t, o, h, lo, c = _bars(close)
    cfg = LabelConfig()
    base = regime_labels(t, o, h, lo, c, cfg)
    k = cfg.horizon
    for s in (1300, 2000, 2900):
        after = [a.copy() for a in (o, h, lo, c)]
        for a in after:
            a[s + k + 1:] *= 1.03  # everything after the window
        moved = regime_labels(t, *after, cfg)
        assert moved.labels[s] == base.labels[s] and moved.vol_ref[s] == base.vol_ref[s]
        before = [a.copy() for a in (o, h, lo, c)]
        for a in before:
            a[:s + 1] *= 0.97  # everything up to and including bar t
        moved2 = regime_labels(t, *before, cfg)
        for name in ("z", "efficiency", "rv"):  # the window's statistics: bars t+1..t+K only
            assert getattr(moved2, name)[s] == getattr(base, name)[s], name
        inside = [a.copy() for a in (o, h, lo, c)]
        inside[3][s + 2] *= 1.01  # one close inside the window does matter
        assert regime_labels(t, *inside, cfg).z[s] != base.z[s]


@pytest.fixture(scope="module")
def macro(macro_dir: Path) -> MacroTable:
    return MacroTable.from_frame(load_macro(macro_dir))


def test_pretraining_inputs_at_t_use_only_bars_up_to_t(fx_dir: Path, macro: MacroTable) -> None:
    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-01-02", end="2024-02-23")
    samples = period_samples(m1, macro, pd.Timestamp("2024-01-02", tz="UTC"), LabelConfig())
    m30 = htf_bars(m1, 30)
    for i in (0, len(samples) // 2, len(samples) - 1):
        row = int(np.searchsorted(m30.index.as_unit("ns").asi8, samples.times[i]))
        prefix = m1.iloc[:int(m30["complete_at"].iloc[row]) + 1]  # the M1 bars up to the one completing row t
        _, regime = m30_windows(htf_bars(prefix, 30), macro)
        assert regime.n_bars == row + 1
        x, y = samples.batch(np.array([i]))
        np.testing.assert_array_equal(x[0].numpy(), regime.window(row)[0])
        assert y[0] != UNLABELLED


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.pretrain_regime", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def smoke_run(fx_dir: Path, macro_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regime") / "run"
    p = _run(*SMOKE, "--data", str(fx_dir), "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "validation accuracy" in p.stdout
    return out


def test_smoke_run_writes_report_and_checkpoint(smoke_run: Path) -> None:
    report = (smoke_run / "regime_report.md").read_text()
    assert "| Regime network |" in report and "majority class" in report and "previous label" in report
    assert (smoke_run / "regime_confusion.png").stat().st_size > 10_000
    s = json.loads((smoke_run / "regime_summary.json").read_text())
    cm = np.array(s["confusion"])
    assert cm.shape == (4, 4) and cm.sum() == s["n_val"] > 500
    _, man = load_checkpoint(smoke_run / "checkpoint", algorithm="regime")
    assert man["preset"] == "small" and man["seed"] == 3 and man["matrix_spec"]["regime_columns"][-1] == \
        "yield_curve_change"
    assert man["train_period"] == ["2024-01-02", "2024-03-08"] and man["feature_spec"]["bar_minutes"] == 30


def test_checkpoint_round_trip_and_determinism(smoke_run: Path, fx_dir: Path, macro: MacroTable,
                                               tmp_path: Path) -> None:
    net, man = load_regime_network(smoke_run / "checkpoint")  # weights_only=True inside
    tensors = torch.load(smoke_run / "checkpoint" / "weights.pt", weights_only=True)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, tensors["regime"][k], rtol=0, atol=0)
    # the loaded network reproduces the reported validation accuracy
    args = Args(data=str(fx_dir))
    val = load_period(args, man["val_period"][0], man["val_period"][1], True, macro, LabelConfig())
    assert scores(val.labels, predict(net, val))["accuracy"] == man["validation"]["model"]["accuracy"]
    # same seed, same weights (in-process run of main with the smoke run's arguments)
    again = main(Args(train_start="2024-01-02", train_end="2024-03-08", val_start="2024-03-11", val_end="2024-04-12",
                      epochs=1, samples_per_epoch=256, preset="small", seed=3, data=str(fx_dir),
                      out=str(tmp_path / "again")))
    assert again["validation"] == man["validation"]
    t2 = torch.load(tmp_path / "again" / "checkpoint" / "weights.pt", weights_only=True)
    for k, v in tensors["regime"].items():
        assert torch.equal(v, t2["regime"][k]), k
    # a checkpoint of another feature spec is refused
    bad = tmp_path / "bad"
    shutil.copytree(smoke_run / "checkpoint", bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["feature_spec"]["norm_window"] = 50
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="feature spec"):
        load_regime_network(bad)


def test_too_short_a_period_is_one_clear_line(fx_dir: Path, macro_dir: Path, tmp_path: Path) -> None:
    p = _run("--train-start", "2024-01-02", "--train-end", "2024-01-04", "--data", str(fx_dir),
             "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "too short" in p.stderr.strip().splitlines()[-1]
