"""Backtest grids: every (strategy, symbol, year) through the one ``run_backtest``, in this process or on Ray.

    python -m reports.evaluate --strategies mtf_marl,td3,sma_cross,buy_hold --data ../shared/data/fx \\
        --workers 2 --out docs --runs runs/evaluation

One task per (strategy, symbol, year) found in the ``--data`` files (``SYMBOL_M1_YEAR.csv.gz``), each a call of
``run_backtest.main`` over the whole year (the weeks before it, where the data have them, as feature history
only), so there is no second backtest path. With ``--workers 1`` and no ``--ray-address`` the tasks run one after
the other in this process; otherwise each is a Ray task (1 CPU). Every figure of a row comes from the files the
run wrote (``summary.json``; ``equity.csv`` for the daily returns of the PSR and DSR), the same files whatever
ran it, so the rows do not depend on the number of workers (``tests/test_evaluate.py``).

Writes ``OUT/evaluation.json`` (one row per run), ``OUT/evaluation.md`` (strategies x periods, the best of each
column in bold) and ``OUT/evaluation/*.png`` (equity per symbol-year, a Sharpe heatmap); each run's own folder
(summary, equity, trades, fills, drawdown plot) is ``RUNS/<strategy>-<symbol>-<year>``, on the node that ran it.

Trials (for the DSR): a checkpoint's manifest ``trials`` (written by ``training.sweep`` and
``training.walk_forward``); the committed checkpoints, whose manifests predate it, were selected by the
ablation from its 12 runs x 6 validations, so they count :data:`COMMITTED_TRIALS`; rule baselines count 1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import logging
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feeds.paths import REPO_ROOT, fx_data_dir
from reports import metrics
from reports.sharpe_stats import MIN_RETURNS, deflated_sharpe, probabilistic_sharpe
from training.periods import find_periods

DEFAULT_STRATEGIES = ("mtf_marl", "td3", "sma_cross", "buy_hold")
COMMITTED_TRIALS = 72
"""Candidates the committed checkpoints were selected from: the ablation's 12 runs (4 variants x 3 seeds) x 6
validations each (every 50k of 300k steps; ``docs/ablation/ablation.md``)."""
COMMITTED_NOTE = ("committed checkpoint, selected by the ablation from 12 runs x 6 validations (its manifest "
                  "predates trial counts)")
TIMING_KEYS = ("elapsed_s",)
"""Row fields that differ from run to run of the same task (everything else must not)."""


class EvaluationError(RuntimeError):
    """A run of the grid failed; the message names the task and quotes the backtest's error."""


@dataclass(frozen=True)
class Task:
    """One backtest of the grid; paths are absolute so any worker can run it."""

    strategy: str
    symbol: str
    year: int
    start: str
    end: str
    data: str
    """the file or folder the period was found in (a folder also gives the weeks before it as history)"""
    out: str
    """the run's output folder"""
    seed: int = 0
    checkpoint: str | None = None
    """agent strategies: a checkpoint folder (None: the committed one)"""
    allow_symbol_mismatch: bool = False
    """agent strategies on another instrument than the checkpoint's"""
    history_days: int | None = None
    """calendar days before ``start`` loaded as feature history (None: run_backtest's default)"""

    @property
    def name(self) -> str:
        return f"{self.strategy}-{self.symbol}-{self.year}"

    def argv(self) -> list[str]:
        argv = ["--strategy", self.strategy, "--data", self.data, "--symbol", self.symbol, "--start", self.start,
                "--end", self.end, "--seed", str(self.seed), "--out", self.out, "--no-tearsheet", "--no-progress"]
        if self.checkpoint:
            argv += ["--checkpoint", self.checkpoint]
        if self.allow_symbol_mismatch:
            argv.append("--allow-symbol-mismatch")
        if self.history_days is not None:
            argv += ["--history-days", str(self.history_days)]
        return argv


# ------------------------------------------------------------------------------------------- the grid

def make_tasks(strategies: list[str], periods: list[tuple[str, int, Path]], runs: Path, days: int | None = None,
               seed: int = 0, checkpoints: dict[str, str] | None = None,
               history_days: int | None = None) -> list[Task]:
    """The grid, period-major (symbol, year) then in the order of ``strategies``. ``days``: only the first
    ``days`` calendar days of each year (quick looks and tests); ``history_days``: as run_backtest's."""
    from strategies import STRATEGIES
    from strategies.base import AgentStrategy

    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise KeyError(f"unknown strategies {unknown}; known: {', '.join(sorted(STRATEGIES))}")
    tasks = []
    for sym, year, path in periods:
        start = pd.Timestamp(year, 1, 1)
        end = start + pd.Timedelta(days=days - 1) if days else pd.Timestamp(year, 12, 31)
        for strat in strategies:
            agent = issubclass(STRATEGIES[strat], AgentStrategy)
            ck = (checkpoints or {}).get(strat)
            trained_on = _checkpoint_symbol(strat, ck) if agent else None
            tasks.append(Task(strat, sym, year, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}", str(path),
                              str((runs / f"{strat}-{sym}-{year}").resolve()), seed,
                              str(Path(ck).resolve()) if ck else None,
                              allow_symbol_mismatch=trained_on is not None and trained_on != sym,
                              history_days=history_days))
    return tasks


def _is_agent(strategy: str) -> bool:
    from strategies import STRATEGIES
    from strategies.base import AgentStrategy

    return issubclass(STRATEGIES[strategy], AgentStrategy)


def _checkpoint_path(strategy: str, checkpoint: str | None) -> Path:
    from strategies import STRATEGIES

    return Path(checkpoint) if checkpoint else STRATEGIES[strategy].default_checkpoint


def _checkpoint_symbol(strategy: str, checkpoint: str | None) -> str | None:
    man = _checkpoint_path(strategy, checkpoint) / "manifest.json"
    return json.loads(man.read_text()).get("symbol") if man.is_file() else None


def selection_trials(strategy: str, checkpoint: str | None) -> tuple[int, str]:
    """How many candidates the strategy was selected from (the DSR's trials), and where that number comes from."""
    from strategies import STRATEGIES
    from strategies.base import AgentStrategy

    if not issubclass(STRATEGIES[strategy], AgentStrategy):
        return 1, "rule baseline: nothing was selected"
    path = _checkpoint_path(strategy, checkpoint)
    man = json.loads((path / "manifest.json").read_text())
    if "trials" in man:
        return int(man["trials"]), str(man.get("trials_note", "the checkpoint manifest's trial count"))
    if path.resolve() == STRATEGIES[strategy].default_checkpoint.resolve():
        return COMMITTED_TRIALS, COMMITTED_NOTE
    return 1, "the checkpoint's manifest records no trial count: counted as 1, so its DSR is an upper bound"


# ------------------------------------------------------------------------------------------- one task

def sharpe_probabilities(returns: np.ndarray, trials: int) -> tuple[float | None, float | None]:
    """(PSR against 0, DSR given ``trials``) of daily returns; (None, None) for a flat strategy (zero variance)
    or fewer than ``MIN_RETURNS`` days, which have no Sharpe to be probable about."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < MIN_RETURNS or float(np.ptp(r)) == 0.0:
        return None, None
    return probabilistic_sharpe(r, 0.0), deflated_sharpe(r, trials)


def daily_returns_of_run(out: Path, initial_cash: float) -> pd.Series:
    """Daily returns per FX trading day from the run's ``equity.csv``. Its rows are the last equity of each UTC
    hour and a trading day ends on an hour (17:00 New York), so these are the daily returns of the summary."""
    eq = pd.read_csv(out / "equity.csv", index_col="datetime", parse_dates=["datetime"])
    return metrics.daily_returns(pd.DatetimeIndex(eq.index), eq["equity"].to_numpy(), initial_cash)


def row_from_run(task: Task, out: Path) -> tuple[dict[str, Any], pd.Series]:
    """The evaluation row of a finished run and its daily equity (for the plots)."""
    s = json.loads((out / "summary.json").read_text())
    rets = daily_returns_of_run(out, s["initial_cash"])
    sharpe = metrics.sharpe(rets)
    if not math.isclose(sharpe, s["sharpe"], rel_tol=1e-9, abs_tol=1e-12):
        raise EvaluationError(f"{task.name}: the daily returns of equity.csv give Sharpe {sharpe}, summary.json "
                              f"says {s['sharpe']}: the PSR would not describe the reported run")
    trials, note = selection_trials(task.strategy, task.checkpoint)
    warned = json.loads((out / "warnings.json").read_text()) if (out / "warnings.json").is_file() else {}
    psr, dsr = sharpe_probabilities(rets.to_numpy(), trials)
    costs = s["costs"]
    c = s["cmdp"]
    row = {
        "strategy": task.strategy, "symbol": task.symbol, "year": task.year, "start": s["start"], "end": s["end"],
        "bars": s["bars"], "total_return": s["total_return"], "sharpe": s["sharpe"], "sortino": s["sortino"],
        "max_drawdown": s["max_drawdown"], "max_daily_dd": s["max_daily_drawdown"], "trades": s["trades"],
        "costs": round(sum(costs.values()), 2), "costs_detail": costs, "cmdp_breaches": len(c["breaches"]),
        "gap_breaches": sum(bool(b["gap"]) for b in c["breaches"]), "max_total_dd": c["max_total_dd"],
        "psr": psr, "dsr": dsr, "trials": trials, "trials_note": note, "days": len(rets),
        "buy_hold_return": s["buy_hold_return"], "seed": s["seed"],
        "checkpoint": _rel(_checkpoint_path(task.strategy, task.checkpoint)) if _is_agent(task.strategy) else None,
        "symbol_mismatch": s.get("symbol_mismatch"), "warnings": sum(warned.values()),
        "warning_lines": dict(sorted(warned.items(), key=lambda kv: -kv[1])[:5]), "run": Path(task.out).name,
        "elapsed_s": s["elapsed_s"],
    }
    equity = (1.0 + rets).cumprod() * s["initial_cash"]
    equity.attrs["initial_cash"] = s["initial_cash"]
    return row, equity


def _rel(p: Path) -> str:
    p = p.resolve()
    return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)


_CODE = ("feeds", "features", "risk", "brokers", "analyzers", "strategies", "agents", "reports", "configs")
_TOOLS = {"reports/evaluate.py", "reports/walk_forward.py", "reports/stress.py", "reports/cmdp_sweep.py"}
"""tools that call run_backtest, not code it runs (a row is always recomputed from the run's files)"""


@functools.cache
def code_hash() -> str:
    """SHA-256 over the source a backtest runs: ``run_backtest.py`` and its packages' ``.py`` and ``.yaml`` files,
    without the grid tools (``_TOOLS``)."""
    h = hashlib.sha256()
    files = [REPO_ROOT / "run_backtest.py"] + sorted(
        f for d in _CODE for f in (REPO_ROOT / d).rglob("*")
        if f.suffix in (".py", ".yaml") and f.is_file() and f.relative_to(REPO_ROOT).as_posix() not in _TOOLS)
    for f in files:
        h.update(str(f.relative_to(REPO_ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _task_key(task: Task) -> dict[str, Any]:
    """What decides a run's result: the task, the code and the checkpoint's bytes (``--reuse`` reads a run folder
    only when all three are the same)."""
    from strategies import STRATEGIES
    from strategies.base import AgentStrategy

    key: dict[str, Any] = asdict(task) | {"code_sha256": code_hash()}
    if issubclass(STRATEGIES[task.strategy], AgentStrategy):
        path = _checkpoint_path(task.strategy, task.checkpoint)
        key["checkpoint_sha256"] = {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
                                    for f in sorted(path.glob("*")) if f.is_file()}
    return key


def run_task(task: Task, reuse: bool = False) -> dict[str, Any]:
    """Run one backtest through ``run_backtest.main`` (its messages captured) and return its row and daily
    equity. With ``reuse`` a run folder left by the same task (same checkpoint bytes) is read instead."""
    from run_backtest import main as run_backtest_main

    out = Path(task.out)
    key = _task_key(task)
    done = out / "task.json"
    if not (reuse and done.is_file() and json.loads(done.read_text()) == key and (out / "summary.json").is_file()):
        err = io.StringIO()
        root = logging.getLogger()
        saved = root.handlers[:], root.level
        handler = logging.StreamHandler(err)  # the run's log warnings go to the row, not to the grid's terminal
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.handlers, root.level = [handler], logging.WARNING
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = run_backtest_main(task.argv())
        finally:
            root.handlers, root.level = saved
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        if rc != 0:
            raise EvaluationError(f"{task.name}: run_backtest exited {rc}: {lines[-1] if lines else '(no message)'}")
        warnings = Counter(ln for ln in lines if ln.startswith("WARNING"))
        (out / "warnings.json").write_text(json.dumps(dict(sorted(warnings.items())), indent=2) + "\n")
        done.write_text(json.dumps(key, indent=2) + "\n")
    row, equity = row_from_run(task, out)
    return {"row": row, "initial_cash": float(equity.attrs["initial_cash"]),
            "equity": [[f"{d:%Y-%m-%d}", float(v)] for d, v in equity.items()]}


def run_grid(tasks: list[Task], workers: int | None = 1, address: str | None = None, reuse: bool = False,
             progress: bool = True) -> list[dict[str, Any]]:
    """Every task's result, in the order of ``tasks`` (in-process for one worker, else Ray tasks)."""
    from tqdm import tqdm

    from training.distributed import run_ordered

    bar = tqdm(total=len(tasks), unit="run", desc="backtests", disable=not progress, file=sys.stderr)

    def done(k: int, res: dict) -> None:
        bar.set_postfix_str(tasks[k].name)
        bar.update(1)

    try:
        return run_ordered(run_task, [(t, reuse) for t in tasks], workers, address, on_done=done)
    finally:
        bar.close()


# ------------------------------------------------------------------------------------------- reports

_COLUMNS = [  # (row key, title, format, best = max or min)
    ("sharpe", "Sharpe (annualised, daily returns)", "{:.2f}", max),
    ("psr", "PSR (P[true Sharpe > 0])", "{:.2f}", max),
    ("dsr", "DSR (PSR against the best of `trials` lucky ones)", "{:.2f}", max),
    ("total_return", "Total return", "{:+.2%}", max),
    ("max_drawdown", "Max drawdown (peak to trough, worst prices)", "{:.2%}", min),
    ("max_daily_dd", "Max daily drawdown (CMDP, prop rules)", "{:.2%}", min),
    ("cmdp_breaches", "CMDP breaches", "{:d}", min),
    ("trades", "Closed trades", "{:d}", None),
]


def _period(r: dict) -> str:
    return f"{r['symbol']} {r['year']}"


def markdown(rows: list[dict], command: str, days: int | None) -> str:
    """The tables a reader wants: one per figure, strategies x periods, the best of each column in bold."""
    periods = list(dict.fromkeys(_period(r) for r in rows))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    cell = {(r["strategy"], _period(r)): r for r in rows}
    span = f"the first {days} days of each year" if days else "each whole year"
    out = ["# Evaluation: every strategy on every data year", "",
           f"Backtests through `run_backtest` (the one backtest path, costs included) over {span}, each from the "
           "period's first bar with the weeks before it as feature history where the data have them, "
           "$100,000, leverage 30, prop drawdown rules (daily 5 %, total 10 %). Produced by:", "",
           f"    {command}", "",
           "Sharpe, Sortino and the PSR/DSR use daily returns per FX trading day (the day ends at the 17:00 New "
           f"York rollover; Sharpe annualised with {metrics.PERIODS_PER_YEAR} days). PSR: probability that the "
           "true Sharpe exceeds 0 (Bailey and Lopez de Prado 2012); DSR: the same against the Sharpe the best of "
           "`trials` skill-less candidates would show by luck (2014; `reports/sharpe_stats.py`, the trials' Sharpe "
           "variance taken as the estimator's own, 1/(T-1)). A flat strategy has no PSR (n/a). Agent checkpoints "
           "trained on EURUSD trade the other instruments out of sample by instrument (`--allow-symbol-mismatch`), "
           "not by time where their training years include the year.", ""]
    for key, title, fmt, best in _COLUMNS:
        out += [f"## {title}", "", "| strategy | " + " | ".join(periods) + " |",
                "|---|" + "---|" * len(periods)]
        marks: dict[str, set[str]] = {}
        for p in periods:
            vals = {s: cell[s, p][key] for s in strategies if (s, p) in cell and cell[s, p][key] is not None}
            if best is not None and len(vals) > 1:
                b = best(vals.values())
                marks[p] = {s for s, v in vals.items() if v == b}
        for s in strategies:
            cells = []
            for p in periods:
                r = cell.get((s, p))
                v = None if r is None else r[key]
                txt = "" if r is None else ("n/a" if v is None else fmt.format(v))
                cells.append(f"**{txt}**" if s in marks.get(p, ()) else txt)
            out.append(f"| {s} | " + " | ".join(cells) + " |")
        out.append("")
    notes = sorted({(r["strategy"], r["trials"], r["trials_note"]) for r in rows})
    out += ["## Trials behind each strategy (for the DSR)", "", "| strategy | trials | source |", "|---|---|---|",
            *[f"| {s} | {n} | {why} |" for s, n, why in notes], ""]
    out += ["## Every run", "",
            "| strategy | symbol | start | end | bars | return | Sharpe | Sortino | PSR | DSR | trials | max DD "
            "| max daily DD | trades | costs USD | breaches (gap) | buy-and-hold | log warnings | checkpoint |",
            "|---" * 19 + "|"]
    for r in rows:
        f2 = ["n/a" if v is None else f"{v:.2f}" for v in (r["psr"], r["dsr"])]
        mism = f" (trained on {r['symbol_mismatch']['checkpoint']})" if r["symbol_mismatch"] else ""
        out.append(f"| {r['strategy']} | {r['symbol']} | {r['start'][:10]} | {r['end'][:10]} | {r['bars']:,} | "
                   f"{r['total_return']:+.2%} | {r['sharpe']:.2f} | {r['sortino']:.2f} | {f2[0]} | "
                   f"{f2[1]} | {r['trials']} | {r['max_drawdown']:.2%} | {r['max_daily_dd']:.2%} | "
                   f"{r['trades']} | {r['costs']:,.0f} | {r['cmdp_breaches']} ({r['gap_breaches']}) | "
                   f"{r['buy_hold_return']:+.2%} | {r['warnings']} | {(r['checkpoint'] or '') + mism} |")
    warned = [r for r in rows if r["warnings"]]
    if warned:
        out += ["", "Log warnings of the runs (count, the most frequent lines; all in `evaluation.json`):", ""]
        out += [f"* {r['strategy']} {r['symbol']} {r['year']}: {r['warnings']}: "
                + "; ".join(f"`{line}` x{n}" for line, n in list(r["warning_lines"].items())[:2]) for r in warned]
    return "\n".join(out) + "\n"


def plots(results: list[dict], folder: Path) -> list[Path]:
    """Equity per symbol-year (one line per strategy) and a Sharpe heatmap (strategies x periods)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    rows = [r["row"] for r in results]
    periods = list(dict.fromkeys((r["symbol"], r["year"]) for r in rows))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    written = []
    for sym, year in periods:
        fig, ax = plt.subplots(figsize=(10, 3.6))
        for res in results:
            r = res["row"]
            if (r["symbol"], r["year"]) == (sym, year):
                eq = pd.Series([v for _, v in res["equity"]], index=pd.to_datetime([d for d, _ in res["equity"]]))
                ax.plot(eq.index, 100 * (eq / res["initial_cash"] - 1), lw=0.9,
                        label=f"{r['strategy']} ({r['sharpe']:.2f})")
        ax.axhline(0, color="grey", lw=0.7)
        ax.set_ylabel("return, % of the initial balance")
        ax.set_title(f"{sym} {year}: equity at each FX trading day's close (Sharpe in brackets)", loc="left")
        ax.legend(fontsize=8, ncol=len(strategies), loc="lower left", bbox_to_anchor=(0, 1.08), frameon=False)
        fig.tight_layout()
        written.append(folder / f"equity_{sym}_{year}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    grid = np.full((len(strategies), len(periods)), np.nan)
    for r in rows:
        grid[strategies.index(r["strategy"]), periods.index((r["symbol"], r["year"]))] = r["sharpe"]
    fig, ax = plt.subplots(figsize=(1.2 * len(periods) + 2.5, 0.6 * len(strategies) + 1.6))
    lim = max(1.0, float(np.nanmax(np.abs(grid))))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(periods)), [f"{s}\n{y}" for s, y in periods], fontsize=8)
    ax.set_yticks(range(len(strategies)), strategies, fontsize=8)
    fig.colorbar(im, ax=ax, label="Sharpe")
    ax.set_title("Sharpe ratio by strategy and period", loc="left", fontsize=10)
    fig.tight_layout()
    written.append(folder / "sharpe_heatmap.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def write_reports(results: list[dict], out: Path, command: str, days: int | None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [r["row"] for r in results]
    (out / "evaluation.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "evaluation.md").write_text(markdown(rows, command, days))
    pngs = plots(results, out / "evaluation")
    return {"json": out / "evaluation.json", "md": out / "evaluation.md", "png": pngs[0].parent}


# ------------------------------------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES), help="comma-separated registered names")
    p.add_argument("--data", type=Path, nargs="+", default=None,
                   help="files or folders of SYMBOL_M1_YEAR files (default: $MTF_DATA_DIR or ../shared/data/fx)")
    p.add_argument("--symbols", nargs="+", default=None, help="only these symbols (default: every one found)")
    p.add_argument("--years", type=int, nargs="+", default=None, help="only these years (default: every one)")
    p.add_argument("--days", type=int, default=None, help="only the first DAYS calendar days of each year")
    p.add_argument("--history-days", type=int, default=None,
                   help="calendar days of feature history before each period (default: run_backtest's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", action="append", default=[], metavar="STRATEGY=DIR",
                   help="an agent strategy's checkpoint (repeatable; default: the committed ones)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel tasks (default: 1, in this process; with --ray-address: the cluster's CPUs)")
    p.add_argument("--ray-address", default=None, help="join a Ray cluster: auto or ray://HOST:PORT")
    p.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "evaluation",
                   help="where each run's own folder goes (default runs/evaluation)")
    p.add_argument("--reuse", action="store_true",
                   help="read the run folder of the same task (same code, same checkpoint bytes) instead of running it")
    p.add_argument("--out", type=Path, required=True, help="folder for evaluation.json, evaluation.md and PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from training.distributed import MissingExtraError

    try:
        checkpoints = dict(c.split("=", 1) for c in args.checkpoint)
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        periods = find_periods(args.data or [fx_data_dir()], args.symbols, args.years)
        tasks = make_tasks(strategies, periods, args.runs, args.days, args.seed, checkpoints, args.history_days)
        t0 = time.perf_counter()
        results = run_grid(tasks, args.workers, args.ray_address, args.reuse, not args.no_progress)
    except (EvaluationError, MissingExtraError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    command = "python -m reports.evaluate " + " ".join(argv if argv is not None else sys.argv[1:])
    files = write_reports(results, args.out, command, args.days)
    print(f"{len(tasks)} runs in {time.perf_counter() - t0:.0f} s -> {files['md']}, {files['json']}, "
          f"{files['png']}/")
    return 0


if __name__ == "__main__":  # through the imported module, so Ray pickles its tasks by reference, not as __main__'s
    from reports import evaluate as _m

    raise SystemExit(_m.main())
