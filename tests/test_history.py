"""A trading period starts at its first bar: the weeks before it are loaded as feature and indicator history,
never traded, and left out of the results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brokers.sim import minute_of
from features.context import H4_SPEC, HISTORY_DAYS, build_context, history_start
from feeds.loaders import load_bars
from feeds.macro import load_macro
from feeds.paths import REPO_ROOT
from strategies.backtest import BacktestConfig, run_backtest
from training.data import period_contexts

START = pd.Timestamp("2024-03-04", tz="UTC")  # a Monday


def test_history_covers_the_h4_warm_up() -> None:
    market_days = H4_SPEC.warmup_bars * 240 / 1440  # H4 bars of a 24h x 5 market
    assert HISTORY_DAYS >= market_days * 7 / 5 + 7
    assert history_start("2024-03-04") == START - pd.Timedelta(days=HISTORY_DAYS)


def test_period_contexts_decide_from_the_first_bar_of_the_period(fx_dir: Path, macro_dir: Path) -> None:
    (with_history,) = period_contexts("EURUSD", "2024-03-04", "2024-03-15", fx_dir)
    assert with_history.index[0] < START - pd.Timedelta(days=21)
    assert with_history.index[with_history.first_ready] == START  # the market opens at 00:00 UTC on a Monday
    (without,) = period_contexts("EURUSD", "2024-02-01", "2024-03-15", fx_dir, history=False)
    assert without.index[without.first_ready] > pd.Timestamp("2024-02-20", tz="UTC")  # the warm-up eats weeks


def test_trade_from_never_moves_first_ready_earlier(fx_dir: Path, macro_dir: Path) -> None:
    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-02-26", end="2024-03-08")
    plain = build_context(m1, load_macro(macro_dir))
    early = build_context(m1, load_macro(macro_dir), trade_from="2024-02-26")
    assert early.first_ready == plain.first_ready  # too little history: features decide
    np.testing.assert_array_equal(early.m1_features, plain.m1_features)  # history changes nothing else


def test_backtest_trades_and_reports_only_the_period(fx_dir: Path, macro_dir: Path) -> None:
    m1 = load_bars(fx_dir, symbol="EURUSD", start=history_start(START), end="2024-03-08")
    res = run_backtest("sma_cross", m1, BacktestConfig(symbol="EURUSD", trade_from=START))
    assert res.index[0] == START and res.first_bar == int(m1.index.searchsorted(START))
    assert len(res.equity) == len(res.index) == len(res.close) == len(m1) - res.first_bar
    assert res.fills and min(f.minute for f in res.fills) >= minute_of(START)
    hours = res.strategy_obj.analyzers.cmdp.hours  # the drawdown series covers the period only
    assert hours[0][0] == minute_of(START) and len(hours) == len(pd.unique(res.index.floor("1h")))

    hold = run_backtest("buy_hold", m1, BacktestConfig(symbol="EURUSD", trade_from=START))
    assert len(hold.fills) == 1 and hold.fills[0].minute == minute_of(hold.index[1])  # next bar's open

    agents = run_backtest("mtf_marl", m1, BacktestConfig(symbol="EURUSD", trade_from=START))
    strat = agents.strategy_obj
    assert strat.ctx.first_ready == agents.first_bar
    assert strat.decisions[0][0] == strat.ctx.minutes[agents.first_bar]  # the director's first decision: the
    # period's first bar
    assert agents.equity[0] == pytest.approx(100_000.0)


def test_cli_loads_history_before_start(fx_dir: Path, tmp_path: Path, capsys) -> None:
    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO_ROOT / "run_backtest.py"), "--no-progress", "--no-tearsheet",
                               "--strategy", "sma_cross", "--start", "2024-03-04", "--end", "2024-03-06",
                               "--data", str(fx_dir), "--out", str(tmp_path / "run"), *extra],
                              capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)

    p = run()
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["start"] == START.isoformat() and s["trades"] > 0
    history = load_bars(fx_dir, symbol="EURUSD", start=history_start(START), end="2024-03-03")
    assert s["history_bars"] == len(history) > 20_000
    assert s["bars"] == len(load_bars(fx_dir, symbol="EURUSD", start="2024-03-04", end="2024-03-06"))
    without = run("--history-days", "0")  # three days cannot warm up a 30-H4-bar indicator on their own
    assert without.returncode == 2 and "use a longer period" in without.stderr
    import run_backtest

    capsys.readouterr()
    for args, needle in ((("--start", "2024-03-04", "--history-days", "-1"), "--history-days"),
                         (("--history-days", "10"), "needs --start"),
                         (("--start", "2024-03-10", "--end", "2024-03-05"), "is not after start")):
        # refused before any data load: in process (the same main as the CLI), one line on stderr
        assert run_backtest.main(["--strategy", "sma_cross", "--no-progress", *args]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1


def test_a_period_at_the_start_of_the_data_says_when_it_first_decided(fx_dir: Path, tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(REPO_ROOT / "run_backtest.py"), "--no-progress", "--no-tearsheet",
                        "--strategy", "random", "--start", "2017-01-09", "--end", "2017-02-17", "--data", str(fx_dir),
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["start"] == "2017-01-09T00:00:00+00:00" and 0 < s["history_bars"] < 10_000  # the data begin 2017-01-02
    assert s["first_decision"] > "2017-01-20" and "first decision at" in p.stderr


def test_history_bars_are_neither_validated_nor_traded(fx_dir: Path, macro_dir: Path) -> None:
    from strategies.replay import ReplayActions

    m1 = load_bars(fx_dir, symbol="EURUSD", start=history_start(START), end="2024-03-06")
    first = int(m1.index.searchsorted(START))
    actions = np.tile(np.where(np.arange(len(m1)) % 60 < 30, 1.0, -1.0)[:, None], (1, 2))  # flip every 30 bars
    only_period = actions.copy()
    only_period[:first] = np.nan  # the same agent, silent on history bars
    runs = [run_backtest(ReplayActions, m1, BacktestConfig(symbol="EURUSD", trade_from=START,
                                                          strategy_params={"actions": a}))
            for a in (actions, only_period)]
    assert runs[0].fills and min(f.minute for f in runs[0].fills) >= minute_of(START)
    assert runs[0].fills == runs[1].fills
    counters = ("blocked_actions", "shrunk_actions", "soft_zone_entries")
    assert [runs[0].cmdp[k] for k in counters] == [runs[1].cmdp[k] for k in counters]
