"""Common base for our Backtrader strategies: names the feeds, converts lots to Backtrader sizes, and routes
agent targets through the pre-trade validator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import backtrader as bt

from agents.checkpoint import check_symbol
from agents.observations import ObservationBuilder
from brokers.account import AccountView
from brokers.instruments import Instrument
from features.context import MarketContext
from risk.validator import PreTradeValidator, Verdict, validated_target

log = logging.getLogger(__name__)


class FxStrategy(bt.Strategy):
    """data0 is the M1 feed, data1 M5, data2 H4 (as ``strategies.backtest`` adds them).

    Sizes in Backtrader are units of the base currency; strategies think in lots and go through
    ``target_lots`` so the lot step is respected by the strategy, never by the broker. Strategies with
    ``uses_context = True`` get the precomputed ``MarketContext`` (features, H4 ATR) as ``self.ctx``, indexed
    by M1 bar position ``len(self.m1) - 1``. Bars before ``first_bar`` are history: indicators and features
    see them, ``target_lots`` sends nothing.
    """

    uses_context = False
    params = (("instrument", None), ("context", None), ("validator", None), ("first_bar", 0))

    def __init__(self) -> None:
        name = type(self).__name__
        if len(self.datas) < 3:
            raise ValueError(f"{name} needs the M1, M5 and H4 feeds of one symbol as data0, data1, data2 "
                             f"(it got {len(self.datas)}): add them with feeds.add_fx_feeds(cerebro, m1_bars, symbol)")
        self.m1, self.m5, self.h4 = self.datas[0], self.datas[1], self.datas[2]
        account = getattr(self.broker, "account", None)
        if account is None:
            raise ValueError(f"{name} trades through our forex broker (costs, margin, drawdown rules), not "
                             f"{type(self.broker).__name__}: brokers.use_forex_broker(cerebro, symbol)")
        self.account: AccountView = account
        self.inst: Instrument = self.p.instrument or account.instrument
        if self.inst.symbol != account.instrument.symbol:
            raise ValueError(f"{name} was given {self.inst.symbol} but the broker trades {account.instrument.symbol}")
        self.ctx: MarketContext | None = self.p.context
        self.validator: PreTradeValidator | None = self.p.validator
        if self.uses_context and self.ctx is None:
            raise ValueError(f"{type(self).__name__} needs context= (strategies.backtest builds it)")

    @classmethod
    def min_bars(cls, params: dict) -> dict[str, int]:
        """Complete bars each timeframe ("m5", "h4") needs before the strategy can run at all."""
        return {}

    def trading(self) -> bool:
        """Whether the trading period has begun (the current bar is not history)."""
        return len(self.m1) - 1 >= self.p.first_bar

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
        if verdict.lots != acct.lots:
            self.target_lots(verdict.lots)
        return verdict


class AgentStrategy(FxStrategy):
    """Skeleton of a strategy driven by trained agents: loads a checkpoint, keeps the agents' observations
    up to date on every M1 bar exactly as the training envs do (``agents.observations``), and asks the
    subclass for a decision on every bar from the end of the feature warm-up to the last-but-one bar (an
    order on the last bar could not fill).

    :param checkpoint: checkpoint folder (``weights.pt`` + ``manifest.json``); default ``default_checkpoint``
    :param allow_symbol_mismatch: trade a checkpoint trained on another symbol (refused otherwise); the run's
        ``symbol_mismatch`` then names the symbol it was trained on
    """

    uses_context = True
    params = (("checkpoint", None), ("allow_symbol_mismatch", False))
    default_checkpoint: Path

    @classmethod
    def read_manifest(cls, path: Path) -> dict[str, Any]:
        """The manifest of a checkpoint this strategy can load, every check done before any weights or data
        load (``CheckpointError`` otherwise)."""
        raise NotImplementedError

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
        self.obs: ObservationBuilder | None = None

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        acct = self.account
        if self.obs is None:
            if acct.guard is None:
                raise ValueError(f"{type(self).__name__} observes the drawdown state: its broker needs a drawdown "
                                 "guard (brokers.use_forex_broker, or ForexBroker(sim, guard=DrawdownGuard(...)))")
            self.obs = ObservationBuilder(self.ctx, self.inst, acct.initial_cash, acct.guard.rules, self.max_exposure)
        i = len(self.m1) - 1
        self.obs.after_bar(i, acct)
        if self.ctx.first_ready <= i < len(self.ctx) - 1:
            self.decide(i, acct)
