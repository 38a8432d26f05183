"""Performance statistics: the one place that says how returns are annualised.

Daily returns are taken on trading days (UTC dates that have bars) and annualised with 252 periods,
through QuantStats so the numbers match the tearsheet.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import quantstats as qs

PERIODS_PER_YEAR = 252


def daily_returns(index: pd.DatetimeIndex, equity: np.ndarray, initial: float) -> pd.Series:
    """Close-to-close returns of the last equity of each UTC trading day (the first vs ``initial``)."""
    s = pd.Series(equity, index=index.tz_convert("UTC").tz_localize(None))
    last = s.groupby(s.index.normalize()).last()
    prev = last.shift(1)
    prev.iloc[0] = initial
    return (last / prev - 1.0).rename("returns")


def sharpe(returns: pd.Series) -> float:
    return _finite(qs.stats.sharpe(returns, periods=PERIODS_PER_YEAR))


def sortino(returns: pd.Series) -> float:
    return _finite(qs.stats.sortino(returns, periods=PERIODS_PER_YEAR))


def max_drawdown(equity: np.ndarray, worst: np.ndarray, initial: float) -> float:
    """Largest fall from the running equity peak to a bar's worst-price equity, as a fraction."""
    peak = np.maximum.accumulate(np.r_[initial, equity])[:-1]
    peak = np.maximum(peak, 1e-12)
    return float(max(0.0, np.max((peak - np.minimum(worst, equity)) / peak))) if len(equity) else 0.0


def _finite(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) else 0.0
