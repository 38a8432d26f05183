"""Hyperparameter sweep of a trainer: Ray Tune runs the trials, Optuna's TPE sampler proposes them, the objective
is the validation score (``training.evaluate.validation_score``) of each trial's best checkpoint.

    python -m training.sweep --trainer mtf_marl --trials 20 --workers 2 --out runs/sweep-mtf_marl

Each trial is one call of the trainer's ``main`` (``training.train_mtf_marl``, ``training.train_td3``) with the
sampled settings, in ``OUT/trials/<trial id>`` (its ``best`` and ``last`` checkpoints, ``train_summary.json``);
every trial's config and score are in ``OUT/sweep.json`` and ``OUT/sweep.md``. The selected checkpoint, the best
trial's ``best``, is copied to ``OUT/best`` with ``trials`` in its manifest: the number of candidates the
selection saw (every validation of every trial), which ``reports.evaluate`` uses for the deflated Sharpe.

Resumable: run the same command again after an interruption (Ctrl-C, a lost node). Tune restores the
experiment (``OUT/tune``) and the Optuna study; finished trials are kept, unfinished ones start again, and an
MTF-MARL trial continues from its last checkpoint (``--resume``, exact). A finished sweep is not re-run.
Needs the ``[distributed]`` extra (Ray Tune, Optuna).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import tyro

from feeds.paths import REPO_ROOT
from training.args import RunPlan
from training.distributed import ray_session, require

TRAINERS: dict[str, str] = {"mtf_marl": "training.train_mtf_marl", "td3": "training.train_td3",
                             "four_agent": "training.train_four_agent"}
"""trainer name -> module with ``Args`` (a ``TrainArgs``) and ``main(args) -> summary``"""

RESUMABLE = {"mtf_marl", "four_agent"}
"""trainers whose ``Args.resume`` continues an interrupted run from ``OUT/last`` exactly"""


def search_space(trainer: str) -> dict[str, Any]:
    """What is sampled, per trainer (Ray Tune's space; Optuna's sampler works on it)."""
    from ray import tune

    common = {"gamma": tune.choice([0.99, 0.995, 0.998]), "batch_size": tune.choice([128, 256]),
              "max_exposure": tune.uniform(2.0, 10.0), "update_every": tune.choice([1, 2, 4])}
    if trainer == "mtf_marl":
        return common | {"expl_noise": tune.uniform(0.05, 0.4), "balanced_h4": tune.choice([False, True])}
    if trainer == "td3":
        return common | {"action_noise": tune.uniform(0.05, 0.4),
                         "net_arch": tune.choice(["64x64", "128x128", "256x256"])}
    if trainer == "four_agent":  # MAPPO (Structure, Tactical) + DQN (Risk): no batch size or update cadence of TD3's
        return {"gamma": common["gamma"], "max_exposure": common["max_exposure"],
                "actor_lr": tune.loguniform(1e-4, 2e-3), "critic_lr": tune.loguniform(1e-4, 2e-3),
                "entropy_coef": tune.loguniform(1e-3, 5e-2), "clip": tune.choice([0.1, 0.2, 0.3]),
                "dqn_lr": tune.loguniform(1e-4, 1e-3)}
    raise ValueError(f"no search space for trainer {trainer!r}")


@dataclass
class Args(RunPlan):
    """The data periods and step budget of every trial (``RunPlan``), the sweep's size and where it goes."""

    trainer: str = "mtf_marl"
    """trainer to sweep: mtf_marl, td3 or four_agent"""
    trials: int = 20
    """trials (sampled configurations)"""
    learning_starts: int = 20_000
    """random steps before learning, every trial"""
    symbol: str = "EURUSD"
    """instrument"""
    data: str = ""
    """M1 data file or folder; empty: $MTF_DATA_DIR or ../shared/data/fx"""
    seed: int = 0
    """seed of the sampler and of every trial's training (trials differ by their settings only)"""
    episode_bars: int = 1440 * 5
    """M1 bars per training episode"""
    buffer_size: int = 300_000
    """replay capacity"""
    eval_bars: int = 0
    """bars of each validation segment to use; 0: all"""
    workers: int = 2
    """trials at a time (1 CPU each); on a cluster, at most this many"""
    ray_address: str = ""
    """join a Ray cluster (auto or ray://HOST:PORT) instead of starting Ray on this machine"""
    out: str = "runs/sweep"
    """sweep folder: trials/, tune/, sweep.json, sweep.md, best/"""
    tensorboard: bool = False
    """TensorBoard logs in each trial's folder"""

    def fixed(self) -> dict[str, Any]:
        """The settings every trial shares (the trainer's Args fields that are not sampled)."""
        keep = {f.name for f in fields(RunPlan)} | {"symbol", "data", "seed", "episode_bars", "buffer_size",
                                                     "eval_bars", "tensorboard"}
        return {k: v for k, v in asdict(self).items() if k in keep}


def trainer_args(trainer: str, settings: dict[str, Any]) -> Any:
    """The trainer's ``Args`` from the shared and sampled settings (``"128x128"`` -> ``(128, 128)``)."""
    mod = importlib.import_module(TRAINERS[trainer])
    known = {f.name for f in fields(mod.Args)}
    kw = {k: v for k, v in settings.items() if k in known}
    if isinstance(kw.get("net_arch"), str):
        kw["net_arch"] = tuple(int(x) for x in kw["net_arch"].split("x"))
    if "progress" in known:
        kw["progress"] = False
    return mod.Args(**kw)


def run_trial(config: dict[str, Any], trainer: str, fixed: dict[str, Any], root: str) -> None:
    """One Tune trial: train with ``config`` in ``root/trials/<trial id>`` and report its validation score. A
    restarted trial reuses a finished run or, for resumable trainers, continues from its last checkpoint."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    out = Path(root) / "trials" / trial_id
    done = out / "train_summary.json"
    if done.is_file():
        summary = json.loads(done.read_text())
    else:
        settings = fixed | config | {"out": str(out)}
        if trainer in RESUMABLE and (out / "last" / "manifest.json").is_file():
            settings["resume"] = str(out / "last")
        summary = importlib.import_module(TRAINERS[trainer]).main(trainer_args(trainer, settings))
    best = max(summary["history"], key=lambda h: h["score"])
    tune.report({"score": summary["best_score"], "best_step": best["step"], "validations": len(summary["history"]),
                 "sharpe": best["sharpe"], "total_return": best["total_return"], "breaches": best["breaches"],
                 "active_days": best.get("active_days"), "steps": summary["steps"], "run": str(out)})


def _trial_number(path: str) -> int:
    """Tune numbers trials from 1 in the order the sampler proposed them; the number is in the trial's folder name
    (``run_trial_<id>_<number>_<config>``)."""
    m = re.match(r"^run_trial_[0-9a-f]+_(\d+)_", Path(path).name)
    if not m:
        raise ValueError(f"unexpected Tune trial folder name: {path}")
    return int(m.group(1))


def collect(results: Any, root: Path) -> list[dict[str, Any]]:
    """Every trial (finished or failed) in the order it was proposed."""
    rows = []
    for r in results:
        m = r.metrics or {}
        tid = re.match(r"^run_trial_([0-9a-f]+)_", Path(r.path).name).group(1)
        rows.append({"number": _trial_number(r.path), "trial": tid, "config": dict(r.config or {}),
                     "score": m.get("score"),
                     "best_step": m.get("best_step"), "validations": m.get("validations"), "sharpe": m.get("sharpe"),
                     "total_return": m.get("total_return"), "breaches": m.get("breaches"),
                     "active_days": m.get("active_days"), "run": str((root / "trials" / tid).relative_to(root)),
                     "error": str(r.error) if r.error else None})
    return sorted(rows, key=lambda t: t["number"])


def select(rows: list[dict[str, Any]], root: Path, trainer: str) -> dict[str, Any]:
    """Copy the best trial's best checkpoint to ``root/best`` with the number of candidates behind it."""
    ok = [t for t in rows if t["error"] is None and t["score"] is not None]
    if not ok:
        raise RuntimeError(f"no trial of {root} finished: see {root / 'tune'}")
    best = max(ok, key=lambda t: (t["score"], -t["number"]))  # ties: the earliest trial
    candidates = sum(int(t["validations"]) for t in ok)
    dst = root / "best"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(root / best["run"] / "best", dst)
    man = json.loads((dst / "manifest.json").read_text())
    man |= {"trials": candidates,
            "trials_note": f"{trainer} sweep: best validation score of {len(ok)} trials x their validations "
                           f"({candidates} candidates)",
            "sweep": {"trial": best["trial"], "config": best["config"], "score": best["score"], "trials": len(ok)}}
    (dst / "manifest.json").write_text(json.dumps(man, indent=2, default=str) + "\n")
    return best


def report(rows: list[dict[str, Any]], best: dict[str, Any], args: Args, root: Path) -> None:
    keys = sorted({k for t in rows for k in t["config"]})
    lines = [f"# Sweep of {args.trainer}: {len(rows)} trials, Ray Tune + Optuna (TPE, seed {args.seed})", "",
             f"Objective: validation score of each trial's best checkpoint on {args.val_start}..{args.val_end} "
             f"(trained on {args.train_start}..{args.train_end}, {args.total_steps:,} steps, validation every "
             f"{args.eval_every:,}). Selected: trial {best['trial']} (score {best['score']:.3f}), copied to "
             f"`best/` with `trials` = every validation of every trial in its manifest.", "",
             "| # | trial | " + " | ".join(keys) + " | score | val. Sharpe | val. return | breaches | active days "
             "| best step | error |", "|---|---|" + "---|" * (len(keys) + 7)]
    for t in rows:
        cfg = " | ".join(f"{t['config'].get(k):.4g}" if isinstance(t["config"].get(k), float)
                         else str(t["config"].get(k)) for k in keys)
        def num(v: Any, f: str) -> str:
            return "" if v is None else format(v, f)

        mark = "**" if t["trial"] == best["trial"] else ""
        lines.append(f"| {t['number']} | {mark}{t['trial']}{mark} | {cfg} | {num(t['score'], '.3f')} | "
                     f"{num(t['sharpe'], '.2f')} | {num(t['total_return'], '+.2%')} | {num(t['breaches'], 'd')} | "
                     f"{num(t['active_days'], 'd')} | {num(t['best_step'], 'd')} | {t['error'] or ''} |")
    (root / "sweep.md").write_text("\n".join(lines) + "\n")


def main(args: Args) -> dict[str, Any]:
    if args.trainer not in TRAINERS:
        raise ValueError(f"unknown trainer {args.trainer!r}; known: {', '.join(sorted(TRAINERS))}")
    if args.trials < 1 or args.workers < 1:
        raise ValueError(f"trials and workers must be >= 1, got {args.trials} and {args.workers}")
    tune = require("ray.tune", "training.sweep")
    require("optuna", "training.sweep")
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    root = (REPO_ROOT / args.out if not Path(args.out).is_absolute() else Path(args.out)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    plan = {k: v for k, v in asdict(args).items() if k not in ("workers", "ray_address")}
    saved = root / "sweep_args.json"
    if saved.is_file() and json.loads(saved.read_text()) != plan:
        raise ValueError(f"{root} holds a sweep with other settings ({saved}); resume it with the same ones or use "
                         "another --out")
    saved.write_text(json.dumps(plan, indent=2) + "\n")
    t0 = time.perf_counter()
    with ray_session(args.workers, args.ray_address or None):
        trainable = tune.with_resources(tune.with_parameters(run_trial, trainer=args.trainer, fixed=args.fixed(),
                                                             root=str(root)), {"cpu": 1})
        exp = root / "tune"
        if tune.Tuner.can_restore(str(exp)):
            tuner = tune.Tuner.restore(str(exp), trainable, resume_unfinished=True, restart_errored=True)
        else:
            searcher = ConcurrencyLimiter(OptunaSearch(metric="score", mode="max", seed=args.seed),
                                          max_concurrent=args.workers)
            tuner = tune.Tuner(trainable, param_space=search_space(args.trainer),
                               tune_config=tune.TuneConfig(search_alg=searcher, num_samples=args.trials,
                                                           max_concurrent_trials=args.workers),
                               run_config=tune.RunConfig(name="tune", storage_path=str(root), verbose=1,
                                                         failure_config=tune.FailureConfig(max_failures=0)))
        results = tuner.fit()
    rows = collect(results, root)
    finished = [t for t in rows if t["score"] is not None or t["error"] is not None]
    if len(finished) < args.trials:  # interrupted (Ctrl-C): Tune saved the experiment; nothing is selected
        raise SystemExit(f"sweep interrupted with {len(finished)} of {args.trials} trials finished; run the same "
                         f"command again to resume it ({root / 'tune'})")
    best = select(rows, root, args.trainer)
    out = {"trainer": args.trainer, "trials": rows, "best": best, "selected_checkpoint": str(root / "best"),
           "candidates": sum(int(t["validations"] or 0) for t in rows if t["error"] is None),
           "elapsed_s": round(time.perf_counter() - t0, 1), "args": plan}
    (root / "sweep.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    report(rows, best, args, root)
    print(f"{len(rows)} trials, best {best['trial']} (score {best['score']:.3f}) -> {root / 'best'}, "
          f"{root / 'sweep.md'}")
    return out


if __name__ == "__main__":  # through the imported module, so Ray pickles its tasks by reference, not as __main__'s
    from training import sweep as _m

    _m.main(tyro.cli(_m.Args))
