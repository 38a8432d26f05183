"""Deterministic evaluation of policies on a whole period: the MTF-MARL pair (with coordination metrics) or
a single agent on the shared state (``evaluate_single``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from agents.mtf_marl.learner import h4_changes
from features.context import MarketContext
from reports import metrics
from risk.drawdown import DrawdownGuard
from training.env import ForexEnv
from training.env_config import EnvConfig
from training.hier_env import HierarchicalForexEnv

Policy = Callable[[np.ndarray], np.ndarray]


MIN_ACTIVE_DAYS = 20
"""days with a non-zero P&L a policy needs before its Sharpe can score above flat (0)"""


def validation_score(res: dict) -> float:
    """What model selection maximises: validation Sharpe, heavily penalised for drawdown breaches.

    A policy active on fewer than ``MIN_ACTIVE_DAYS`` days scores at most 0, like flat: the Sharpe of daily
    returns over a year with one winning day is 0.94 whatever the win's size (and grows with the number of
    winning days, not with skill), which once selected a policy that had made one trade."""
    sharpe = res["sharpe"] if res["active_days"] >= MIN_ACTIVE_DAYS else min(res["sharpe"], 0.0)
    return sharpe - 5.0 * res["breaches"]


def evaluate_hierarchical(contexts: list[MarketContext], cfg: EnvConfig, h4: Policy, m1: Policy,
                          max_bars: int = 0) -> dict[str, float | int]:
    """Run the policies over every context from the end of the warm-up (no exploration, no termination:
    a breach halts trading as in the backtest) and summarise. ``max_bars`` > 0 limits bars per context."""
    cfg = replace(cfg, random_start=False, terminate_on_breach=False, episode_bars=10**9)
    runs = []
    decisions: list[tuple[float, float]] = []
    attempted = violations = bars = 0
    reward = 0.0
    for ctx in contexts:
        env = HierarchicalForexEnv(ctx, cfg)
        (o_h4, _), info = env.reset(seed=0)
        start = info["bar"]
        stop = len(ctx) - 1 if max_bars <= 0 else min(len(ctx) - 1, start + max_bars)
        equity = [env.acct.sim.equity]
        a_h4 = a_m1 = None
        while env.i < stop:
            due = env.h4_decision_due()
            if due:
                a_h4 = h4(o_h4)
            if env.m1_decision_due():
                a_m1 = m1(env.m1_obs(a_h4))
            (o_h4, _), r, _, _, info = env.step(a_h4, a_m1)
            if due:
                decisions.append((info["h4_limit"], info["h4_bias"]))
            reward += r
            attempted += info["m1_constraint_violation"]
            violations += abs(info["target_fraction"]) > info["h4_limit"] + 1e-9
            equity.append(env.acct.sim.equity)
        bars += env.i - start
        runs.append((ctx.index[start:env.i + 1], np.asarray(equity), env.acct.guard))
    out, trading_days = _summary(runs, cfg.cash)
    return {
        "bars": bars, **out, "reward": reward,
        "h4_decisions": len(decisions), "h4_changes_per_day": h4_changes(decisions) / max(1, trading_days),
        "m1_attempted_violations": attempted, "m1_constraint_violations": violations,
    }


def _summary(runs: list[tuple[pd.DatetimeIndex, np.ndarray, DrawdownGuard]],
             cash: float) -> tuple[dict[str, float | int], int]:
    """Return and risk metrics over several runs, each (bar index, equity per bar, its drawdown guard),
    and the number of trading days."""
    rets = pd.concat([metrics.daily_returns(idx, equity, cash) for idx, equity, _ in runs])
    guards = [g for _, _, g in runs]
    return {
        "total_return": float((1 + rets).prod() - 1), "sharpe": metrics.sharpe(rets),
        "sortino": metrics.sortino(rets), "max_daily_dd": max(g.max_daily_dd for g in guards),
        "max_total_dd": max(g.max_total_dd for g in guards), "breaches": sum(len(g.breaches) for g in guards),
        "gap_breaches": sum(b.gap for g in guards for b in g.breaches),
        "active_days": int((rets != 0.0).sum()),
    }, len(rets)


def evaluate_single(contexts: list[MarketContext], cfg: EnvConfig, policy: Policy,
                    max_bars: int = 0) -> dict[str, float | int]:
    """``evaluate_hierarchical`` for one agent: ``policy`` maps the shared state (``training.env.ForexEnv``'s
    observation) to ``[position, exit_confidence]`` on every bar from the end of the warm-up."""
    cfg = replace(cfg, random_start=False, terminate_on_breach=False, episode_bars=10**9)
    runs, bars, reward = [], 0, 0.0
    for ctx in contexts:
        env = ForexEnv(ctx, cfg)
        obs, info = env.reset(seed=0)
        start = info["bar"]
        stop = len(ctx) - 1 if max_bars <= 0 else min(len(ctx) - 1, start + max_bars)
        equity = [env.acct.sim.equity]
        while env.i < stop:
            obs, r, _, _, _ = env.step(policy(obs))
            reward += r
            equity.append(env.acct.sim.equity)
        bars += env.i - start
        runs.append((ctx.index[start:env.i + 1], np.asarray(equity), env.acct.guard))
    return {"bars": bars, **_summary(runs, cfg.cash)[0], "reward": reward}
