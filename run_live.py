"""Run a registered strategy live on MetaTrader 5 in Backtrader's live mode (or on its terminal simulator, or paper).

    python run_live.py --strategy mtf_marl --backend sim --sim-data ../shared/data/fx/EURUSD_M1_2024.csv.gz \
        --sim-start 2024-03-04 --sim-end 2024-03-29

The same strategy classes as ``run_backtest.py``, with the same features (computed bar by bar by the incremental
driver), the same drawdown rules and validator. ``--backend mt5`` uses the MetaTrader5 module (Windows),
``mt5linux`` the rpyc bridge to a terminal under Wine, ``sim`` our terminal simulator over a data file;
``--paper``: live bars from the terminal, fills from our broker simulation (no order reaches the terminal).
Credentials come from MT5_LOGIN / MT5_PASSWORD / MT5_SERVER (or the keyring), never from the command line.
Ctrl-C or SIGTERM stops cleanly (journal flushed, outputs written). On stop it writes what run_backtest.py writes,
and summary.json gains ``live``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import time
from pathlib import Path

from brokers.instruments import UnknownSymbolError, get_instrument, instruments
from features.context import HISTORY_DAYS, history_start
from feeds.errors import DataError
from feeds.loaders import load_bars, resolve_symbol, to_utc
from feeds.paths import REPO_ROOT
from risk.drawdown import DrawdownRules
from strategies import STRATEGIES, get_strategy, strategy_params

log = logging.getLogger("run_live")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--strategy", required=True, help=f"one of: {', '.join(sorted(STRATEGIES))}")
    p.add_argument("--symbol", default=None, help="instrument (default: from --sim-data's file name)")
    p.add_argument("--backend", required=True, choices=("mt5", "mt5linux", "sim"))
    p.add_argument("--host", default="127.0.0.1", help="mt5linux rpyc server host")
    p.add_argument("--port", type=int, default=18812, help="mt5linux rpyc server port")
    p.add_argument("--server-tz", default=None,
                   help="the broker server's clock: an IANA zone (Europe/Athens) or an offset (+02:00); default: "
                        "estimated from the last tick")
    p.add_argument("--paper", action="store_true", help="live bars, fills from our broker simulation")
    p.add_argument("--history-days", type=int, default=HISTORY_DAYS,
                   help="calendar days of M1 history backfilled before the first live bar")
    p.add_argument("--checkpoint", type=Path, default=None, help="agent checkpoint folder (default: the pretrained)")
    p.add_argument("--allow-symbol-mismatch", action="store_true",
                   help="trade a checkpoint trained on another symbol")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder; its journal.sqlite carries orders and drawdown state across restarts "
                        "(default runs/live-<strategy>-<symbol>-<backend>)")
    p.add_argument("--cash", type=float, default=100_000.0,
                   help="initial balance of the drawdown rules (default: the account's balance at the first start; "
                        "the simulator's and paper account's deposit)")
    p.add_argument("--leverage", type=float, default=30.0, help="simulator and paper account leverage")
    p.add_argument("--dd-mode", choices=("prop", "trailing"), default=None)
    p.add_argument("--daily-limit", type=float, default=None)
    p.add_argument("--total-limit", type=float, default=None)
    p.add_argument("--on-excess", choices=("shrink", "block"), default="shrink")
    p.add_argument("--magic", type=int, default=20_240_101, help="magic number of our orders")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sim-clock", action="store_true",
                   help="mt5linux: the server is our simulator (stores.mt5_sim_server); drive its clock")
    p.add_argument("--sim-data", type=Path, default=None, help="sim backend: the M1 file the simulator replays")
    p.add_argument("--sim-start", default=None, help="sim backend: the first live bar (UTC date or time)")
    p.add_argument("--sim-end", default=None, help="sim backend: the last day replayed (inclusive)")
    p.add_argument("--sim-speed", type=float, default=0.0,
                   help="sim backend: virtual seconds per wall second (0 = as fast as possible)")
    p.add_argument("--sim-faults", default="none",
                   help="sim backend: e.g. requote=0.05,disconnect=0.002,timeout_executed=0.01,partial=0.02,"
                        "market_closed=0.001 (per order request; disconnect per bar); none")
    p.add_argument("--sim-seed", type=int, default=0, help="sim backend: seed of the faults")
    p.add_argument("--sim-server-tz", default="Europe/Athens", help="sim backend: the simulated server's clock")
    p.add_argument("--no-tearsheet", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no status lines")
    return p.parse_args(argv)


def _simulator(args: argparse.Namespace, symbol: str):
    from stores.mt5_sim import TerminalSimulator

    if args.sim_data is None or args.sim_start is None:
        raise ValueError("--backend sim needs --sim-data and --sim-start")
    first = history_start(args.sim_start, args.history_days) if args.history_days else args.sim_start
    bars = load_bars(args.sim_data, symbol=symbol, start=first, end=args.sim_end)
    return TerminalSimulator(bars=bars, symbol=symbol, start=args.sim_start, end=args.sim_end, speed=args.sim_speed,
                             faults=args.sim_faults, seed=args.sim_seed, cash=args.cash, leverage=args.leverage,
                             server_tz=args.sim_server_tz)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    say = (lambda msg: None) if args.no_progress else (lambda msg: print(msg, file=sys.stderr, flush=True))
    from agents.common.checkpoint import CheckpointError
    from stores.mt5 import Credentials, MT5Store, StoreConfig, TerminalError
    from strategies.base import AgentStrategy

    try:
        get_strategy(args.strategy)
        if args.backend == "sim":
            if args.sim_data is None:
                raise ValueError("--backend sim needs --sim-data and --sim-start")
            symbol = resolve_symbol(args.sim_data, args.symbol, instruments())
        elif args.symbol is None:
            raise ValueError("--symbol is required with a terminal backend")
        else:
            symbol = args.symbol.upper()
        inst = get_instrument(symbol)
        rules = DrawdownRules.from_config(mode=args.dd_mode, daily_limit=args.daily_limit,
                                          total_limit=args.total_limit)
        if args.history_days < 0:
            raise ValueError(f"--history-days takes a number >= 0, got {args.history_days}")
        if args.sim_start and args.sim_end and to_utc(args.sim_end, "end", whole_day_end=True) <= \
                to_utc(args.sim_start, "start", whole_day_end=False):
            raise ValueError(f"--sim-end {args.sim_end!r} is not after --sim-start {args.sim_start!r}")
        cls, params, mismatch = strategy_params(args.strategy, inst.symbol, args.seed, args.checkpoint,
                                                args.allow_symbol_mismatch)
        agent = issubclass(cls, AgentStrategy)
        api = None
        if args.backend == "sim":
            say(f"loading the simulator's {inst.symbol} bars from {args.sim_data} ...")
            api = _simulator(args, inst.symbol)
            creds = Credentials(login=int(os.environ.get("MT5_SIM_LOGIN", "10000001")),
                                password=os.environ.get("MT5_SIM_PASSWORD"), server="MTF-Simulator")
            server_tz = args.sim_server_tz
        else:
            creds = Credentials.from_env()
            server_tz = args.server_tz
        store = MT5Store(StoreConfig(backend=args.backend, symbol=inst.symbol, host=args.host, port=args.port,
                                     server_tz=server_tz, seed=args.seed, sim_clock=args.sim_clock), creds, api)
    except (KeyError, UnknownSymbolError, DataError, FileNotFoundError, ValueError, CheckpointError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2

    import backtrader as bt

    from analyzers.cmdp import CmdpAnalyzer
    from analyzers.live import LiveRecorder
    from analyzers.trades import TradeLog
    from brokers.bt_broker import ForexBroker
    from brokers.mt5 import MT5Broker
    from brokers.sim import ForexSim
    from feeds.mt5 import live_feeds
    from reports.output import write_outputs
    from risk.drawdown import DrawdownGuard
    from risk.validator import PreTradeValidator

    out = args.out or REPO_ROOT / "runs" / f"live-{args.strategy}-{inst.symbol}-{args.backend}"
    out.mkdir(parents=True, exist_ok=True)
    if agent:
        params["decision_log"] = out / "decisions.csv"  # every decision with its latency
    cerebro = bt.Cerebro(stdstats=False, exactbars=1, quicknotify=False)  # bounded line buffers: a live run is long
    cerebro.addstore(store)
    feeds = live_feeds(store, history_days=args.history_days, timeframes=cls.timeframes)
    for f in feeds:
        cerebro.adddata(f)
    if args.paper:
        broker = ForexBroker(ForexSim(inst, cash=args.cash, leverage=args.leverage),
                             guard=DrawdownGuard(rules, args.cash))
    else:
        broker = MT5Broker(store, inst, journal=out / "journal.sqlite", rules=rules,
                           initial_cash=None if args.backend != "sim" else args.cash, magic=args.magic)
    broker.set_data(feeds[0])
    cerebro.setbroker(broker)
    validator = PreTradeValidator(inst, on_excess=args.on_excess)
    cerebro.addstrategy(cls, instrument=inst, context=None, validator=validator, first_bar=-1, **params)
    cerebro.addanalyzer(TradeLog, _name="tradelog")
    cerebro.addanalyzer(CmdpAnalyzer, _name="cmdp", validator=validator)
    cerebro.addanalyzer(LiveRecorder, _name="live")

    def stop(signum, frame) -> None:  # Ctrl-C / SIGTERM: leave the loop at the next cycle, then stop cleanly
        log.warning("signal %s: stopping after this bar", signum)
        cerebro.runstop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    say(f"{args.strategy} live on {inst.symbol} ({args.backend}{', paper' if args.paper else ''}) -> {out}")
    t0 = time.perf_counter()
    try:
        strat = cerebro.run()[0]
    except (TerminalError, CheckpointError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    from reports.live import live_result

    res = live_result(strat, broker, args, inst, rules, elapsed)
    extra = {"live": {**(broker.summary if isinstance(broker, MT5Broker) else {"backend": args.backend, "paper": True}),
                      "rss_mb_first_week": strat.analyzers.live.rss_first_week,
                      "rss_mb_end": strat.analyzers.live.get_analysis()["rss_mb_end"],
                      "bars": strat.analyzers.live.bars, "history_bars": strat.first_bar,
                      "gaps": feeds[0].gaps, "holes": feeds[0].holes,
                      "stopped": dt.datetime.now(dt.UTC).isoformat()}}
    if args.backend == "sim":
        extra["live"]["simulator"] = api.sim_stats()
    summary = write_outputs(res, out, tearsheet=not args.no_tearsheet and res.bars > 1, extra=extra)
    note = f" (checkpoint trained on {mismatch})" if mismatch else ""
    lv = summary["live"]
    print(f"{args.strategy} {inst.symbol}{note} live {summary['start'][:16]}..{summary['end'][:16]}: "
          f"return {summary['total_return']:+.2%}, trades {summary['trades']}, orders {lv.get('orders', 0)}, "
          f"duplicates {lv.get('duplicates', 0)}, lost {lv.get('lost', 0)} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
