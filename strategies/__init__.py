"""Backtrader strategies and the name -> class registry used by ``run_backtest.py``."""

from __future__ import annotations

from brokers.bt_broker import use_forex_broker
from feeds.btfeeds import add_fx_feeds
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

__all__ = ["STRATEGIES", "BuyHold", "FxStrategy", "MtfMarl", "RandomAgent", "SmaCross", "Td3Agent", "add_fx_feeds",
           "get_strategy", "use_forex_broker"]


def get_strategy(name: str) -> type[FxStrategy]:
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]
