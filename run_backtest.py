"""Backtest a registered strategy on real M1 bars and write a QuantStats tearsheet.

    python run_backtest.py --strategy sma_cross --symbol EURUSD --start 2024-01-01 --end 2024-12-31
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from pathlib import Path

from brokers.instruments import UnknownSymbolError, get_instrument, instruments
from features.context import HISTORY_DAYS, history_start
from feeds.errors import DataError
from feeds.loaders import load_bars, resolve_symbol, to_utc
from feeds.paths import REPO_ROOT, fx_data_dir
from risk.drawdown import DrawdownRules
from strategies import STRATEGIES, get_strategy, strategy_params

log = logging.getLogger("run_backtest")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--strategy", required=True, help=f"one of: {', '.join(sorted(STRATEGIES))}")
    p.add_argument("--data", type=Path, default=None,
                   help="M1 file or folder (default: $MTF_DATA_DIR or ../shared/data/fx)")
    p.add_argument("--symbol", default=None,
                   help="instrument (default: the one a --data file's name carries, e.g. GBPUSD_M1_2017.csv; "
                        "EURUSD for a folder)")
    p.add_argument("--data-utc-offset", type=float, default=None,
                   help="hours the data's clock is ahead of UTC: needed for MetaTrader 5 exports (broker server time)")
    p.add_argument("--data-clock", default=None,
                   help="the data's wall clock as an IANA zone (e.g. Europe/Athens for an MT5 server on EET), or "
                        "America/New_York / EET-7 to override HistData's clock rule")
    p.add_argument("--force-symbol", action="store_true",
                   help="trade the --data file as --symbol even though its name says another symbol")
    p.add_argument("--start", default=None, help="first day, UTC (YYYY-MM-DD)")
    p.add_argument("--end", default=None, help="last day, UTC, inclusive")
    p.add_argument("--history-days", type=int, default=None,
                   help="with --start: calendar days of bars before it loaded as indicator and feature history "
                        f"only, so trading begins at --start (default {HISTORY_DAYS}; 0: the period's own first "
                        "weeks are the warm-up)")
    p.add_argument("--cash", type=float, default=100_000.0)
    p.add_argument("--leverage", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--h4-offset", type=int, default=0, help="H4 bin offset from 00:00 UTC, minutes")
    p.add_argument("--dd-mode", choices=("prop", "trailing"), default=None, help="drawdown rules (default prop)")
    p.add_argument("--daily-limit", type=float, default=None, help="daily drawdown limit, fraction (0.05)")
    p.add_argument("--total-limit", type=float, default=None, help="total drawdown limit, fraction (0.10)")
    p.add_argument("--on-excess", choices=("shrink", "block"), default="shrink",
                   help="pre-trade validator: shrink an unsafe size to the largest safe one, or block it")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="agent checkpoint folder (mtf_marl, td3; default: the pretrained one in checkpoints/; a "
                        "training run's output holds two: DIR/best and DIR/last)")
    p.add_argument("--allow-symbol-mismatch", action="store_true",
                   help="trade a checkpoint trained on another symbol (refused otherwise; the result says so)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/<strategy>-<symbol>-<time>)")
    p.add_argument("--no-tearsheet", action="store_true", help="skip the HTML tearsheet")
    p.add_argument("--no-progress", action="store_true",
                   help="no loading messages and no progress bar (errors and warnings still print)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    say = (lambda msg: None) if args.no_progress else (lambda msg: print(msg, file=sys.stderr, flush=True))
    from agents.common.checkpoint import CheckpointError

    try:
        get_strategy(args.strategy)  # an unknown strategy is the first thing to hear about
        data = args.data or fx_data_dir()
        if args.symbol is not None:
            get_instrument(args.symbol)  # an unknown symbol is the first thing to hear about
        inst = get_instrument(resolve_symbol(data, args.symbol, instruments(), force=args.force_symbol))
        rules = DrawdownRules.from_config(mode=args.dd_mode, daily_limit=args.daily_limit,
                                          total_limit=args.total_limit)
        if args.history_days is not None and (args.history_days < 0 or not args.start):
            raise ValueError(f"--history-days takes a number >= 0 and needs --start, got {args.history_days}"
                             + ("" if args.start else " without --start"))
        if args.start and args.end and to_utc(args.end, "end", whole_day_end=True) <= to_utc(args.start, "start",
                                                                                               whole_day_end=False):
            raise ValueError(f"end {args.end!r} is not after start {args.start!r}")
        cls, params, mismatch = strategy_params(args.strategy, inst.symbol, args.seed, args.checkpoint,
                                                args.allow_symbol_mismatch)  # every checkpoint check before the data
        days = HISTORY_DAYS if args.history_days is None else args.history_days
        first = history_start(args.start, days) if args.start and days else args.start
        t0 = time.perf_counter()
        say(f"loading {inst.symbol} M1 bars from {data}"
            + (f" ({days} days of history before {args.start})" if args.start and days else "") + " ...")
        m1 = load_bars(data, symbol=inst.symbol, start=first, end=args.end,
                       server_utc_offset_hours=args.data_utc_offset, clock=args.data_clock)
        say(f"  {len(m1):,} bars, {m1.index[0]:%Y-%m-%d %H:%M} to {m1.index[-1]:%Y-%m-%d %H:%M} UTC, "
            f"in {time.perf_counter() - t0:.1f} s")
    except (KeyError, UnknownSymbolError, DataError, FileNotFoundError, ValueError, CheckpointError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2

    # imported late so that --help and input errors answer fast
    from tqdm import tqdm

    from reports.output import write_outputs
    from strategies.backtest import BacktestConfig, run_backtest

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out or REPO_ROOT / "runs" / f"{args.strategy}-{inst.symbol}-{stamp}"
    cfg = BacktestConfig(symbol=inst.symbol, cash=args.cash, leverage=args.leverage, seed=args.seed,
                         h4_offset_minutes=args.h4_offset, rules=rules, on_excess=args.on_excess,
                         strategy_params=params, trade_from=args.start)
    bar: list[tqdm] = []  # created at the first bar, so set-up time (features) does not skew its rate

    def progress(n: int) -> None:
        if n % 4096 == 0:
            if not bar:
                bar.append(tqdm(total=len(m1), unit="bar", unit_scale=True, desc=args.strategy, file=sys.stderr))
            bar[0].update(n - bar[0].n)

    if cls.uses_context:
        say("computing features and indicators ...")
    try:
        res = run_backtest(args.strategy, m1, cfg, on_bar=None if args.no_progress else progress)
    except (DataError, ValueError, CheckpointError) as e:
        if bar:
            bar[0].close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    if bar:
        bar[0].update(len(m1) - bar[0].n)
        bar[0].close()
    say("writing reports ...")
    summary = write_outputs(res, out, tearsheet=not args.no_tearsheet)
    note = f" (checkpoint trained on {mismatch})" if mismatch else ""
    print(f"{args.strategy} {inst.symbol}{note} {summary['start'][:10]}..{summary['end'][:10]}: "
          f"return {summary['total_return']:+.2%}, sharpe {summary['sharpe']:.2f}, "
          f"max DD {summary['max_drawdown']:.2%}, trades {summary['trades']}, "
          f"costs {summary['costs']}, CMDP breaches {len(summary['cmdp']['breaches'])} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
