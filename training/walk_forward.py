"""Walk-forward: for each EURUSD test year from 2020 on, train on the years before it, select on the year before it,
test on the year; then the last fold's agents on the other instruments' years (out of sample by instrument only).

    python -m training.walk_forward --seeds 0 1 2 --workers 2 --runs runs/walk_forward

Folds follow the data (``training.periods.walk_forward_folds``): with EURUSD 2017, 2019, 2020, 2022, 2023 and
2024 they are test 2020 (select 2019, train 2017), test 2022 (select 2020: 2021 is not in the data; train 2017,
2019), test 2023 (select 2022, train 2017-2020) and test 2024 (select 2023, train 2017-2022). For each fold,
trainer and seed one training run (``training.train_mtf_marl`` / ``training.train_td3``, the same call as run
alone; a Ray task of 1 CPU each with ``--workers`` > 1 or ``--ray-address``) keeps its best checkpoint by
validation score; the fold's selected checkpoint is the best of its seeds (ties: the lowest seed), copied to
``RUNS/<fold>/<trainer>-selected`` with ``trials`` (every validation of every seed, and flat) in its manifest.
Flat is a candidate too (``--fallback-flat``, on by default): where no checkpoint scores above flat's 0 on the
validation year, the fold trades nothing in its test year (row ``checkpoint`` None, ``selected: flat``). With
``--ensemble`` (MTF-MARL) the fold's model is instead the seed ensemble, the mean action of every seed's best
checkpoint (``agents.mtf_marl.ensemble``, ``RUNS/<fold>/mtf_marl-ensemble``), scored on the validation year as one
model (against flat). The test year decides nothing.

Resumable: finished runs (``train_summary.json``) are reused, an interrupted MTF-MARL run continues from its
``last`` checkpoint (exact), an interrupted TD3 run starts again; test evaluations are cached per checkpoint.

Tests here go through the training envs (``training.evaluate``, which matches the backtest fill for fill); the
published table, with PSR and DSR and the rule baselines, is made from ``RUNS/walk_forward.json`` by
``python -m reports.walk_forward`` through ``run_backtest``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from agents.mtf_marl.checkpoint import load_mtf_marl_actors
from agents.mtf_marl.ensemble import write_ensemble
from agents.td3.checkpoint import load_td3_actor
from feeds.paths import REPO_ROOT, fx_data_dir
from training.args import RunPlan
from training.data import period_contexts
from training.distributed import run_ordered
from training.env_config import EnvConfig
from training.evaluate import evaluate_hierarchical, evaluate_single, validation_score
from training.periods import Fold, find_periods, walk_forward_folds
from training.sweep import RESUMABLE, TRAINERS, trainer_args


@dataclass
class Args:
    """Folds, trainers, seeds and budget of a walk-forward."""

    symbol: str = "EURUSD"
    """instrument trained on"""
    first_test_year: int = 2020
    """first test year"""
    test_years: tuple[int, ...] = ()
    """only these test years (default: every fold the data allow from first_test_year)"""
    trainers: tuple[str, ...] = ("mtf_marl", "td3")
    """trainers (training.sweep.TRAINERS)"""
    seeds: tuple[int, ...] = (0,)
    """seeds per fold and trainer; the fold selects the best of them by validation score"""
    total_steps: int = 300_000
    """environment steps per training run"""
    learning_starts: int = 20_000
    """random steps before learning"""
    eval_every: int = 50_000
    """steps between validations"""
    action_mode: Literal["free", "timing"] = "free"
    """MTF-MARL action design (``risk.actions.joint_target_for``): free, or timing (the director decides direction
    and size, the executor only times entries and exits)"""
    min_hold_bars: int = 0
    """timing mode: M1 bars an entry is held before the executor may leave it"""
    turnover_penalty: float = 0.0
    """reward penalty per full-size position traded, beyond the costs already in the P&L"""
    exec_minutes: int = 1
    """MTF-MARL execution cadence (``agents.mtf_marl.cadence``): the executor decides on each completed M1 / M5 / M15
    bar"""
    reward: Literal["pnl_vol", "dsr"] = "pnl_vol"
    """P&L part of the reward: pnl_vol or dsr (differential Sharpe ratio, training/rewards.py)"""
    days: int = 0
    """> 0: every period (training, validation, test) ends DAYS days after it starts (tiny runs); 0: whole years"""
    other_symbols: tuple[str, ...] = ("GBPUSD", "USDJPY", "XAUUSD")
    """instruments the last fold's agents are also tested on, every year the data hold"""
    data: str = ""
    """M1 data folder; empty: $MTF_DATA_DIR or ../shared/data/fx"""
    workers: int = 1
    """runs at a time: 1 in this process, more as Ray tasks of 1 CPU (the [distributed] extra)"""
    ray_address: str = ""
    """join a Ray cluster (auto or ray://HOST:PORT) instead of starting Ray on this machine"""
    runs: str = "runs/walk_forward"
    """training runs, selected checkpoints and walk_forward.json"""
    extra_symbols: tuple[str, ...] = ()
    """mtf_marl only: more training data, these instruments' bars in each fold's training years, with their own
    costs (``train_mtf_marl --extra-symbols``); their test rows are then in sample and labelled so"""
    market_features: bool = False
    """mtf_marl only: the observations end with the market block (``features.market``: sessions, levels, slower
    returns and volatilities, carry, macro changes)"""
    ensemble: bool = False
    """mtf_marl only: the fold's model is the seed ensemble (the mean action of every seed's best checkpoint,
    ``agents.mtf_marl.ensemble``), scored on validation as one model, instead of the best single seed"""
    fallback_flat: bool = True
    """flat is a candidate too: a fold whose best validated checkpoint scores no better than flat (score <= 0)
    selects flat (never trades) for its test; off: always the best checkpoint"""


def _period(first_year: int, last_year: int, days: int) -> tuple[str, str]:
    """(start, end) from the first year's 1 January to the last year's 31 December, or ``days`` days long."""
    if days > 0:
        return f"{first_year}-01-01", str(dt.date(first_year, 1, 1) + dt.timedelta(days=days - 1))
    return f"{first_year}-01-01", f"{last_year}-12-31"


def fold_plan(fold: Fold, args: Args) -> RunPlan:
    """The fold's training and validation periods and budget."""
    tr = _period(fold.train_years[0], fold.train_years[-1], args.days)
    va = _period(fold.val_year, fold.val_year, args.days)
    return RunPlan(train_start=tr[0], train_end=tr[1], val_start=va[0], val_end=va[1], total_steps=args.total_steps,
                   learning_starts=args.learning_starts, eval_every=args.eval_every)


def check_design(run: Path, trainer: str, design: dict[str, Any]) -> None:
    """Refuse to reuse a finished run trained with other design levers than this walk-forward's (a folder from
    another configuration); a lever the run's manifest predates counts as the trainer's default."""
    man = json.loads((run / "best" / "manifest.json").read_text())["args"]
    known = trainer_args(trainer, {})

    def norm(v: Any) -> Any:  # JSON gives lists back
        return list(v) if isinstance(v, list | tuple) else v

    diff = [k for k, v in design.items() if hasattr(known, k) and norm(man.get(k, getattr(known, k))) != norm(v)]
    if diff:
        what = ", ".join(f"{k}: {man.get(k)!r} there, {design[k]!r} here" for k in diff)
        raise ValueError(f"{run} was trained with other settings ({what}); give this configuration its own --runs "
                         "folder")


def train_run(trainer: str, plan: RunPlan, seed: int, symbol: str, data: str, out: str,
              design: dict[str, Any] | None = None) -> dict[str, Any]:
    """One training run (reused when finished; an MTF-MARL run continues from its last checkpoint). ``design``:
    the env-config levers (action mode, minimum hold, turnover penalty) every run of the walk-forward shares."""
    done = Path(out) / "train_summary.json"
    if done.is_file():
        check_design(Path(out), trainer, design or {})
        return json.loads(done.read_text())
    settings = asdict(plan) | (design or {}) | {"seed": seed, "symbol": symbol, "data": data, "out": out,
                                                "tensorboard": False}
    if trainer in RESUMABLE and (Path(out) / "last" / "manifest.json").is_file():
        settings["resume"] = str(Path(out) / "last")
    return importlib.import_module(TRAINERS[trainer]).main(trainer_args(trainer, settings))


FLAT_SCORE = 0.0
"""``training.evaluate.validation_score`` of a policy that never trades"""


def select(trainer: str, runs: list[Path], seeds: tuple[int, ...], dst: Path, fold: Fold,
           fallback_flat: bool = False, ensemble: tuple[Path, float] | None = None) -> dict[str, Any]:
    """Copy the fold's model to ``dst`` with the number of candidates behind it in its manifest.

    The model is the best seed's best checkpoint (ties: the lowest seed), or with ``ensemble`` = (checkpoint, its
    validation score) that seed ensemble, scored as one model. With ``fallback_flat``, flat is one more candidate,
    scored ``FLAT_SCORE`` on the same validation: when the model does not score strictly above it, nothing is copied
    (``dst`` is removed) and the result says ``selected: flat`` (ties go to flat: it pays no costs and has nothing
    to overfit). Trials (for the DSR): every validation of every seed, plus the ensemble and flat where they
    competed."""
    summaries = [json.loads((r / "train_summary.json").read_text()) for r in runs]
    k = max(range(len(runs)), key=lambda i: (summaries[i]["best_score"], -seeds[i]))
    candidates = sum(len(s["history"]) for s in summaries) + int(fallback_flat) + int(ensemble is not None)
    train_s = round(sum(s["elapsed_s"] for s in summaries), 1)
    if ensemble is not None:
        source, score, seed, what = ensemble[0], ensemble[1], "ensemble", f"the mean action of {len(runs)} seeds"
        val = None
    else:
        source, score, seed = runs[k] / "best", summaries[k]["best_score"], seeds[k]
        what = f"the best validation score of {len(runs)} seed(s) x their validations"
        val = max(summaries[k]["history"], key=lambda h: h["score"])
    if dst.exists():
        shutil.rmtree(dst)
    if fallback_flat and not score > FLAT_SCORE:
        return {"selected": "flat", "seed": None, "score": FLAT_SCORE, "model_score": score, "model_seed": seed,
                "model_checkpoint": str(source), "trials": candidates, "train_s": train_s, "val": None}
    shutil.copytree(source, dst)
    man = json.loads((dst / "manifest.json").read_text())
    man |= {"trials": candidates,
            "trials_note": f"walk-forward {fold.name}: {what} on {fold.val_year}"
                           f"{', against flat' if fallback_flat else ''}; {candidates} candidates looked at "
                           "(every validation of every seed, the ensemble and flat where they competed)",
            "walk_forward": {"fold": asdict(fold), "seed": seed, "score": score}}
    (dst / "manifest.json").write_text(json.dumps(man, indent=2, default=str) + "\n")
    return {"selected": "checkpoint", "seed": seed, "score": score, "trials": candidates, "train_s": train_s,
            "val": val}


def fold_ensemble(runs: list[Path], seeds: tuple[int, ...], dst: Path, symbol: str, fold: Fold, plan: RunPlan,
                  data: str) -> tuple[Path, float]:
    """The seed ensemble of a fold (every seed's best checkpoint) at ``dst`` and its validation score, from the
    same envs and score as each seed's own validation (cached per ensemble weights)."""
    write_ensemble([r / "best" for r in runs], dst, list(seeds), note=f"walk-forward {fold.name}")
    res = evaluate_checkpoint("mtf_marl", str(dst), symbol, plan.val_start, plan.val_end, data)
    return dst, validation_score(res)


def flat_policies() -> tuple[Any, Any]:
    """(director, executor) that never trade: limit 0 (``risk.actions.unit_interval(-1)``), no entry."""
    return (lambda _obs: np.array([0.0, -1.0], np.float32)), (lambda _obs: np.zeros(2, np.float32))


def evaluate_checkpoint(trainer: str, checkpoint: str, symbol: str, start: str, end: str, data: str,
                        flat: bool = False) -> dict[str, Any]:
    """The checkpoint over a test period through the training envs (cached in the checkpoint's folder); with
    ``flat``, a policy that never trades on the checkpoint's env config (the same account, costs and summary; not
    cached)."""
    ck = Path(checkpoint)
    if flat:
        man = json.loads((ck / "manifest.json").read_text())
        cfg = replace(EnvConfig.from_dict(man["env_config"]), symbol=symbol)
        ctx = period_contexts(symbol, start, end, data or None, market=cfg.market_features)
        return evaluate_hierarchical(ctx, cfg, *flat_policies())
    key = {"symbol": symbol, "period": [start, end],
           "weights": hashlib.sha256((ck / "weights.pt").read_bytes()).hexdigest()}
    cache = ck / f"test_{symbol}_{start}_{end}.json"
    if cache.is_file() and json.loads(cache.read_text())["key"] == key:
        return json.loads(cache.read_text())["result"]
    market = json.loads((ck / "manifest.json").read_text())["env_config"].get("market_features", False)
    ctx = period_contexts(symbol, start, end, data or None, market=market)
    if trainer == "td3":
        actor, man = load_td3_actor(ck)
        res = evaluate_single(ctx, replace(EnvConfig.from_dict(man["env_config"]), symbol=symbol), actor)
    else:
        h4, m1, man = load_mtf_marl_actors(ck)
        res = evaluate_hierarchical(ctx, replace(EnvConfig.from_dict(man["env_config"]), symbol=symbol), h4, m1)
    cache.write_text(json.dumps({"key": key, "result": res}, indent=2) + "\n")
    return res


def main(args: Args) -> dict[str, Any]:
    for flag, on in (("--ensemble", args.ensemble), ("--extra-symbols", bool(args.extra_symbols)),
                     ("--market-features", args.market_features)):
        if on and set(args.trainers) != {"mtf_marl"}:
            raise ValueError(f"{flag} is built for mtf_marl only; got trainers {list(args.trainers)}")
    unknown = [t for t in args.trainers if t not in TRAINERS or t == "four_agent"]
    if unknown:
        raise ValueError(f"walk-forward trainers must be among {sorted(set(TRAINERS) - {'four_agent'})}; got {unknown}")
    data = str(Path(args.data).resolve()) if args.data else str(fx_data_dir())
    runs = (Path(args.runs) if Path(args.runs).is_absolute() else REPO_ROOT / args.runs).resolve()
    years = [y for _, y, _ in find_periods([Path(data)], [args.symbol])]
    folds = walk_forward_folds(years, args.first_test_year, list(args.test_years) or None)
    t0 = time.perf_counter()
    design = {"action_mode": args.action_mode, "min_hold_bars": args.min_hold_bars,
              "turnover_penalty": args.turnover_penalty, "exec_minutes": args.exec_minutes, "reward": args.reward,
              "extra_symbols": tuple(args.extra_symbols), "market_features": args.market_features}
    jobs = [(t, fold_plan(f, args), s, args.symbol, data, str(runs / f.name / f"{t}-s{s}"), design)
            for f in folds for t in args.trainers for s in args.seeds]
    run_ordered(train_run, jobs, args.workers, args.ray_address or None)
    rows, evals = [], []
    for f in folds:
        for t in args.trainers:
            dst = runs / f.name / f"{t}-selected"
            seed_runs = [runs / f.name / f"{t}-s{s}" for s in args.seeds]
            ens = fold_ensemble(seed_runs, args.seeds, runs / f.name / f"{t}-ensemble", args.symbol, f,
                                fold_plan(f, args), data) if args.ensemble else None
            sel = select(t, seed_runs, args.seeds, dst, f, args.fallback_flat, ens)
            test = _period(f.test_year, f.test_year, args.days)
            picked = sel["selected"] == "checkpoint"
            rows.append({"fold": f.name, **asdict(f), "adjacent_validation": f.adjacent, "trainer": t,
                         "symbol": args.symbol, "test_start": test[0], "test_end": test[1],
                         "checkpoint": str(dst.relative_to(runs)) if picked else None, "out_of_sample": "time",
                         **sel})
            evals.append((t, str(dst) if picked else sel["model_checkpoint"], args.symbol, test[0], test[1], data,
                          not picked))
    # the last fold's agents (trained on the most EURUSD years) on the other instruments' years
    last = {r["trainer"]: r for r in rows if r["fold"] == folds[-1].name}
    want = {x.upper() for x in args.other_symbols}
    for sym, y, _ in find_periods([Path(data)]) if want else []:
        if sym not in want:
            continue
        for t in args.trainers:
            test = _period(y, y, args.days)
            by_time = y > folds[-1].val_year
            trained = sym in {x.upper() for x in args.extra_symbols} and y in folds[-1].train_years
            rows.append(last[t] | {"fold": f"{folds[-1].name}-on-{sym}{y}", "symbol": sym, "test_start": test[0],
                                   "test_end": test[1], "out_of_sample": "none (trained on these bars)" if trained
                                   else "instrument and time" if by_time else
                                   "instrument only (its training years include this year)"})
            picked = last[t]["checkpoint"] is not None
            evals.append((t, str(runs / last[t]["checkpoint"]) if picked else last[t]["model_checkpoint"], sym,
                          test[0], test[1], data, not picked))
    results = run_ordered(evaluate_checkpoint, evals, args.workers, args.ray_address or None)
    for r, res in zip(rows, results, strict=True):
        r["test"] = res
    plan = {"args": asdict(args), "data": data, "folds": [asdict(f) for f in folds], "rows": rows,
            "elapsed_s": round(time.perf_counter() - t0, 1)}
    text = json.dumps(plan, indent=2, default=str)
    (runs / "walk_forward.json").write_text(text + "\n")
    lines = ["| fold | trainer | symbol | train | select | test | seed | val. score | test return | test Sharpe "
             "| max daily DD | max total DD | breaches |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        te = r["test"]
        chosen = r["seed"] if r["checkpoint"] else f"flat (best {r['model_score']:.2f})"
        lines.append(f"| {r['fold']} | {r['trainer']} | {r['symbol']} | {'+'.join(map(str, r['train_years']))} | "
                     f"{r['val_year']} | {r['test_start']}..{r['test_end']} | "
                     f"{chosen} | {r['score']:.2f} | "
                     f"{te['total_return']:+.2%} | {te['sharpe']:.2f} | {te['max_daily_dd']:.2%} | "
                     f"{te['max_total_dd']:.2%} | {te['breaches']} |")
    (runs / "walk_forward.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return json.loads(text)


if __name__ == "__main__":  # through the imported module, so Ray pickles its tasks by reference, not as __main__'s
    from training import walk_forward as _m

    _m.main(tyro.cli(_m.Args))
