"""Our strategies in a Backtrader user's own Cerebro: the documented helpers give the same run as run_backtest, and a
plain Cerebro fails with one sentence that says what is missing."""

from __future__ import annotations

from pathlib import Path

import backtrader as bt
import pandas as pd
import pytest

from analyzers.cmdp import CmdpAnalyzer
from features.context import history_start
from feeds.loaders import load_bars
from risk.validator import PreTradeValidator
from strategies import MtfMarl, RandomAgent, SmaCross, add_fx_feeds, use_forex_broker
from strategies.backtest import BacktestConfig, run_backtest

START = pd.Timestamp("2024-03-04", tz="UTC")


@pytest.fixture(scope="module")
def m1(fx_dir: Path) -> pd.DataFrame:
    return load_bars(fx_dir, symbol="EURUSD", start=history_start(START, 35), end="2024-03-06")


def test_the_readme_lines_run_an_agent_in_a_users_cerebro(m1: pd.DataFrame) -> None:
    """The README's plugin snippet: feeds, broker (with the drawdown rules inside), strategy, CMDP analyzer. The agent
    computes its features bar by bar (no precomputed context) and trades as run_backtest's fast path does."""
    cerebro = bt.Cerebro(stdstats=False)
    feeds = add_fx_feeds(cerebro, m1, "EURUSD")
    broker = use_forex_broker(cerebro, feeds[0], "EURUSD", cash=100_000)
    first = int(m1.index.searchsorted(START))
    validator = PreTradeValidator(broker.sim.instrument)
    cerebro.addstrategy(RandomAgent, validator=validator, first_bar=first, every=7, seed=3)
    cerebro.addanalyzer(CmdpAnalyzer, _name="cmdp", validator=validator)
    (strat,) = cerebro.run()
    fast = run_backtest("random", m1, BacktestConfig(symbol="EURUSD", trade_from=START,
                                                     strategy_params={"every": 7, "seed": 3}))
    assert broker.fills == fast.fills and len(broker.fills) > 50
    assert strat.analyzers.cmdp.get_analysis()["max_daily_dd"] == fast.cmdp["max_daily_dd"]


def test_sma_cross_needs_only_the_feeds_and_the_broker(m1: pd.DataFrame) -> None:
    cerebro = bt.Cerebro(stdstats=False)
    feeds = add_fx_feeds(cerebro, m1, "EURUSD")
    broker = use_forex_broker(cerebro, feeds[0], "EURUSD")
    cerebro.addstrategy(SmaCross)
    cerebro.run()
    assert len(broker.fills) > 10


@pytest.mark.parametrize(("setup", "needle"), [
    ("plain", "needs the M1 feed and the 5-minute, 240-minute feeds"),
    ("feeds_only", "trades through our forex broker"),
])
def test_a_plain_cerebro_gets_one_clear_sentence(m1: pd.DataFrame, setup: str, needle: str) -> None:
    cerebro = bt.Cerebro(stdstats=False)
    if setup == "plain":
        cerebro.adddata(bt.feeds.PandasData(dataname=m1.tz_localize(None) if m1.index.tz else m1))
    else:
        add_fx_feeds(cerebro, m1.iloc[:5000], "EURUSD")
    cerebro.addstrategy(MtfMarl)
    with pytest.raises(ValueError, match=needle) as err:
        cerebro.run()
    assert "\n" not in str(err.value)
