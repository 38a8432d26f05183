"""Backtrader strategies and the name -> class registry used by ``run_backtest.py``."""

from __future__ import annotations

from strategies.base import FxStrategy
from strategies.mtf_marl import MtfMarl
from strategies.random_agent import RandomAgent
from strategies.rules import BuyHold, SmaCross
from strategies.td3 import Td3Agent

STRATEGIES: dict[str, type[FxStrategy]] = {
    "buy_hold": BuyHold,
    "sma_cross": SmaCross,
    "random": RandomAgent,
    "mtf_marl": MtfMarl,
    "td3": Td3Agent,
}

__all__ = ["STRATEGIES", "FxStrategy", "get_strategy"]


def get_strategy(name: str) -> type[FxStrategy]:
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]
