"""Subprocess smoke tests of run_backtest.py: outputs on real data, one clear line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from feeds.paths import REPO_ROOT

SUMMARY_KEYS = {"strategy", "symbol", "start", "end", "bars", "final_equity", "total_return", "sharpe", "sortino",
                "max_drawdown", "max_daily_drawdown", "trades", "costs", "seed", "elapsed_s", "bars_per_s"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "run_backtest.py"), "--no-progress", *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


def test_sma_cross_writes_all_outputs(fx_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = _run("--strategy", "sma_cross", "--symbol", "EURUSD", "--start", "2024-02-05", "--end", "2024-02-16",
             "--data", str(fx_dir), "--out", str(out))
    assert p.returncode == 0, p.stderr
    for name in ("tearsheet.html", "summary.json", "equity.csv", "trades.csv", "fills.csv"):
        assert (out / name).stat().st_size > 0, name
    s = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(s)
    assert s["trades"] > 0
    # spread + commission of a 1-lot EURUSD round trip: 0.3 pip x 10 USD (more at rollover) + 7 USD
    per_trade = (s["costs"]["spread"] + s["costs"]["commission"]) / s["trades"]
    assert 9.0 <= per_trade <= 20.0, s["costs"]
    assert "<html" in (out / "tearsheet.html").read_text()[:2000].lower()
    trades = pd.read_csv(out / "trades.csv")
    assert len(trades) == s["trades"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--strategy", "nope"), "unknown strategy"),
        (("--strategy", "sma_cross", "--symbol", "EURGBP"), "unknown symbol"),
        (("--strategy", "sma_cross", "--start", "2030-01-01", "--end", "2030-01-31"), "no bars"),
        (("--strategy", "sma_cross", "--start", "2024-01-02", "--end", "2024-01-04", "--history-days", "0"),
         "use a longer period"),
        (("--strategy", "random", "--daily-limit", "0.2"), "daily_limit"),
    ],
)
def test_bad_input_is_one_clear_line(args: tuple[str, ...], needle: str, fx_dir: Path) -> None:
    p = _run(*args, "--data", str(fx_dir))
    assert p.returncode != 0
    assert needle in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_malformed_file_is_one_clear_line(tmp_path: Path) -> None:
    f = tmp_path / "EURUSD_M1_2024.csv"
    f.write_text("datetime,open,high,low,close,volume\n"
                 "2024-01-02T00:00:00Z,1.1,1.2,1.0,1.1,0\n"
                 "2024-01-02T00:01:00Z,1.1,1.0,1.2,1.1,0\n")
    p = _run("--strategy", "sma_cross", "--data", str(f))
    assert p.returncode != 0
    assert "EURUSD_M1_2024.csv" in p.stderr and "2024-01-02 00:01" in p.stderr.replace("T", " ")
    assert "Traceback" not in p.stderr
