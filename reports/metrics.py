"""Performance statistics: the one place that says how returns are grouped into days and annualised.

Daily returns are taken per FX trading day (``feeds.calendar.trading_days``: the day ends at the 17:00 New York
rollover, so Sunday evening's session belongs to Monday) and annualised with ``PERIODS_PER_YEAR``, through
QuantStats so the numbers match the tearsheet.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import quantstats as qs

from feeds.calendar import trading_days

PERIODS_PER_YEAR = 260
"""FX trading days a year: the market trades five days a week all year round and the Sunday session is Monday's
(our EURUSD files have 259-261 such days a year, holidays included, since even Christmas has bars). The
annualisation must be the number of daily returns a year holds; 252, the equity-exchange convention, would
understate an FX Sharpe by 1.6 %."""


def daily_returns(index: pd.DatetimeIndex, equity: np.ndarray, initial: float) -> pd.Series:
    """Returns of the last equity of each FX trading day over the previous day's (the first over ``initial``),
    indexed by the trading day's date (tz-naive midnight)."""
    last = pd.Series(np.asarray(equity, dtype=np.float64), index=trading_days(index)).groupby(level=0).last()
    prev = last.shift(1)
    prev.iloc[0] = initial
    out = (last / prev - 1.0).rename("returns")
    out.index.name = "date"
    return out


def sharpe(returns: pd.Series) -> float:
    return _finite(_qs(qs.stats.sharpe, returns))


def sortino(returns: pd.Series) -> float:
    return _finite(_qs(qs.stats.sortino, returns))


def max_drawdown(equity: np.ndarray, worst: np.ndarray, initial: float) -> float:
    """Largest fall from the running equity peak (at closes) to a bar's worst-price equity, as a fraction."""
    equity = np.asarray(equity, dtype=np.float64)
    if not len(equity):
        return 0.0
    peak = np.maximum.accumulate(np.r_[initial, equity])[:-1]
    peak = np.maximum(peak, 1e-12)
    return float(max(0.0, np.max((peak - np.minimum(worst, equity)) / peak)))


def _qs(fn, returns: pd.Series) -> float:
    """A QuantStats statistic at our annualisation; a flat series (zero variance) is 0, not a RuntimeWarning."""
    if len(returns) < 2 or float(returns.std()) == 0.0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(returns, periods=PERIODS_PER_YEAR)


def _finite(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) else 0.0
