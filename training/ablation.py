"""Ablation: MTF-MARL with a shared buffer (per-step or semi-MDP H4 credit) vs separate buffers vs the SB3
TD3 single-agent baseline.

    python -m training.ablation --seeds 0 1 2 --runs runs/ablation --out docs/ablation

Variants can be trained in separate processes (``--variants td3 --seeds 1``, one per core), then a last call
with all variants reuses the finished runs and writes the table. Or on Ray (the ``[distributed]`` extra): with
``--workers N`` every missing (variant, seed) run is a Ray task of 1 CPU, N at a time on this machine, or on a
cluster with ``--ray-address auto|ray://HOST:PORT``; each task is the same call as a run in this process, so it
gives the same run bit for bit (``tests/test_sweep.py``).

Every variant trains on the same periods with the same budget and seeds, and is validated by the same
evaluation code. Writes ``ablation.md`` (for the policy selected by validation score: Sharpe, return,
drawdowns, CMDP breaches; the final policy's Sharpe and return; updates to reach the target score) and
``learning_curves.png``. Runs whose ``train_summary.json`` already exists are reused.

Out of sample, every run's selected (``best``) and final (``last``) policy is also run over the test period,
after the validation period, next to buy-and-hold of the symbol (unlevered price return); results are cached
in each run's ``test_eval.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import tyro

from agents.mtf_marl.checkpoint import load_mtf_marl_actors
from agents.td3.checkpoint import load_td3_actor
from features.context import MarketContext
from reports import metrics
from training.args import RunPlan
from training.data import period_contexts
from training.distributed import run_ordered
from training.env_config import EnvConfig
from training.evaluate import MIN_ACTIVE_DAYS, evaluate_hierarchical, evaluate_single

VARIANTS = ("mtf_marl_shared", "mtf_marl_smdp", "mtf_marl_separate", "td3")


@dataclass
class Args(RunPlan):
    """The periods and budget of every run (``RunPlan``), plus the seeds, variants and test period."""

    learning_starts: int = 20_000
    """random steps before learning"""
    seeds: tuple[int, ...] = (0,)
    """seeds, the same for every variant"""
    variants: tuple[str, ...] = VARIANTS
    """variants to train / tabulate"""
    test_start: str = "2024-01-01"
    """test (out-of-sample) period start"""
    test_end: str = "2024-12-31"
    """test period end"""
    target_score: float = 0.5
    """validation score (``training.evaluate.validation_score``) whose first reach is reported in updates"""
    runs: str = "runs/ablation"
    """where the training runs go"""
    out: str = "docs/ablation"
    """where the table and the plot go"""
    workers: int = 1
    """training runs at a time: 1 trains them one after the other in this process; more run each missing
    (variant, seed) as a Ray task of 1 CPU (the [distributed] extra)"""
    ray_address: str = ""
    """join a Ray cluster (auto or ray://HOST:PORT) instead of starting Ray on this machine"""


def _train(variant: str, seed: int, args: Args, out: Path) -> dict:
    """One training run: the same call in this process and in a Ray task."""
    common = {f.name: getattr(args, f.name) for f in fields(RunPlan)} | {"seed": seed, "out": str(out)}
    if variant == "td3":
        from training import train_td3

        return train_td3.main(train_td3.Args(**common))
    from training import train_mtf_marl

    buffer = "separate" if variant.endswith("separate") else "shared"
    credit = "smdp" if variant.endswith("smdp") else "per_step"
    return train_mtf_marl.main(train_mtf_marl.Args(**common, buffer=buffer, h4_credit=credit, progress=False))


def evaluate_on_test(variant: str, run: Path, test_ctx: list[MarketContext]) -> dict[str, dict]:
    """The run's selected and final policies over the test period (cached in ``test_eval.json``)."""
    cache = run / "test_eval.json"
    key = {"period": [str(test_ctx[0].index[0]), str(test_ctx[-1].index[-1])],
           "weights_mtime": [(run / w / "weights.pt").stat().st_mtime_ns for w in ("best", "last")]}
    if cache.exists():  # valid only for the same test bars and the same checkpoints
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached["results"]
    out = {}
    for which in ("best", "last"):
        if variant == "td3":
            actor, man = load_td3_actor(run / which)
            out[which] = evaluate_single(test_ctx, EnvConfig.from_dict(man["env_config"]), actor)
        else:
            h4, m1, man = load_mtf_marl_actors(run / which)
            out[which] = evaluate_hierarchical(test_ctx, EnvConfig.from_dict(man["env_config"]), h4, m1)
    cache.write_text(json.dumps({"key": key, "results": out}, indent=2) + "\n")
    return out


def buy_and_hold(test_ctx: list[MarketContext]) -> dict[str, float]:
    """Unlevered buy-and-hold of the symbol over the test contexts (from each one's first decision bar)."""
    rets = []
    for c in test_ctx:
        close = c.close[c.first_ready:]
        rets.append(metrics.daily_returns(c.index[c.first_ready:], 100_000.0 * close / close[0], 100_000.0))
    r = pd.concat(rets)
    return {"total_return": float(np.prod(1 + r.to_numpy()) - 1), "sharpe": metrics.sharpe(r)}


def main(args: Args) -> Path:
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; known: {VARIANTS}")
    todo = [(v, s, args, runs / f"{v}-s{s}") for v in args.variants for s in args.seeds
            if not (runs / f"{v}-s{s}" / "train_summary.json").exists()]
    run_ordered(_train, todo, args.workers, args.ray_address or None)
    results: dict[str, list[dict]] = {v: [json.loads((runs / f"{v}-s{s}" / "train_summary.json").read_text())
                                          for s in args.seeds] for v in args.variants}
    symbol = next(iter(results.values()))[0]["args"]["symbol"]
    test_ctx = period_contexts(symbol, args.test_start, args.test_end)
    bh = buy_and_hold(test_ctx)
    rows = ["| variant | seed | selected at step | val. score | val. Sharpe | active days | val. return | max daily DD "
            "| max total DD "
            f"| CMDP breaches | final-step val. Sharpe / return | updates to score >= {args.target_score:g} "
            "| test Sharpe / return (selected) | test Sharpe / return (final) | steps | wall s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results) + 1, 3.6), sharey=True, squeeze=False)
    means = []
    for ax, (variant, runs_) in zip(axes[0], results.items(), strict=True):
        tests = []
        for seed, s in zip(args.seeds, runs_, strict=True):
            hist = s["history"]
            best = max(hist, key=lambda h: h["score"])
            reach = next((h["updates"] for h in hist if h["score"] >= args.target_score), None)
            last = hist[-1]
            test = evaluate_on_test(variant, runs / f"{variant}-s{seed}", test_ctx)
            tb, tl = test["best"], test["last"]
            tests.append((best["score"], tb["total_return"], tl["total_return"]))
            rows.append(f"| {variant} | {seed} | {best['step']} | {best['score']:.2f} | {best['sharpe']:.2f} | "
                        f"{best.get('active_days', '')} | {best['total_return']:+.2%} | "
                        f"{best['max_daily_dd']:.2%} | {best['max_total_dd']:.2%} | {best['breaches']} | "
                        f"{last['sharpe']:.2f} / {last['total_return']:+.2%} | "
                        f"{reach if reach is not None else 'not reached'} | "
                        f"{tb['sharpe']:.2f} / {tb['total_return']:+.2%} | "
                        f"{tl['sharpe']:.2f} / {tl['total_return']:+.2%} | "
                        f"{s['steps']} | {s['elapsed_s']} |")
            ax.plot([h["step"] for h in hist], [h["sharpe"] for h in hist], marker="o", label=f"seed {seed}")
        ax.set_title(variant, fontsize=10)
        ax.set_xlabel("environment steps")
        ax.axhline(0, color="grey", lw=0.8)
        ax.legend(fontsize=7)
        means.append(f"| {variant} | " + " | ".join(f"{v:+.2f}" if k == 0 else f"{v:+.2%}"
                                                     for k, v in enumerate(np.mean(tests, axis=0))) + " |")
    axes[0][0].set_ylabel("validation Sharpe")
    fig.suptitle(f"Validation {args.val_start}..{args.val_end}, trained on {args.train_start}..{args.train_end}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=110)
    plt.close(fig)
    cells = [f"buy-and-hold {symbol} (unlevered)", *[""] * 11, f"{bh['sharpe']:.2f} / {bh['total_return']:+.2%}",
             "", "", ""]
    rows.append("| " + " | ".join(cells) + " |")
    seeds = " ".join(map(str, args.seeds))
    head = [f"# Ablation: {', '.join(args.variants)}", "",
            f"Budget: seeds {seeds}, {args.total_steps:,} M1 steps per run ({args.learning_starts:,} random first), "
            f"validation every {args.eval_every:,} steps. Train {args.train_start}..{args.train_end}, validate "
            f"{args.val_start}..{args.val_end}, test {args.test_start}..{args.test_end} ({symbol}). Selected = the "
            "checkpoint with the best validation score (Sharpe - 5 x breaches; at most 0 with fewer than "
            f"{MIN_ACTIVE_DAYS} active days); final = the last step's. Validation and test figures, and buy-and-hold, "
            "run from the first bar of their period (the weeks before are feature history). A return of "
            "-10.00 % without a breach is a policy ground down to the total-drawdown floor: from there the pre-trade "
            "validator shrinks every order to what fits above it.", "",
            f"    python -m training.ablation --seeds {seeds} --total-steps {args.total_steps} "
            f"--eval-every {args.eval_every}", ""]
    table = out / "ablation.md"
    mean_rows = ["", f"Means over seeds {seeds}:", "",
                 "| variant | selected val. score | test return (selected) | test return (final) |",
                 "|---|---|---|---|", *means]
    table.write_text("\n".join(head + rows + mean_rows) + "\n")
    print("\n".join(rows))
    return table


if __name__ == "__main__":  # through the imported module, so Ray pickles its tasks by reference, not as __main__'s
    from training import ablation as _m

    _m.main(tyro.cli(_m.Args))
