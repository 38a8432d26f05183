"""Are the observations scale-free across instruments? The engine's M1 and H4 features of several symbols over one
period, side by side: quantiles per feature and the largest gap to the reference symbol's, in units of the
reference's 5-95 % range. Training on other instruments' bars (``train_mtf_marl --extra-symbols``) is sound only if
the same number means about the same market state on each.

    python -m reports.scale_check --symbols EURUSD GBPUSD USDJPY XAUUSD --start 2017-01-01 --end 2017-12-31

Prints a Markdown table (docs/research.md quotes it). The macro columns (vix, fed_funds, yield_curve) are the same
series for every symbol; they are listed for completeness. The regime one-hots' quantiles are 0 or 1, so a gap of 1
there only says that the share of trending bars crossed 50 % on one symbol and not the other.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from features.engine import FEATURE_NAMES
from training.data import period_contexts

QUANTILES = (0.05, 0.5, 0.95)


def feature_quantiles(symbol: str, start: str, end: str, data: str | None = None) -> dict[str, np.ndarray]:
    """(3, 16) quantiles (``QUANTILES``) of the M1 and H4 features of ``symbol`` over the period's bars after each
    context's warm-up."""
    ctx = period_contexts(symbol, start, end, data)
    out = {}
    for tf in ("m1", "h4"):
        x = np.concatenate([getattr(c, f"{tf}_features")[c.first_ready:] for c in ctx]).astype(np.float64)
        out[tf] = np.quantile(x, QUANTILES, axis=0)
    return out


def gaps(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per feature: the largest difference of the three quantiles, over the reference's 5-95 % range; where that
    range is 0 (a constant on the reference), 0 if the other's quantiles are the same and inf if not."""
    width = ref[2] - ref[0]
    diff = np.abs(other - ref).max(axis=0)
    out = np.where(diff > 0, np.inf, 0.0)
    return np.divide(diff, width, out=out, where=width > 0)


def table(q: dict[str, dict[str, np.ndarray]], ref: str) -> str:
    syms = list(q)
    lines = ["| timeframe | feature | " + " | ".join(f"{s} q05 / q50 / q95" for s in syms)
             + " | largest gap to " + ref + " (x its q05-q95) |", "|---" * (3 + len(syms)) + "|"]
    for tf in ("m1", "h4"):
        g = np.max([gaps(q[ref][tf], q[s][tf]) for s in syms if s != ref], axis=0)
        for j, name in enumerate(FEATURE_NAMES):
            cells = [" / ".join(f"{v:+.2f}" for v in q[s][tf][:, j]) for s in syms]
            lines.append(f"| {tf} | {name} | " + " | ".join(cells) + f" | {g[j]:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--symbols", nargs="+", default=["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"])
    p.add_argument("--start", default="2017-01-01")
    p.add_argument("--end", default="2017-12-31")
    p.add_argument("--data", default=None, help="M1 data folder; default $MTF_DATA_DIR or ../shared/data/fx")
    a = p.parse_args(argv)
    if len({s.upper() for s in a.symbols}) < 2:
        p.error("give at least two symbols: the first is the reference")
    q: dict[str, Any] = {s.upper(): feature_quantiles(s.upper(), a.start, a.end, a.data) for s in a.symbols}
    print(table(q, a.symbols[0].upper()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
