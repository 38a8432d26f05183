"""The published walk-forward table: every fold's selected agents and the rule baselines on the fold's test period,
through ``run_backtest`` (``reports.evaluate``'s tasks), with PSR, DSR and the design's target.

    python -m reports.walk_forward --runs runs/walk_forward --workers 2 --out docs/walk_forward.md

Reads ``RUNS/walk_forward.json`` (written by ``python -m training.walk_forward``, which trained and selected the
agents: the test periods decided nothing) and backtests, per row, the fold's selected checkpoint of each trainer
(or ``flat`` where the fold selected flat on validation) and, once per test period, ``sma_cross`` and
``buy_hold``. DSR trials: the selected checkpoint's manifest
(every validation of every seed of the fold, plus the seed ensemble and flat where they competed; a fold that
selected flat carries the same count); 1 for the rule baselines.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from feeds.paths import REPO_ROOT
from reports.evaluate import EvaluationError, Task, run_grid
from training.distributed import MissingExtraError

TARGET_SHARPE, TARGET_MAX_DD = 1.5, 0.07
"""the design's target: Sharpe > 1.5 with max drawdown < 7 %"""


def tasks_for(plan: dict[str, Any], runs: Path, baselines: list[str], history_days: int | None) -> list[Task]:
    """One backtest per (row, trainer) with its selected checkpoint, and the baselines once per test period."""
    tasks, seen = [], set()
    data = plan["data"]
    for r in plan["rows"]:
        period = (r["fold"], r["symbol"], r["test_start"], r["test_end"])
        folder = runs / "backtests" / r["fold"]
        year = int(r["test_start"][:4])
        if r["checkpoint"] is None:  # the fold selected flat on validation (training.walk_forward.select)
            tasks.append(Task("flat", r["symbol"], year, r["test_start"], r["test_end"], data,
                              str(folder / f"{r['trainer']}-flat-{r['symbol']}-{year}"), history_days=history_days))
        else:
            ck = runs / r["checkpoint"]
            trained_on = json.loads((ck / "manifest.json").read_text())["symbol"]
            tasks.append(Task(r["trainer"], r["symbol"], year, r["test_start"], r["test_end"], data,
                              str(folder / f"{r['trainer']}-{r['symbol']}-{year}"), checkpoint=str(ck),
                              allow_symbol_mismatch=trained_on != r["symbol"], history_days=history_days))
        if period not in seen:
            seen.add(period)
            tasks += [Task(b, r["symbol"], year, r["test_start"], r["test_end"], data,
                           str(folder / f"{b}-{r['symbol']}-{year}"), history_days=history_days) for b in baselines]
    return tasks


def markdown(plan: dict[str, Any], tasks: list[Task], rows: list[dict], command: str) -> str:
    folds = {r["fold"]: r for r in plan["rows"]}
    a = plan["args"]
    budget = (f"{len(a['seeds'])} seed(s) ({', '.join(map(str, a['seeds']))}) per fold and trainer, "
              f"{a['total_steps']:,} steps each ({a['learning_starts']:,} random first), validation every "
              f"{a['eval_every']:,} steps" + (f", every period cut to {a['days']} days" if a["days"] else "")
              + f"; {sum(r['train_s'] for r in plan['rows'] if '-on-' not in r['fold']):,.0f} s of training in all")
    out = ["# Walk-forward", "",
           f"Train on the years before the test year, select on the year before it (the last data year before it "
           f"where that year is missing: 2021 is not in the data, so the 2022 fold selects on 2020), test on the "
           f"year; the test decides nothing. Budget: {budget}. "
           + ("The last fold's agents are also run on the other instruments: out of sample by instrument, **not by "
              "time** (their training years include 2017). " if not a.get("extra_symbols") else
              f"The agents were also trained on {', '.join(a['extra_symbols'])} (`--extra-symbols`), so the last "
              "fold's rows on those instruments' training years are **in sample**. ")
           + "Every figure is a `run_backtest` run (costs included; "
           "PSR against 0, DSR with the fold's trials: every validation of every seed, plus the ensemble and flat "
           "where they competed).", "",
           f"    python -m training.walk_forward {' '.join(_cli(a))}", f"    {command}", "",
           f"Target (design): Sharpe > {TARGET_SHARPE} with max drawdown < {TARGET_MAX_DD:.0%}.", "",
           "| fold | symbol | train | select | test | strategy | return | Sharpe | PSR | DSR | trials | max DD "
           "| max daily DD | trades | costs | breaches (gap) | target met |", "|---" * 17 + "|"]
    met = []
    for t, r in zip(tasks, rows, strict=True):
        fold = t.out.split("/")[-2]
        f = folds[fold]
        ok = r["sharpe"] > TARGET_SHARPE and r["max_drawdown"] < TARGET_MAX_DD
        agent = _selected_flat(t, plan["args"]["trainers"])
        met.append((agent or t.strategy, ok))
        label = f"{agent} → flat (validation)" if agent else t.strategy
        p2 = ["n/a" if v is None else f"{v:.2f}" for v in (r["psr"], r["dsr"])]
        out.append(f"| {fold} | {r['symbol']} | {'+'.join(map(str, f['train_years']))} | {f['val_year']} | "
                   f"{r['start'][:10]}..{r['end'][:10]} | {label} | {r['total_return']:+.2%} | "
                   f"{r['sharpe']:.2f} | {p2[0]} | {p2[1]} | {r['trials']} | {r['max_drawdown']:.2%} | "
                   f"{r['max_daily_dd']:.2%} | {r['trades']} | ${r['costs']:,.0f} | "
                   f"{r['cmdp_breaches']} ({r['gap_breaches']}) | "
                   f"{'yes' if ok else 'no'} |")
    agents = sorted({s for s, _ in met if s in plan["args"]["trainers"]})
    out += ["", "Against the target: " + "; ".join(
        f"{s} meets it in {sum(ok for x, ok in met if x == s)} of {sum(x == s for x, _ in met)} test periods"
        for s in agents) + "."]
    return "\n".join(out) + "\n"


def _selected_flat(task: Task, trainers: list[str]) -> str | None:
    """The trainer whose fold selected flat on validation, for a task ``tasks_for`` made for that; else None."""
    name = Path(task.out).name
    return next((t for t in trainers if task.strategy == "flat" and name.startswith(f"{t}-flat-")), None)


def _cli(a: dict[str, Any]) -> list[str]:
    skip = {"data", "ray_address"}
    a = {"fallback_flat": False} | a  # written before flat was a candidate: the rule it was selected by
    out = []
    for k, v in a.items():
        if k in skip or v == "" or (isinstance(v, list | tuple) and not v):
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):  # tyro's flag pair: --x / --no-x
            out.append(flag if v else "--no-" + flag[2:])
        else:
            out += [flag, *map(str, v)] if isinstance(v, list | tuple) else [flag, str(v)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "walk_forward",
                   help="the walk-forward's folder (walk_forward.json); backtests go to RUNS/backtests")
    p.add_argument("--baselines", default="sma_cross,buy_hold", help="rule strategies run on every test period")
    p.add_argument("--history-days", type=int, default=None, help="feature history before each test period")
    p.add_argument("--workers", type=int, default=None, help="parallel backtests (default 1, in this process)")
    p.add_argument("--ray-address", default=None, help="join a Ray cluster: auto or ray://HOST:PORT")
    p.add_argument("--reuse", action="store_true", help="reuse finished backtests of the same task")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "walk_forward.md")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    runs = args.runs.resolve()
    try:
        plan = json.loads((runs / "walk_forward.json").read_text())
        tasks = tasks_for(plan, runs, [b for b in args.baselines.split(",") if b], args.history_days)
        results = run_grid(tasks, args.workers, args.ray_address, args.reuse, not args.no_progress)
    except (EvaluationError, MissingExtraError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = [r["row"] for r in results]
    for t, r in zip(tasks, rows, strict=True):  # a fold's flat selection competed with every candidate
        agent = _selected_flat(t, plan["args"]["trainers"])
        if agent:
            fold = t.out.split("/")[-2]
            picked = next(p for p in plan["rows"] if p["fold"] == fold and p["trainer"] == agent)
            r["trials"], r["trials_note"] = picked["trials"], f"walk-forward {fold}: flat, selected on validation"
    command = "python -m reports.walk_forward " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(plan, tasks, rows, command))
    (runs / "walk_forward_backtests.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{len(tasks)} backtests -> {args.out}")
    return 0


if __name__ == "__main__":  # through the imported module, so Ray pickles its tasks by reference, not as __main__'s
    from reports import walk_forward as _m

    raise SystemExit(_m.main())
