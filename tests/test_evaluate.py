"""reports.evaluate: the grid through run_backtest, rows independent of the number of workers, PSR/DSR and trials."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feeds.paths import REPO_ROOT
from reports import evaluate
from reports.evaluate import COMMITTED_TRIALS, TIMING_KEYS, selection_trials, sharpe_probabilities
from reports.sharpe_stats import deflated_sharpe, probabilistic_sharpe
from tests.ray_fixtures import ray_session  # noqa: F401

GRID = ["--strategies", "sma_cross,buy_hold", "--symbols", "EURUSD", "--years", "2023", "2024", "--days", "9",
        "--history-days", "10", "--no-progress"]


def _rows(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in json.loads((out / "evaluation.json")
                                                                                     .read_text())]


@pytest.mark.xdist_group("ray")  # one xdist worker holds the Ray session
@pytest.mark.usefixtures("ray_session")
def test_rows_are_the_same_in_process_and_on_two_ray_workers(fx_dir: Path, tmp_path: Path) -> None:
    one = evaluate.main([*GRID, "--data", str(fx_dir), "--workers", "1", "--out", str(tmp_path / "a"),
                         "--runs", str(tmp_path / "runs_a")])
    two = evaluate.main([*GRID, "--data", str(fx_dir), "--workers", "2", "--out", str(tmp_path / "b"),
                         "--runs", str(tmp_path / "runs_b")])
    assert one == two == 0
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert a == b
    assert [(r["strategy"], r["year"]) for r in a] == [("sma_cross", 2023), ("buy_hold", 2023),
                                                        ("sma_cross", 2024), ("buy_hold", 2024)]
    need = {"strategy", "symbol", "start", "end", "bars", "total_return", "sharpe", "sortino", "max_drawdown",
            "max_daily_dd", "trades", "costs", "cmdp_breaches", "psr", "dsr", "trials"}
    for r in a:
        assert need <= set(r) and r["trials"] == 1 and r["start"].startswith(f"{r['year']}-01-0")
        assert r["psr"] is not None and 0.0 <= r["psr"] <= 1.0 and r["dsr"] == pytest.approx(r["psr"])
        summary = json.loads((tmp_path / "runs_a" / r["run"] / "summary.json").read_text())
        assert r["total_return"] == summary["total_return"] and r["sharpe"] == summary["sharpe"]
    md = (tmp_path / "a" / "evaluation.md").read_text()
    assert "| sma_cross |" in md and "EURUSD 2023" in md and "**" in md and "PSR" in md and "DSR" in md
    pngs = sorted(p.name for p in (tmp_path / "a" / "evaluation").iterdir())
    assert pngs == ["equity_EURUSD_2023.png", "equity_EURUSD_2024.png", "sharpe_heatmap.png"]
    # a second call reuses the finished runs (same task, same files) and gives the same rows
    assert evaluate.main([*GRID, "--data", str(fx_dir), "--reuse", "--out", str(tmp_path / "c"),
                          "--runs", str(tmp_path / "runs_a")]) == 0
    assert _rows(tmp_path / "c") == a


def test_psr_and_dsr_of_daily_returns_and_none_when_flat() -> None:
    r = np.random.default_rng(0).normal(0.0005, 0.005, 250)
    psr, dsr = sharpe_probabilities(r, 10)
    assert psr == probabilistic_sharpe(r) and dsr == deflated_sharpe(r, 10) and dsr < psr
    assert sharpe_probabilities(np.zeros(250), 1) == (None, None)
    assert sharpe_probabilities(r[:3], 1) == (None, None)


def test_trials_come_from_the_manifest(tmp_path: Path) -> None:
    assert selection_trials("sma_cross", None)[0] == 1
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "manifest.json").write_text(json.dumps({"algorithm": "mtf_marl", "trials": 17, "trials_note": "sweep"}))
    assert selection_trials("mtf_marl", str(ck)) == (17, "sweep")
    (ck / "manifest.json").write_text(json.dumps({"algorithm": "mtf_marl"}))
    n, note = selection_trials("mtf_marl", str(ck))
    assert n == 1 and "no trial count" in note
    committed = REPO_ROOT / "checkpoints" / "mtf_marl_eurusd"
    if committed.is_dir() and "trials" not in json.loads((committed / "manifest.json").read_text()):
        assert selection_trials("mtf_marl", None) == (COMMITTED_TRIALS, evaluate.COMMITTED_NOTE)


def test_find_periods_and_bad_input(fx_dir: Path, tmp_path: Path, capsys) -> None:
    periods = evaluate.find_periods([fx_dir])
    assert ("EURUSD", 2017) in {(s, y) for s, y, _ in periods} and len(periods) == len(
        list(fx_dir.glob("*_M1_*.csv.gz")))
    assert [(s, y) for s, y, _ in evaluate.find_periods([fx_dir], ["usdjpy"], None)] == [("USDJPY", 2017)]
    assert evaluate.main(["--strategies", "nope", "--data", str(fx_dir), "--out", str(tmp_path)]) == 2
    assert "unknown strategies" in capsys.readouterr().err
    assert evaluate.main(["--data", str(fx_dir), "--years", "1999", "--out", str(tmp_path)]) == 2
    assert "no SYMBOL_M1_YEAR data files" in capsys.readouterr().err


def test_missing_extra_is_one_sentence(monkeypatch) -> None:
    from training import distributed

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(distributed.MissingExtraError, match=r"\[distributed\] extra"):
        distributed.run_ordered(abs, [(1,), (2,)], workers=2)
    assert distributed.run_ordered(abs, [(-1,), (-2,)], workers=1) == [1, 2]  # one worker needs no Ray


def test_cli_help() -> None:
    p = subprocess.run([sys.executable, "-m", "reports.evaluate", "--help"], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=60)
    assert p.returncode == 0 and "--ray-address" in p.stdout and "--workers" in p.stdout
