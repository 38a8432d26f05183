"""Assemble and run one Backtrader backtest: M1 + M5 + H4 feeds, our forex broker, a registered strategy."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from analyzers.cmdp import CmdpAnalyzer
from analyzers.trades import TradeLog
from brokers.bt_broker import ForexBroker
from brokers.instruments import get_instrument
from brokers.sim import Fill, ForexSim, Rejection
from features.context import build_context
from feeds.btfeeds import add_fx_feeds
from feeds.loaders import to_utc
from feeds.macro import load_macro
from risk.drawdown import DrawdownGuard, DrawdownRules
from risk.validator import PreTradeValidator
from strategies import get_strategy
from strategies.base import FxStrategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestConfig:
    """What a run needs besides the strategy and the bars.

    :param symbol: instrument symbol (decides pip value, contract size, costs)
    :param cash: initial balance in USD
    :param leverage: account leverage (capped by the instrument's regulatory margin floor)
    :param seed: seeds Python's and NumPy's generators for strategies that draw random numbers
    :param h4_offset_minutes: shifts H4 bins from 00:00 UTC (e.g. to a broker's server midnight)
    :param strategy_params: keyword parameters passed to the strategy
    :param rules: drawdown rules the CMDP analyzer enforces
    :param on_excess: what the pre-trade validator does with an unsafe size (``shrink`` or ``block``)
    :param trade_from: first time of the trading period; earlier bars are history for indicators and features
        (no orders, not in the results)
    :param precompute_features: agent strategies read features from a context built once over all bars (the fast
        path); False: they compute them bar by bar as they arrive (``features.incremental``, the live path)
    """

    symbol: str
    cash: float = 100_000.0
    leverage: float = 30.0
    seed: int = 0
    h4_offset_minutes: int = 0
    strategy_params: Mapping[str, Any] = field(default_factory=dict)
    rules: DrawdownRules = field(default_factory=DrawdownRules.from_config)
    on_excess: str = "shrink"
    trade_from: pd.Timestamp | None = None
    precompute_features: bool = True


@dataclass(frozen=True)
class BacktestResult:
    """The trading period's bars (``index``, ``close``, ``equity``, ``worst_equity``). Bar numbers the strategy
    records count from the first bar fed, ``first_bar`` bars earlier. A live run's result holds hourly rows
    instead (``reports.live``), with the exact ``max_drawdown`` and the number of M1 ``m1_bars`` it saw."""

    strategy: str
    config: BacktestConfig
    index: pd.DatetimeIndex
    close: np.ndarray
    equity: np.ndarray
    worst_equity: np.ndarray
    fills: list[Fill]
    trades: list[dict]
    rejections: list[Rejection]
    costs: dict[str, float]
    cmdp: dict[str, Any]
    elapsed_s: float
    strategy_obj: bt.Strategy
    first_bar: int = 0
    max_drawdown: float | None = None
    m1_bars: int | None = None
    first_close: float | None = None

    @property
    def start_close(self) -> float:
        """The close of the period's first M1 bar (buy-and-hold starts there)."""
        return float(self.close[0]) if self.first_close is None else self.first_close

    @property
    def bars(self) -> int:
        return len(self.index) if self.m1_bars is None else self.m1_bars


def run_backtest(strategy: str | type[FxStrategy], m1: pd.DataFrame, config: BacktestConfig,
                 on_bar: Callable[[int], None] | None = None) -> BacktestResult:
    """Run ``strategy`` (a registered name or an ``FxStrategy`` class) over the M1 bid bars ``m1``; with
    ``config.trade_from`` the bars before it are history only."""
    cls = get_strategy(strategy) if isinstance(strategy, str) else strategy
    strategy = strategy if isinstance(strategy, str) else cls.__name__
    inst = get_instrument(config.symbol)
    random.seed(config.seed)
    np.random.seed(config.seed)
    first = 0
    if config.trade_from is not None:
        first = int(m1.index.searchsorted(to_utc(config.trade_from, "trade_from", whole_day_end=False)))
        if first >= len(m1) - 1:
            raise ValueError(f"no bars to trade from {config.trade_from} (the data end {m1.index[-1]})")
    sim = ForexSim(inst, cash=config.cash, leverage=config.leverage)
    guard = DrawdownGuard(config.rules, config.cash)
    broker = ForexBroker(sim, on_bar=on_bar, guard=guard)

    cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True)
    feeds = add_fx_feeds(cerebro, m1, inst.symbol, config.h4_offset_minutes, cls.timeframes)
    for tf, f in zip(cls.timeframes, feeds[1:], strict=True):
        name = "h4" if tf == 240 else f"m{tf}"
        need = cls.min_bars(dict(config.strategy_params)).get(name, 0)
        if len(f.p.dataname) < need:
            raise ValueError(f"{strategy} needs at least {need} complete {name.upper()} bars, the data give "
                             f"{len(f.p.dataname)}: use a longer period")
    feed = feeds[0]
    broker.set_data(feed)
    cerebro.setbroker(broker)
    validator = PreTradeValidator(inst, on_excess=config.on_excess)
    market = inst if cls.needs_market_block(dict(config.strategy_params)) else None
    ctx = build_context(m1, load_macro(), config.h4_offset_minutes, trade_from=m1.index[first], market=market) \
        if cls.uses_context and config.precompute_features else None
    if config.trade_from is not None and ctx is not None and first < ctx.first_ready < len(ctx):
        log.warning("%s: the features need more history than was loaded before %s; first decision at %s",
                    strategy, m1.index[first], ctx.index[ctx.first_ready])
    cerebro.addstrategy(cls, instrument=inst, context=ctx, validator=validator, first_bar=first,
                        h4_offset_minutes=config.h4_offset_minutes, **dict(config.strategy_params))
    cerebro.addanalyzer(TradeLog, _name="tradelog")
    cerebro.addanalyzer(CmdpAnalyzer, _name="cmdp", validator=validator)

    t0 = time.perf_counter()
    strat = cerebro.run()[0]
    elapsed = time.perf_counter() - t0
    if len(broker.equity) != len(m1):
        raise RuntimeError(f"broker saw {len(broker.equity)} of {len(m1)} M1 bars: feed alignment is broken")
    return BacktestResult(
        strategy=strategy, config=config, index=m1.index[first:], close=m1["close"].to_numpy()[first:],
        equity=np.asarray(broker.equity)[first:], worst_equity=np.asarray(broker.worst_equity)[first:],
        fills=list(broker.fills), trades=strat.analyzers.tradelog.get_analysis(),
        rejections=list(sim.rejections),
        costs={"spread": sim.costs_spread, "commission": sim.costs_commission, "swap": sim.costs_swap},
        cmdp=strat.analyzers.cmdp.get_analysis(),
        elapsed_s=elapsed, strategy_obj=strat, first_bar=first,
    )
