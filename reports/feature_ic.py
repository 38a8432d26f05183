"""Do the features predict anything, before any RL? Rank information coefficients per year (issue 15, lever 3).

    python -m reports.feature_ic --symbol EURUSD --out docs/research/feature_ic.md

At every M1 bar that closes a UTC hour (non-overlapping one-hour steps), each observation input the agents can have
(the 16 M1 features, the 16 features of the newest complete H4 bar, the market block of ``features.market``) is
compared with the *next* ``--horizon`` minutes' log return, close to close: the Spearman rank correlation (IC) per
year of data. The forward return is the target here, never an input. An IC that keeps its sign year after year
is a candidate edge; its size says whether it can pay the costs: a position of one unit taken on the sign of a
feature with correlation IC to the next move earns on average IC x E|move| (exact for jointly Gaussian values:
E[sign(x) y] = IC sigma_y sqrt(2/pi) = IC E|y|), which the table sets against the round-trip cost (spread +
commission, in the same pips) of the instrument: trading once per horizon breaks even at |IC| = cost / E|move|.
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


def year_ic(symbol: str, year: int, horizon: int,
            data: str | None = None) -> tuple[dict[str, float], float, int, float]:
    """(IC per input, mean |forward move| in pips, decision points, median close) for one year of ``symbol``."""
    inst = get_instrument(symbol)
    ics: dict[str, list[float]] = {}
    moves, closes, n = [], [], 0
    for c in period_contexts(symbol, f"{year}-01-01", f"{year}-12-31", data, market=True):
        i = np.arange(c.first_ready, len(c) - 1)
        i = i[(c.minutes[i] + 1) % 60 == 0]  # bars that close a UTC hour
        j = np.searchsorted(c.minutes, c.minutes[i] + horizon)  # the bar that opens `horizon` minutes later
        keep = (j < len(c)) & (c.minutes[np.minimum(j, len(c) - 1)] == c.minutes[i] + horizon)
        i, j = i[keep], j[keep] - 1  # its previous bar closes then
        fwd = np.log(c.close[j] / c.close[i])
        x = np.hstack([c.m1_features[i], c.h4_features[i], c.market[i]])
        for k, name in enumerate((*FEATURE_NAMES, *(f"h4_{f}" for f in FEATURE_NAMES), *MARKET_NAMES)):
            ics.setdefault(name, []).append(len(i))
            ics[name].append(float(spearmanr(x[:, k], fwd).statistic) if np.ptp(x[:, k]) > 0 else np.nan)
        moves.append(np.abs(np.expm1(fwd)) * c.close[i] / inst.pip_size)
        closes.append(c.close[i])
        n += len(i)
    out = {}
    for name, v in ics.items():  # the segments' ICs weighted by their points
        w, r = np.array(v[0::2], float), np.array(v[1::2], float)
        out[name] = float(np.nansum(w * r) / w[np.isfinite(r)].sum()) if np.isfinite(r).any() else np.nan
    return out, float(np.mean(np.concatenate(moves))), n, float(np.median(np.concatenate(closes)))


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
    per_year, move, points, price = {}, {}, {}, {}
    for y in years:
        per_year[y], move[y], points[y], price[y] = year_ic(a.symbol, y, a.horizon, a.data)
        print(f"{a.symbol} {y}: {points[y]} hourly points, mean |{a.horizon}-min move| {move[y]:.1f} pips", flush=True)
    df = pd.DataFrame(per_year)
    df["mean"] = df[years].mean(axis=1)
    df["same sign"] = (np.sign(df[years]).eq(np.sign(df["mean"]), axis=0)).sum(axis=1)
    df = df.reindex(df["mean"].abs().sort_values(ascending=False).index)
    # a round trip pays the spread once and the commission on both sides (brokers.sim)
    cost = inst.spread_pips + 2 * inst.commission_per_lot / inst.pip_value(1.0, float(np.median(list(price.values()))))
    mean_move = float(np.mean(list(move.values())))
    lines = [f"{a.symbol}, next {a.horizon} minutes from each hour's close; IC = Spearman rank correlation; years "
             f"{', '.join(map(str, years))} ({sum(points.values()):,} points). Mean |move| {mean_move:.1f} pips; "
             f"a round trip costs about {cost:.2f} pips, so breaking even on one trade per {a.horizon} minutes takes "
             f"|IC| of about {cost / mean_move:.3f}.", "",
             "| input | " + " | ".join(map(str, years)) + " | mean | same sign as the mean |",
             "|---|" + "---|" * len(years) + "---|---|"]
    for name, r in df.head(a.top).iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{r[y]:+.3f}" for y in years)
                     + f" | {r['mean']:+.3f} | {int(r['same sign'])} of {len(years)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)
        df.to_csv(Path(a.out).with_suffix(".csv"))


if __name__ == "__main__":
    main()
