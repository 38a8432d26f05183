"""Common base for our Backtrader strategies: names the feeds, converts lots to Backtrader sizes, and routes
agent targets through the pre-trade validator."""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from agents.common.checkpoint import check_symbol
from agents.common.observations import ObservationBuilder
from brokers.account import AccountView
from brokers.instruments import Instrument
from features.context import MarketContext
from features.drift import DriftMonitor
from features.incremental import IncrementalContext
from feeds.macro import load_macro
from risk.validator import PreTradeValidator, Verdict, validated_target

log = logging.getLogger(__name__)
_EPOCH_NUM = bt.date2num(dt.datetime(1970, 1, 1))


class FxStrategy(bt.Strategy):
    """data0 is the M1 feed, data1 M5, data2 H4 (as ``strategies.backtest`` or ``feeds.add_fx_feeds`` add them).

    Sizes in Backtrader are units of the base currency; strategies think in lots and go through
    ``target_lots`` so the lot step is respected by the strategy, never by the broker. Strategies with
    ``uses_context = True`` read features and the H4 ATR from ``self.ctx`` at M1 bar position ``self.bar()``:
    the precomputed ``MarketContext`` when given (``context=``, the backtest's fast path), else an
    ``IncrementalContext`` that the strategy feeds with each M1 bar as it arrives (live trading, a user's own
    Cerebro): the same engine, the same numbers (``tests/test_incremental.py``). Bars before ``first_bar`` are
    history: indicators and features see them, ``target_lots`` sends nothing.

    :param instrument: the traded instrument (default: the broker's)
    :param context: a precomputed ``MarketContext`` over exactly the M1 feed's bars, or None (incremental)
    :param validator: the pre-trade validator agent targets go through (None: unchecked)
    :param first_bar: position of the first bar of the trading period; -1: the first bar a live feed delivers live
        (after its backfill of history)
    :param h4_offset_minutes: H4 bin offset of an incremental context (as ``build_context``'s)
    """

    uses_context = False
    timeframes: tuple[int, ...] = (5, 240)
    """higher-timeframe feeds after the M1 one, in order: data1 M5, data2 H4 (a strategy may add e.g. 30: data3)"""
    params = (("instrument", None), ("context", None), ("validator", None), ("first_bar", 0),
              ("h4_offset_minutes", 0))

    def __init__(self) -> None:
        name = type(self).__name__
        if len(self.datas) < 1 + len(self.timeframes):
            raise ValueError(f"{name} needs the M1 feed and the {', '.join(f'{t}-minute' for t in self.timeframes)} "
                             f"feeds of one symbol (it got {len(self.datas)} feeds): add them with "
                             "feeds.btfeeds.add_fx_feeds(cerebro, m1_bars, symbol) (or strategies.add_fx_feeds)")
        self.m1, self.m5, self.h4 = self.datas[0], self.datas[1], self.datas[2]
        account = getattr(self.broker, "account", None)
        if account is None:
            raise ValueError(f"{name} trades through our forex broker (costs, margin, drawdown rules), not "
                             f"{type(self.broker).__name__}: brokers.use_forex_broker(cerebro, symbol)")
        self.account: AccountView = account
        self.inst: Instrument = self.p.instrument or account.instrument
        if self.inst.symbol != account.instrument.symbol:
            raise ValueError(f"{name} was given {self.inst.symbol} but the broker trades {account.instrument.symbol}")
        self.first_bar = self.p.first_bar if self.p.first_bar >= 0 else int(getattr(self.m1, "history_bars", 0))
        self.ctx: MarketContext | IncrementalContext | None = self.p.context
        self.validator: PreTradeValidator | None = self.p.validator
        self._incremental = self.uses_context and self.ctx is None
        if self._incremental:
            market = self.inst if self.needs_market_block({k: getattr(self.p, k) for k in self.p._getkeys()}) \
                else None
            self.ctx = IncrementalContext(load_macro(), self.p.h4_offset_minutes, first_bar=self.first_bar,
                                          market=market)

    def bar(self) -> int:
        """Position of the current M1 bar; an incremental context is given the bar first (once)."""
        i = len(self.m1) - 1
        if self._incremental and len(self.ctx) <= i:
            if len(self.ctx) < i:
                raise RuntimeError(f"{type(self).__name__} missed M1 bars {len(self.ctx)}..{i - 1}: an incremental "
                                   "context must see every bar (call self.bar() from next and prenext)")
            d = self.m1
            minute = round((d.datetime[0] - _EPOCH_NUM) * 1440.0)
            self.ctx.append(minute * 60_000_000_000, d.open[0], d.high[0], d.low[0], d.close[0])
        return i

    def prenext(self) -> None:
        """Before every feed has a bar (the H4 feed's first completes hours in): features still see the bar."""
        if self._incremental:
            self.bar()

    @classmethod
    def min_bars(cls, params: dict) -> dict[str, int]:
        """Complete bars each timeframe ("m5", "h4") needs before the strategy can run at all."""
        return {}

    @classmethod
    def needs_market_block(cls, params: dict) -> bool:
        """Whether the precomputed context must hold the market block (``features.market``) for these params."""
        return False

    def trading(self) -> bool:
        """Whether orders may go out on this bar: the trading period has begun (the bar is not history), and a live
        feed is not catching up on bars that closed while it was disconnected (only the newest is traded on)."""
        if len(self.m1) - 1 < self.first_bar:
            return False
        catching_up = getattr(self.m1, "catching_up", None)
        return not (catching_up is not None and catching_up())

    def position_lots(self) -> float:
        return self.getposition(self.m1).size / self.inst.contract_size

    def target_lots(self, lots: float, **kwargs) -> bt.Order | None:
        """Order the difference to ``lots`` (rounded towards zero to the lot step) on the M1 feed; nothing
        before the trading period begins."""
        if not self.trading():
            return None
        return self.order_target_size(data=self.m1, target=self.inst.units(self.inst.round_lots(lots)), **kwargs)

    def trade_to(self, target: float, i: int) -> Verdict:
        """Validate an agent's target (lots) at M1 bar ``i`` against the drawdown floor, then order it. On a
        history bar nothing is validated (the CMDP counters cover the period) and nothing is ordered."""
        acct = self.account
        if not self.trading():
            return Verdict("block", acct.lots, "history bar: before the trading period")
        verdict = validated_target(self.validator, acct, target, float(self.ctx.h4_atr[i]))
        self.target_of_last_decision = verdict.lots
        if verdict.lots != acct.lots:
            self.target_lots(verdict.lots)
        return verdict


class AgentStrategy(FxStrategy):
    """Skeleton of a strategy driven by trained agents: loads a checkpoint, keeps the agents' observations
    up to date on every M1 bar exactly as the training envs do (``agents.common.observations``), and asks the
    subclass for a decision on every bar the context ``decides_at`` (from the end of the feature warm-up; in a
    backtest not on the last bar, where an order could not fill).

    :param checkpoint: checkpoint folder (``weights.pt`` + ``manifest.json``); default ``default_checkpoint``
    :param allow_symbol_mismatch: trade a checkpoint trained on another symbol (refused otherwise); the run's
        ``symbol_mismatch`` then names the symbol it was trained on
    :param decision_log: a CSV file to append every decision to, with its latency (live runs)
    """

    uses_context = True
    params = (("checkpoint", None), ("allow_symbol_mismatch", False), ("decision_log", None))
    default_checkpoint: Path

    @classmethod
    def read_manifest(cls, path: Path) -> dict[str, Any]:
        """The manifest of a checkpoint this strategy can load, every check done before any weights or data
        load (``CheckpointError`` otherwise)."""
        raise NotImplementedError

    @classmethod
    def needs_market_block(cls, params: dict) -> bool:
        """A checkpoint trained with the market block (``EnvConfig.market_features``) needs it in the context."""
        path = Path(params["checkpoint"]) if params.get("checkpoint") else cls.default_checkpoint
        return bool(cls.read_manifest(path)["env_config"].get("market_features", False))

    def load(self, path: Path) -> dict[str, Any]:
        """Load the agents from ``path`` and return the checkpoint's manifest."""
        raise NotImplementedError

    def decide(self, i: int, acct: AccountView) -> None:
        """Act on M1 bar ``i``; ``self.obs`` is current."""
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        path = Path(self.p.checkpoint) if self.p.checkpoint else self.default_checkpoint
        self.manifest = self.load(path)
        self.symbol_mismatch = check_symbol(self.manifest, self.inst.symbol, self.p.allow_symbol_mismatch, path)
        if self.symbol_mismatch:
            log.warning("checkpoint trained on %s, trading %s", self.symbol_mismatch, self.inst.symbol)
        self.max_exposure = float(self.manifest["env_config"]["max_exposure"])
        wants, has = self.manifest["env_config"].get("market_features", False), getattr(self.ctx, "market", None)
        if wants != (has is not None):
            raise ValueError(f"{path} was trained {'with' if wants else 'without'} the market block "
                             f"(features/market.py) but the context given has {'none' if wants else 'one'}: build "
                             f"it with build_context(m1, macro{', market=instrument' if wants else ''})")
        self.obs: ObservationBuilder | None = None
        ranges = self.manifest.get("feature_ranges")
        self.drift = DriftMonitor(ranges) if ranges else None
        if self.drift is None:
            log.info("%s: the checkpoint records no training feature ranges; drift is not monitored", path)
        self.latencies: collections.deque = collections.deque(maxlen=20_000)  # ms per decision, the most recent
        self._decision_log = open(self.p.decision_log, "a", buffering=1) if self.p.decision_log else None
        if self._decision_log is not None and self._decision_log.tell() == 0:
            self._decision_log.write("time,latency_ms,target_lots,position_lots,drift\n")

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        acct = self.account
        if self.obs is None:
            if acct.guard is None:
                raise ValueError(f"{type(self).__name__} observes the drawdown state: its broker needs a drawdown "
                                 "guard (brokers.use_forex_broker, or ForexBroker(sim, guard=DrawdownGuard(...)))")
            self.obs = ObservationBuilder(self.ctx, self.inst, acct.initial_cash, acct.guard.rules, self.max_exposure)
        t0 = time.perf_counter()
        i = self.bar()
        self.obs.after_bar(i, acct)
        if self.ctx.decides_at(i) and self.trading():
            self.decide(i, acct)
            drift = self._incremental and self.drift is not None and self.drift.check(
                int(self.ctx.minutes[i]), self.ctx.m1_features[i], self.ctx.h4_features[i])
            ms = (time.perf_counter() - t0) * 1e3
            self.latencies.append(ms)
            log.debug("decision at bar %d in %.3f ms", i, ms)
            if self._decision_log is not None:
                when = pd.Timestamp(int(self.ctx.minutes[i]), unit="m", tz="UTC").isoformat()
                self._decision_log.write(f"{when},{ms:.4f},{self.target_of_last_decision},{acct.lots},{int(drift)}\n")

    target_of_last_decision = 0.0

    def stop(self) -> None:
        if self._decision_log is not None:
            self._decision_log.close()

    def decision_stats(self) -> dict[str, object]:
        """Decision latency (the most recent decisions) and drift counts, for summary.json."""
        lat = np.asarray(self.latencies)
        out: dict[str, object] = {"decisions": len(lat)}
        if len(lat):
            out |= {"latency_p50_ms": round(float(np.percentile(lat, 50)), 4),
                    "latency_p99_ms": round(float(np.percentile(lat, 99)), 4)}
        if self.drift is not None:
            if not self._incremental and not self.drift.checks:  # a backtest's decisions, checked at once
                ctx = self.ctx
                rows = slice(max(ctx.first_ready, self.first_bar), len(ctx) - 1)
                self.drift.check_all(ctx.m1_features[rows], ctx.h4_features[rows])
            out["drift"] = self.drift.summary()
        return out
