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


@pytest.fixture(scope="module")
def gbpusd_file(fx_dir: Path, tmp_path_factory) -> Path:
    """Two weeks of real GBPUSD bars in our csv format, under a name that says GBPUSD."""
    from feeds.loaders import load_bars

    m1 = load_bars(fx_dir, symbol="GBPUSD", start="2017-03-06", end="2017-03-17")
    path = tmp_path_factory.mktemp("data") / "GBPUSD_M1_sample.csv"
    out = m1.copy()
    out.index = out.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(path, index_label="datetime")
    return path


def test_the_symbol_comes_from_the_file_name(gbpusd_file: Path, tmp_path: Path) -> None:
    p = _run("--strategy", "sma_cross", "--data", str(gbpusd_file), "--no-tearsheet", "--out", str(tmp_path / "a"))
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["symbol"] == "GBPUSD" and p.stdout.startswith("sma_cross GBPUSD ")
    # GBPUSD costs: 0.5 pip spread, so a 1-lot round trip pays 5 USD of spread (more at the rollover)
    assert 5.0 <= s["costs"]["spread"] / s["trades"] <= 15.0

    bad = _run("--strategy", "sma_cross", "--data", str(gbpusd_file), "--symbol", "EURUSD")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "named as GBPUSD data but --symbol EURUSD" in bad.stderr and "--force-symbol" in bad.stderr
    forced = _run("--strategy", "sma_cross", "--data", str(gbpusd_file), "--symbol", "EURUSD", "--force-symbol",
                  "--no-tearsheet", "--out", str(tmp_path / "b"))
    assert forced.returncode == 0, forced.stderr
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["symbol"] == "EURUSD"

    anonymous = tmp_path / "bars.csv"
    anonymous.write_text(gbpusd_file.read_text())
    nameless = _run("--strategy", "sma_cross", "--data", str(anonymous))
    assert nameless.returncode == 2 and "pass --symbol" in nameless.stderr


def test_a_checkpoint_of_another_symbol_is_refused_unless_allowed(fx_dir: Path, tmp_path: Path) -> None:
    args = ("--strategy", "td3", "--symbol", "USDJPY", "--start", "2017-03-06", "--end", "2017-03-10",
            "--data", str(fx_dir), "--no-tearsheet")
    refused = _run(*args)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "trained on EURUSD, not USDJPY" in refused.stderr and "--allow-symbol-mismatch" in refused.stderr
    allowed = _run(*args, "--allow-symbol-mismatch", "--out", str(tmp_path / "run"))
    assert allowed.returncode == 0, allowed.stderr
    assert "(checkpoint trained on EURUSD)" in allowed.stdout
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["symbol_mismatch"] == {"checkpoint": "EURUSD", "traded": "USDJPY"}


def test_checkpoint_errors_come_before_the_data(tmp_path: Path) -> None:
    run = tmp_path / "train-run"
    for sub in ("best", "last"):
        (run / sub).mkdir(parents=True)
        (run / sub / "manifest.json").write_text("{}")
    p = _run("--strategy", "mtf_marl", "--checkpoint", str(run), "--data", str(tmp_path / "no-such-folder"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "training output folder: use" in p.stderr and str(run / "best") in p.stderr
    assert "no such file" not in p.stderr  # the data were never touched


def test_an_mt5_export_needs_its_server_clock(fx_dir: Path, tmp_path: Path) -> None:
    """A MetaTrader 5 export is on broker server time: refused without --data-utc-offset, run with it."""
    from feeds.loaders import load_bars

    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-03-04", end="2024-03-15")
    server = m1.index + pd.Timedelta(hours=2)  # EET winter: UTC+2
    rows = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"]
    rows += [f"{t:%Y.%m.%d}\t{t:%H:%M:%S}\t{o}\t{h}\t{lo}\t{c}\t1\t0\t3" for t, o, h, lo, c in
             zip(server, m1.open, m1.high, m1.low, m1.close, strict=True)]
    path = tmp_path / "EURUSD_M1_202403040000_202403152359.csv"
    path.write_text("\n".join(rows) + "\n")
    refused = _run("--strategy", "sma_cross", "--data", str(path))
    assert refused.returncode == 2 and "--data-utc-offset" in refused.stderr
    ok = _run("--strategy", "sma_cross", "--data", str(path), "--data-utc-offset", "2", "--no-tearsheet",
              "--out", str(tmp_path / "run"))
    assert ok.returncode == 0, ok.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["symbol"] == "EURUSD" and s["start"] == "2024-03-04T00:00:00+00:00" and s["trades"] > 0
