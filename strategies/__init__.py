"""Backtrader strategies and the name -> class registry used by ``run_backtest.py``."""

from __future__ import annotations

from brokers.bt_broker import use_forex_broker
from feeds.btfeeds import add_fx_feeds
from strategies.base import FxStrategy
from strategies.four_agent import FourAgent
from strategies.mtf_marl import MtfMarl
from strategies.random_agent import RandomAgent
from strategies.rules import BuyHold, Flat, SmaCross
from strategies.td3 import Td3Agent

STRATEGIES: dict[str, type[FxStrategy]] = {
    "flat": Flat,
    "buy_hold": BuyHold,
    "sma_cross": SmaCross,
    "random": RandomAgent,
    "mtf_marl": MtfMarl,
    "td3": Td3Agent,
    "four_agent": FourAgent,
}

__all__ = ["STRATEGIES", "BuyHold", "Flat", "FourAgent", "FxStrategy", "MtfMarl", "RandomAgent", "SmaCross", "Td3Agent",
           "add_fx_feeds", "get_strategy", "strategy_params", "use_forex_broker"]


def strategy_params(name: str, symbol: str, seed: int, checkpoint=None,
                    allow_symbol_mismatch: bool = False) -> tuple[type[FxStrategy], dict, str | None]:
    """What both command lines do before any data are loaded: the strategy class, the parameters it takes (seed,
    checkpoint, symbol-mismatch permission), and every checkpoint check; returns (class, params, the symbol an agent
    checkpoint was trained on if it is not ``symbol``). Raises KeyError, ValueError or CheckpointError."""
    from agents.common.checkpoint import check_symbol
    from strategies.base import AgentStrategy

    cls = get_strategy(name)
    keys = cls.params._getkeys()
    params: dict = {"seed": seed} if "seed" in keys else {}
    if checkpoint is not None and "checkpoint" not in keys:
        raise ValueError(f"--checkpoint does not apply to {name}")
    mismatch = None
    if issubclass(cls, AgentStrategy):
        path = checkpoint or cls.default_checkpoint
        mismatch = check_symbol(cls.read_manifest(path), symbol, allow_symbol_mismatch, path)
        params["allow_symbol_mismatch"] = allow_symbol_mismatch
        if checkpoint is not None:
            params["checkpoint"] = checkpoint
    return cls, params, mismatch


def get_strategy(name: str) -> type[FxStrategy]:
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]
