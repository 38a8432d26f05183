"""A live run's result in the shape of a backtest's, so ``reports.output.write_outputs`` writes the same files."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from brokers.instruments import Instrument
from risk.drawdown import DrawdownRules
from strategies.backtest import BacktestConfig, BacktestResult


def live_result(strat: Any, broker: Any, args: Any, inst: Instrument, rules: DrawdownRules,
                elapsed_s: float) -> BacktestResult:
    """Hourly rows of ``analyzers.live.LiveRecorder`` (last equity and close, lowest worst-price equity per hour),
    its exact maximum drawdown, the broker's fills and the analyzers' trades and CMDP report. Costs are the fills'
    (spread where it was paid, commission) and, for swap, what the balance moved beyond realised P&L and
    commission (a terminal books swap and other charges there)."""
    rec = strat.analyzers.live
    rows = np.asarray(rec.hours, dtype=np.float64).reshape(-1, 4)
    index = pd.to_datetime(rows[:, 0].astype(np.int64), unit="m", utc=True)
    fills = list(broker.fills)
    acct = broker.account
    realised = sum(f.realised_pnl for f in fills)
    commission = sum(f.commission for f in fills)
    swap = (acct.initial_cash + realised - commission) - acct.balance if not args.paper else broker.sim.costs_swap
    cfg = BacktestConfig(symbol=inst.symbol, cash=acct.initial_cash, leverage=args.leverage, seed=args.seed,
                         strategy_params={}, rules=rules)
    rejections = list(broker.rejections) if not args.paper else list(broker.sim.rejections)
    return BacktestResult(
        strategy=args.strategy, config=cfg, index=index, close=rows[:, 3], equity=rows[:, 1],
        worst_equity=rows[:, 2], fills=fills, trades=strat.analyzers.tradelog.get_analysis(), rejections=rejections,
        costs={"spread": sum(f.spread_cost for f in fills), "commission": commission, "swap": swap},
        cmdp=strat.analyzers.cmdp.get_analysis(), elapsed_s=elapsed_s, strategy_obj=strat,
        first_bar=int(strat.first_bar), max_drawdown=rec.max_drawdown, m1_bars=rec.bars, first_close=rec.first_close)
