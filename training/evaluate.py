"""Deterministic evaluation of a pair of policies on a whole period, with coordination metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from features.context import MarketContext
from reports import metrics
from training.common import EnvConfig
from training.hier_env import HierarchicalForexEnv

Policy = Callable[[np.ndarray], np.ndarray]
H4_CHANGE = 0.1  # a director decision "changes" the action when a component moves more than this


def evaluate_hierarchical(contexts: list[MarketContext], cfg: EnvConfig, h4: Policy, m1: Policy,
                          max_bars: int = 0) -> dict[str, float | int]:
    """Run the policies over every context from the end of the warm-up (no exploration, no termination:
    a breach halts trading as in the backtest) and summarise. ``max_bars`` > 0 limits bars per context."""
    cfg = replace(cfg, random_start=False, terminate_on_breach=False, episode_bars=10**9)
    days_rets, dd_daily, dd_total, breaches, gap_breaches = [], 0.0, 0.0, 0, 0
    decisions = changes = attempted = violations = bars = 0
    reward = 0.0
    for ctx in contexts:
        env = HierarchicalForexEnv(ctx, cfg)
        (o_h4, _), info = env.reset(seed=0)
        start = info["bar"]
        stop = len(ctx) - 1 if max_bars <= 0 else min(len(ctx) - 1, start + max_bars)
        equity = [env.acct.sim.equity]
        a_h4 = prev = None
        while env.i < stop:
            if env.h4_decision_due():
                a_h4 = h4(o_h4)
                decisions += 1
                if prev is not None and np.max(np.abs(a_h4 - prev)) > H4_CHANGE:
                    changes += 1
                prev = a_h4
            a_m1 = m1(env.m1_obs(a_h4))
            (o_h4, _), r, _, _, info = env.step(a_h4, a_m1)
            reward += r
            attempted += info["m1_constraint_violation"]
            violations += abs(info["target_fraction"]) > info["h4_limit"] + 1e-9
            equity.append(env.acct.sim.equity)
        bars += env.i - start
        g = env.acct.guard
        dd_daily, dd_total = max(dd_daily, g.max_daily_dd), max(dd_total, g.max_total_dd)
        breaches += len(g.breaches)
        gap_breaches += sum(b.gap for b in g.breaches)
        idx = ctx.index[start:env.i + 1]
        days_rets.append(metrics.daily_returns(idx, np.asarray(equity), cfg.cash))
    rets = pd.concat(days_rets)
    trading_days = max(1, len(rets))
    return {
        "bars": bars, "total_return": float((1 + rets).prod() - 1), "sharpe": metrics.sharpe(rets),
        "sortino": metrics.sortino(rets), "max_daily_dd": dd_daily, "max_total_dd": dd_total,
        "breaches": breaches, "gap_breaches": gap_breaches, "reward": reward,
        "h4_decisions": decisions, "h4_changes_per_day": changes / trading_days,
        "m1_attempted_violations": attempted, "m1_constraint_violations": violations,
    }
