"""Which inputs do trained MTF-MARL policies use? Permutation importance on the validation year (issue 15, lever 3).

    python -m reports.feature_importance --runs runs/wf-market --out docs/research/feature_importance.md

For every checkpoint (each seed's ``best`` under ``RUNS/<fold>/mtf_marl-s<seed>``) the policy is run over its own
validation year (the period in its manifest, through the training envs) and the observations its two actors saw are
recorded: every director decision and a seeded sample of the executor's. Then, per observation slot, that slot is
permuted across the sample (the other slots kept; a time's sine and cosine together) and the mean absolute change of
each actor's two outputs is measured: **action sensitivity**, how much the policy's decisions depend on that input.
It works for a policy that ends up flat too (a director whose limit is 0 still computes it from its inputs), which a
P&L permutation importance cannot: permuting an input of a policy that never trades changes its validation P&L by
exactly 0.

``--pnl``: also the P&L permutation importance of the market block's columns, the drop in validation score
(``training.evaluate.validation_score``) when one column is permuted over the validation bars, for the checkpoints
whose own validation traded (one evaluation of a year per column: minutes per checkpoint; one permutation each, so
small drops are noise).

The table lists, per fold, the slots by their share of the total sensitivity (mean over seeds), the market block's
share, and the top slots.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agents.common.observations import obs_names
from agents.mtf_marl.checkpoint import load_mtf_marl_actors, uses_market
from features.market import MARKET_NAMES
from feeds.paths import REPO_ROOT
from training.data import period_contexts
from training.env_config import EnvConfig
from training.evaluate import evaluate_hierarchical, validation_score

SAMPLE = 20_000
"""executor observations kept per checkpoint (a seeded sample of the validation year's)"""


class _Recorder:
    """A policy that records what it was asked about."""

    def __init__(self, policy) -> None:
        self.policy, self.seen = policy, []

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.seen.append(np.array(obs, np.float64))
        return self.policy(obs)


GROUPS = (("tod_sin", "tod_cos"), ("dow_sin", "dow_cos"))
"""slots permuted together (one permutation of rows for both): a time of day is a point on the circle, and permuting
its sine alone would show the actor times that do not exist"""


def sensitivity(actor, x: np.ndarray, rng: np.random.Generator, names: tuple[str, ...] = ()) -> np.ndarray:
    """(slots, 2): mean |actor(x with slot j permuted across rows) - actor(x)| per output; the slots of a ``GROUPS``
    pair (by ``names``) are permuted together and the change is credited to each of them."""
    base = actor(x)
    out = np.zeros((x.shape[1], base.shape[1]))
    partner = {names.index(a): names.index(b) for g in GROUPS for a, b in (g, g[::-1]) if a in names and b in names}
    for j in range(x.shape[1]):
        if partner.get(j, x.shape[1]) < j:  # the pair was measured at its first slot
            out[j] = out[partner[j]]
            continue
        cols = [j, partner[j]] if j in partner else [j]
        xp = x.copy()
        xp[:, cols] = x[rng.permutation(len(x))][:, cols]
        out[j] = np.abs(actor(xp) - base).mean(axis=0)
    return out


def checkpoint_importance(ckpt: Path, seed: int = 0, data: str | None = None, pnl: bool = False) -> dict[str, Any]:
    """Action sensitivity of a checkpoint's two actors on its validation year (and, with ``pnl``, the market block's
    P&L permutation importance)."""
    h4, m1, man = load_mtf_marl_actors(ckpt)
    market = uses_market(man)
    start, end = man["val_period"]
    cfg = EnvConfig.from_dict(man["env_config"])
    ctx = period_contexts(man["symbol"], start, end, data, market=market)
    rec_h4, rec_m1 = _Recorder(h4), _Recorder(m1)
    res = evaluate_hierarchical(ctx, cfg, rec_h4, rec_m1)
    rng = np.random.default_rng(seed)
    x_h4 = np.asarray(rec_h4.seen)
    x_m1 = np.asarray(rec_m1.seen)
    if len(x_m1) > SAMPLE:
        x_m1 = x_m1[np.sort(rng.choice(len(x_m1), SAMPLE, replace=False))]
    names = obs_names(market)
    out: dict[str, Any] = {"checkpoint": str(ckpt), "validation": res, "score": validation_score(res),
                           "h4_decisions": len(x_h4), "m1_sample": len(x_m1),
                           "h4": dict(zip(names["h4"], sensitivity(h4, x_h4, rng, names["h4"]).sum(axis=1).tolist(),
                                          strict=True)),
                           "m1": dict(zip(names["m1"], sensitivity(m1, x_m1, rng, names["m1"]).sum(axis=1).tolist(),
                                          strict=True))}
    if pnl and market and res["active_days"] > 0:
        drops = {}
        for j, name in enumerate(MARKET_NAMES):
            shuffled = []
            for c in ctx:  # permuted among the decision bars only (not the history or warm-up rows)
                block = c.market.copy()
                rows = np.arange(c.first_ready, len(block))
                block[rows, j] = block[rng.permutation(rows), j]
                shuffled.append(replace(c, market=block))
            drops[name] = out["score"] - validation_score(evaluate_hierarchical(shuffled, cfg, h4, m1))
        out["pnl_score_drop"] = drops
    return out


GROUP_NAMES = {"tod_sin": "time_of_day", "dow_sin": "day_of_week"}
"""the name a ``GROUPS`` pair is reported under (its first slot's; the second, equal, is dropped)"""


def _shares(values: dict[str, float]) -> dict[str, float]:
    """Each input's share of the total; a ``GROUPS`` pair counts once, under its ``GROUP_NAMES`` name."""
    second = {b for _, b in GROUPS}
    values = {GROUP_NAMES.get(k, k): v for k, v in values.items() if k not in second}
    total = sum(values.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in values.items()}


def fold_table(results: list[dict[str, Any]], top: int = 8) -> list[str]:
    """Markdown lines: per fold and actor, the market block's share of the sensitivity and the top slots."""
    lines = ["| fold | actor | checkpoints | validations traded | market block share | top inputs (share of the "
             "actor's total sensitivity, mean over seeds) |", "|---|---|---|---|---|---|"]
    folds = sorted({r["fold"] for r in results})
    for fold in folds:
        rs = [r for r in results if r["fold"] == fold]
        for actor in ("h4", "m1"):
            shares = [_shares(r[actor]) for r in rs]
            mean = {k: float(np.mean([s[k] for s in shares])) for k in shares[0]}
            block = sum(v for k, v in mean.items() if k in MARKET_NAMES or k in GROUP_NAMES.values())
            best = sorted(mean.items(), key=lambda kv: -kv[1])[:top]
            traded = sum(r["validation"]["active_days"] > 0 for r in rs)
            lines.append(f"| {fold} | {actor} | {len(rs)} | {traded} of {len(rs)} | {block:.0%} | "
                         + ", ".join(f"{k} {v:.0%}" for k, v in best) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs/wf-market", help="a walk-forward's runs folder")
    p.add_argument("--trainer", default="mtf_marl")
    p.add_argument("--pnl", action="store_true", help="also the market block's P&L permutation importance")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and the permutations")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default="", help="Markdown file to write (and a .json beside it)")
    p.add_argument("--from-json", default="", help="rebuild the tables from an earlier run's .json (no evaluation)")
    a = p.parse_args(argv)
    runs = Path(a.runs) if Path(a.runs).is_absolute() else REPO_ROOT / a.runs
    ckpts = [] if a.from_json else sorted(runs.glob(f"*/{a.trainer}-s*/best"))
    if not ckpts and not a.from_json:
        raise SystemExit(f"no {a.trainer} checkpoints under {runs}/<fold>/{a.trainer}-s<seed>/best")
    results = json.loads(Path(a.from_json).read_text()) if a.from_json else []
    for ck in ckpts:
        r = checkpoint_importance(ck, a.seed, a.data, a.pnl)
        r["fold"] = ck.parent.parent.name
        results.append(r)
        print(f"{ck}: score {r['score']:.2f}, {r['h4_decisions']} director decisions", flush=True)
    lines = fold_table(results)
    if any("pnl_score_drop" in r for r in results):
        lines += ["", "| checkpoint | validation score | largest score drops when one market column is permuted |",
                  "|---|---|---|"]
        for r in results:
            if "pnl_score_drop" in r:
                d = sorted(r["pnl_score_drop"].items(), key=lambda kv: -kv[1])[:5]
                lines.append(f"| {Path(r['checkpoint']).parent.relative_to(runs)} | {r['score']:.2f} | "
                             + ", ".join(f"{k} {v:+.2f}" for k, v in d) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        out = Path(a.out)
        out.write_text(text)
        if not a.from_json:
            out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
