"""Do the features predict anything, before any RL? Rank information coefficients per year (issue 15, lever 3).

    python -m reports.feature_ic --symbol EURUSD --out docs/research/feature_ic.md

At every M1 bar that closes a UTC hour, each observation input the agents can have
(the 16 M1 features, the 16 features of the newest complete H4 bar, the market block of ``features.market``) is
compared with the *next* ``--horizon`` minutes' log return, close to close: the Spearman rank correlation (IC) per
year of data. The forward return is the target here, never an input. Hourly points with a longer horizon overlap
(240 minutes: each move counted in four points), so the IC's standard error is about 1 / sqrt(points / overlap); the
header states it. An IC that keeps its sign year after year
is a candidate edge; its size says whether it can pay the costs: a position of one unit taken on the sign of a
feature with correlation IC to the next move earns on average IC x E|move| (exact for jointly Gaussian values:
E[sign(x) y] = IC sigma_y sqrt(2/pi) = IC E|y|), which the table sets against the round-trip cost (spread +
commission, in the same pips) of the instrument: trading once per horizon breaks even at |IC| = cost / E|move| (a
heuristic: the ICs are rank correlations and the moves fat-tailed; the ridge section measures the pips directly).
The cost is the instrument's base spread (the simulator widens it at 21-23 UTC). The bars are bids: around the 17:00
New York rollover the bid dips while the spread widens and recovers after, so part of a ``rollover`` or time-of-day
IC is the spread, not a move one could trade.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from brokers.instruments import get_instrument
from features.engine import FEATURE_NAMES
from features.market import MARKET_NAMES
from feeds.paths import fx_data_dir
from training.data import period_contexts
from training.periods import find_periods

INPUTS: tuple[str, ...] = (*FEATURE_NAMES, *(f"h4_{f}" for f in FEATURE_NAMES), *MARKET_NAMES)


def year_points(symbol: str, year: int, horizon: int, data: str | None = None) -> dict[str, np.ndarray]:
    """One year's hourly points of ``symbol``: inputs ``x`` (points, ``INPUTS``), forward log return ``fwd`` from the
    bar's close to the close ``horizon`` minutes later (points whose bar that far ahead is missing are dropped), the
    move in pips, the close, the bar's open minute (since the epoch) and the segment of each point."""
    inst = get_instrument(symbol)
    parts = []
    for k, c in enumerate(period_contexts(symbol, f"{year}-01-01", f"{year}-12-31", data, market=True)):
        i = np.arange(c.first_ready, len(c) - 1)
        i = i[(c.minutes[i] + 1) % 60 == 0]  # bars that close a UTC hour
        j = np.searchsorted(c.minutes, c.minutes[i] + horizon)  # the bar opening horizon minutes after bar i does:
        keep = (j < len(c)) & (c.minutes[np.minimum(j, len(c) - 1)] == c.minutes[i] + horizon)  # closes that much later
        i, j = i[keep], j[keep]
        fwd = np.log(c.close[j] / c.close[i])
        parts.append({"x": np.hstack([c.m1_features[i], c.h4_features[i], c.market[i]]).astype(np.float64),
                      "fwd": fwd, "pips": np.abs(np.expm1(fwd)) * c.close[i] / inst.pip_size, "close": c.close[i],
                      "minute": c.minutes[i], "segment": np.full(len(i), k)})
    return {key: np.concatenate([q[key] for q in parts]) for key in parts[0]}


def ic(x: np.ndarray, fwd: np.ndarray, segment: np.ndarray) -> float:
    """Spearman IC of one input with the forward return, per data segment, weighted by the segments' points."""
    w, r = [], []
    for k in np.unique(segment):
        m = segment == k
        if np.ptp(x[m]) > 0:
            w.append(m.sum())
            r.append(float(spearmanr(x[m], fwd[m]).statistic))
    return float(np.dot(w, r) / np.sum(w)) if w else np.nan


def ridge_forecast(train: list[dict[str, np.ndarray]], test: dict[str, np.ndarray], alpha: float = 10.0) -> np.ndarray:
    """A linear forecast of the forward return from every input, fit (ridge, standardised inputs) on ``train`` only."""
    x = np.vstack([t["x"] for t in train])
    y = np.concatenate([t["fwd"] for t in train])
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return ((test["x"] - mu) / sd) @ coef


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--symbol", default="EURUSD")
    p.add_argument("--horizon", type=int, default=240, help="minutes ahead")
    p.add_argument("--data", default=None)
    p.add_argument("--top", type=int, default=12, help="inputs listed (by |mean IC|)")
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    inst = get_instrument(a.symbol)
    years = sorted(y for s, y, _ in find_periods([Path(a.data) if a.data else fx_data_dir()], [a.symbol]))
    pts = {y: year_points(a.symbol, y, a.horizon, a.data) for y in years}
    per_year = {y: {name: ic(p_["x"][:, k], p_["fwd"], p_["segment"]) for k, name in enumerate(INPUTS)}
                for y, p_ in pts.items()}
    move = {y: float(p_["pips"].mean()) for y, p_ in pts.items()}
    for y in years:
        print(f"{a.symbol} {y}: {len(pts[y]['fwd'])} hourly points, mean |{a.horizon}-min move| {move[y]:.1f} pips",
              flush=True)
    df = pd.DataFrame(per_year)
    df["mean"] = df[years].mean(axis=1)
    df["same sign"] = (np.sign(df[years]).eq(np.sign(df["mean"]), axis=0)).sum(axis=1)
    df = df.reindex(df["mean"].abs().sort_values(ascending=False).index)
    # a round trip pays the spread once and the commission on both sides (brokers.sim)
    price = float(np.median(np.concatenate([p_["close"] for p_ in pts.values()])))
    cost = inst.spread_pips + 2 * inst.commission_per_lot / inst.pip_value(1.0, price)
    mean_move = float(np.mean(list(move.values())))
    overlap = max(1.0, a.horizon / 60)
    se_year = float(np.mean([1 / np.sqrt(len(p_["fwd"]) / overlap) for p_ in pts.values()]))
    lines = [f"{a.symbol}, next {a.horizon} minutes from each hour's close; IC = Spearman rank correlation; years "
             f"{', '.join(map(str, years))} ({sum(len(p_['fwd']) for p_ in pts.values()):,} points). Mean |move| "
             f"{mean_move:.1f} pips; a round trip costs about {cost:.2f} pips, so breaking even on one trade per "
             f"{a.horizon} minutes takes |IC| of about {cost / mean_move:.3f}. Standard error of an IC: about "
             f"{se_year:.3f} for one year, {se_year / np.sqrt(len(years)):.3f} for the mean of the {len(years)} "
             f"(points overlap {overlap:g}x).", "",
             "| input | " + " | ".join(map(str, years)) + " | mean | same sign as the mean |",
             "|---|" + "---|" * len(years) + "---|---|"]
    for name, r in df.head(a.top).iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{r[y]:+.3f}" for y in years)
                     + f" | {r['mean']:+.3f} | {int(r['same sign'])} of {len(years)} |")
    # every input at once: a ridge forecast fit on the years before each year, its IC on that year (walk-forward)
    lines += ["", f"All {len(INPUTS)} inputs at once: a ridge regression (standardised inputs, alpha 10) fit on every "
              "year before the year shown, its forecast's IC on that year (out of sample in time), and the mean pips "
              "a unit position on the forecast's sign would have made per point before costs:", "",
              "| year | fit on | IC of the forecast | pips per point before costs | break-even |",
              "|---|---|---|---|---|"]
    for k, y in enumerate(years[1:], start=1):
        f = ridge_forecast([pts[t] for t in years[:k]], pts[y])
        gain = float(np.mean(np.sign(f) * np.expm1(pts[y]["fwd"]) * pts[y]["close"] / inst.pip_size))
        lines.append(f"| {y} | {'+'.join(map(str, years[:k]))} | {ic(f, pts[y]['fwd'], pts[y]['segment']):+.3f} | "
                     f"{gain:+.2f} | {cost:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)
        df.to_csv(Path(a.out).with_suffix(".csv"))


if __name__ == "__main__":
    main()
