"""Backtest throughput on one year of real M1 bars, Backtrader's own path vs ours.

Runners (all in one process, on the same bars; loading the CSV is not timed):

* ``bt_resample_noop``: plain ``bt.Cerebro`` with a ``PandasData`` M1 feed plus
  ``cerebro.resampledata`` to M5 and H4, a no-op strategy and Backtrader's default broker;
  wall time of ``cerebro.run()``.
* ``sma_cross``: ``strategies.backtest.run_backtest("sma_cross", ...)`` through our forex broker;
  wall time of the whole call (feed building included).
* ``mtf_marl``: ``run_backtest("mtf_marl", ...)`` with the MTF-MARL checkpoint of ``--checkpoint`` (default:
  ``checkpoints/mtf_marl_eurusd`` when present and loadable, else a fresh untrained one in a temporary
  folder: weights do not change the cost); wall time of the whole call (context building included).

Usage::

    python benchmarks/bench_backtest.py --symbol EURUSD --year 2024 [--bars 100000] [--repeat 3]

The last line printed is one JSON object:
``{"bars": N, "bt_resample_noop_bars_per_s": X, "sma_cross_bars_per_s": Y, "ratio": Y/X,
"mtf_marl_bars_per_s": Z, "mtf_marl_ratio": Z/X}``.
To add a runner, write ``def f(m1, symbol) -> float`` (seconds) and add it to ``RUNNERS``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backtrader as bt
import pandas as pd

from benchmarks.bench_latency import checkpoint_path
from feeds.loaders import load_bars
from feeds.paths import fx_data_dir
from strategies.backtest import BacktestConfig, run_backtest


class _NoOp(bt.Strategy):
    def next(self):
        pass


def run_bt_resample_noop(m1: pd.DataFrame, symbol: str) -> float:
    """Backtrader's own path: M1 PandasData + resampledata(M5, H4), no-op strategy, default broker."""
    frame = m1[["open", "high", "low", "close", "volume"]].copy()
    frame.index = m1.index.tz_convert("UTC").tz_localize(None)
    cerebro = bt.Cerebro(stdstats=False)
    feed = bt.feeds.PandasData(dataname=frame, openinterest=None, name=f"{symbol}_M1",
                               timeframe=bt.TimeFrame.Minutes, compression=1)
    cerebro.adddata(feed)
    cerebro.resampledata(feed, timeframe=bt.TimeFrame.Minutes, compression=5, name=f"{symbol}_M5")
    cerebro.resampledata(feed, timeframe=bt.TimeFrame.Minutes, compression=240, name=f"{symbol}_H4")
    cerebro.addstrategy(_NoOp)
    t0 = time.perf_counter()
    cerebro.run()
    return time.perf_counter() - t0


def run_sma_cross(m1: pd.DataFrame, symbol: str) -> float:
    """Ours: run_backtest("sma_cross") through the forex broker, feeds building included."""
    t0 = time.perf_counter()
    run_backtest("sma_cross", m1, BacktestConfig(symbol=symbol))
    return time.perf_counter() - t0


_MTF_CHECKPOINT: list[str] = []  # resolved once in main()


def run_mtf_marl(m1: pd.DataFrame, symbol: str) -> float:
    """Ours: run_backtest("mtf_marl") with an MTF-MARL checkpoint, context building included."""
    if not _MTF_CHECKPOINT:
        _MTF_CHECKPOINT.append(str(checkpoint_path(None, symbol)[0]))
    cfg = BacktestConfig(symbol=symbol, strategy_params={"checkpoint": _MTF_CHECKPOINT[0]})
    t0 = time.perf_counter()
    run_backtest("mtf_marl", m1, cfg)
    return time.perf_counter() - t0


# name -> runner(m1, symbol) -> seconds. Each adds "<name>_bars_per_s" to the JSON line.
RUNNERS: dict[str, Callable[[pd.DataFrame, str], float]] = {
    "bt_resample_noop": run_bt_resample_noop,
    "sma_cross": run_sma_cross,
    "mtf_marl": run_mtf_marl,
}


def load_year(symbol: str, year: int, bars: int | None) -> pd.DataFrame:
    m1 = load_bars(fx_data_dir(), symbol=symbol, start=f"{year}-01-01", end=f"{year}-12-31")
    return m1.iloc[:bars] if bars else m1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--symbol", default="EURUSD")
    ap.add_argument("--year", type=int, default=2024)
    ap.add_argument("--bars", type=int, default=None,
                    help="use only the first N M1 bars (sma_cross needs >= ~10000: "
                         "fewer than 30 H4 bars are refused by run_backtest)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per runner")
    ap.add_argument("--checkpoint", default=None,
                    help="MTF-MARL checkpoint for the mtf_marl runner (default: committed one, else fresh untrained)")
    ap.add_argument("--only", nargs="*", choices=sorted(RUNNERS), help="run only these runners")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    m1 = load_year(args.symbol, args.year, args.bars)
    n = len(m1)
    print(f"loaded {n} {args.symbol} M1 bars of {args.year} "
          f"({m1.index[0]} .. {m1.index[-1]}) in {time.perf_counter() - t0:.1f}s (not timed)")

    if not args.only or "mtf_marl" in args.only:
        path, how = checkpoint_path(args.checkpoint, args.symbol)
        _MTF_CHECKPOINT[:] = [str(path)]
        print(f"mtf_marl checkpoint: {path} ({how})")

    result: dict[str, float | int] = {"bars": n}
    for name, runner in RUNNERS.items():
        if args.only and name not in args.only:
            continue
        times = []
        for i in range(max(1, args.repeat)):
            times.append(runner(m1, args.symbol))
            print(f"  {name} run {i + 1}: {times[-1]:.2f}s")
        best = min(times)
        result[f"{name}_bars_per_s"] = round(n / best, 1)
        print(f"{name}: best {best:.2f}s -> {n / best:,.0f} M1 bars/s")
    base, ours = result.get("bt_resample_noop_bars_per_s"), result.get("sma_cross_bars_per_s")
    if base and ours:
        result["ratio"] = round(ours / base, 2)
        print(f"sma_cross / bt_resample_noop = {result['ratio']:.2f}x")
    mtf = result.get("mtf_marl_bars_per_s")
    if base and mtf:
        result["mtf_marl_ratio"] = round(mtf / base, 2)
        print(f"mtf_marl / bt_resample_noop = {result['mtf_marl_ratio']:.2f}x")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
