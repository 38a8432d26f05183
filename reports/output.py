"""Everything a run leaves in its output folder: summary.json, equity.csv, trades.csv, fills.csv, tearsheet.html."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from brokers.sim import Fill
from reports import metrics, plots
from reports.tearsheet import buy_hold_returns, write_tearsheet
from strategies.backtest import BacktestResult


def summarise(res: BacktestResult) -> dict[str, Any]:
    cfg = res.config
    rets = metrics.daily_returns(res.index, res.equity, cfg.cash)
    final = float(res.equity[-1])
    return {
        "strategy": res.strategy,
        "symbol": cfg.symbol,
        "start": res.index[0].isoformat(),
        "end": res.index[-1].isoformat(),
        "bars": res.bars,
        "initial_cash": cfg.cash,
        "leverage": cfg.leverage,
        "final_equity": final,
        "total_return": final / cfg.cash - 1.0,
        "sharpe": metrics.sharpe(rets),
        "sortino": metrics.sortino(rets),
        "max_drawdown": res.max_drawdown if res.max_drawdown is not None else
        metrics.max_drawdown(res.equity, res.worst_equity, cfg.cash),
        "max_daily_drawdown": res.cmdp["max_daily_dd"],  # under the run's drawdown rules (cmdp.mode)
        "buy_hold_return": float(res.close[-1] / res.start_close - 1.0),
        "trades": len(res.trades),
        "fills": len(res.fills),
        "rejected_orders": len(res.rejections),
        "costs": {k: round(v, 2) for k, v in res.costs.items()},
        "cmdp": {k: v for k, v in res.cmdp.items() if k != "soft_zone_times"},
        "seed": cfg.seed,
        "strategy_params": dict(cfg.strategy_params),
        "elapsed_s": round(res.elapsed_s, 3),
        "symbol_mismatch": _symbol_mismatch(res),
        "history_bars": res.first_bar,  # fed before the period as indicator and feature history, not traded
        "first_decision": _first_decision(res),
        "bars_per_s": round((res.first_bar + res.bars) / res.elapsed_s, 1) if res.elapsed_s > 0 else None,
    }


def _symbol_mismatch(res: BacktestResult) -> dict[str, str] | None:
    """For an agent checkpoint trained on another instrument (traded only with --allow-symbol-mismatch)."""
    trained_on = getattr(res.strategy_obj, "symbol_mismatch", None)
    return {"checkpoint": trained_on, "traded": res.config.symbol} if trained_on else None


def _first_decision(res: BacktestResult) -> str | None:
    """When an agent strategy first decided: the period's first bar unless its history was too short."""
    minute = getattr(getattr(res.strategy_obj, "ctx", None), "first_ready_minute", None)
    return None if minute is None else pd.Timestamp(minute, unit="m", tz="UTC").isoformat()


def write_outputs(res: BacktestResult, out: Path, tearsheet: bool = True,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the run's files into ``out`` and return the summary written to summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    strat = res.strategy_obj
    summary = {**summarise(res), **(extra or {})}
    if hasattr(strat, "decision_stats"):  # agent strategies: decision latency and drift against the training data
        summary["decisions"] = strat.decision_stats()
    if hasattr(strat, "agents_summary"):  # the four-agent system: its agents block and plots
        from risk.consensus import REGIME_CLASSES, RISK_ACTIONS

        summary["agents"] = strat.agents_summary()
        plots.plot_regime(strat.regime_decisions, REGIME_CLASSES, res.index, res.close, out / "regime.png")
        plots.plot_risk_overrides(strat.targets, strat.overrides, RISK_ACTIONS, out / "risk_overrides.png")
    elif hasattr(strat, "coordination"):  # agent strategies: coordination metrics and plots
        summary["coordination"] = strat.coordination()
        plots.plot_h4_limit(strat.decisions, out / "h4_limit.png")
        plots.plot_m1_vs_limit(strat.entries, out / "m1_entry_vs_h4_limit.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")

    # equity at hourly resolution keeps the file small; worst = lowest worst-price equity in the hour
    eq = pd.DataFrame({"equity": res.equity, "worst_equity": res.worst_equity, "close": res.close},
                      index=res.index)
    hourly = eq.resample("1h").agg({"equity": "last", "worst_equity": "min", "close": "last"}).dropna()
    hourly.to_csv(out / "equity.csv", index_label="datetime")
    pd.DataFrame(res.trades, columns=["open_time", "close_time", "size", "entry_price", "pnl",
                                      "commission", "pnl_net", "bars"]).to_csv(out / "trades.csv", index=False)
    fills = pd.DataFrame([dataclasses.asdict(f) for f in res.fills], columns=[f.name for f in dataclasses.fields(Fill)])
    fills.insert(0, "datetime", pd.to_datetime(fills["minute"], unit="m", utc=True))  # header even without fills
    fills.to_csv(out / "fills.csv", index=False)
    plots.plot_drawdown(strat.analyzers.cmdp.hours, res.cmdp["daily_limit"], res.cmdp["total_limit"],
                        res.cmdp["soft_zone"], res.cmdp["mode"], out / "drawdown.png")
    if tearsheet:
        rets = metrics.daily_returns(res.index, res.equity, res.config.cash)
        bench = buy_hold_returns(res.index, res.close, res.start_close)
        title = f"{res.strategy} on {res.config.symbol} ({res.index[0]:%Y-%m-%d} to {res.index[-1]:%Y-%m-%d})"
        write_tearsheet(rets, bench, out / "tearsheet.html", title)
    return summary
