"""Supervised regime labels for pretraining the Regime agent: what the next K M30 bars turned out to be.

Labels look into the FUTURE (they are targets, never inputs): the label of M30 bar t describes the path of bars
t+1..t+K, from the open of bar t+1 through the closes of bars t+1..t+K (log prices), so bar t's own close, which the
input matrix at t contains, is not part of it. With ``LabelConfig`` defaults in brackets, K = ``horizon`` [24 bars,
12 hours: about one trading session, long enough for a regime, short enough for the agent's 30-minute cadence]:

* increments: ``c[t+1] - o[t+1]``, then ``c[j] - c[j-1]`` for j = t+2..t+K; ``net`` = their sum,
  ``rv`` = the root of their sum of squares (realised volatility of the window);
* ``z = |net| / rv``: the window's drift as a t-statistic; under a driftless random walk |z| ~ |N(0, 1)|, so it
  is direction-agnostic and scale-free (a trend is a trend whichever way; the Structure agent gives the direction);
* ``efficiency = |net| / sum(high - low)`` over the K bars: the ADX-like share of the distance travelled, intrabar
  ranges included, that went somewhere.

Classes, in this order of priority (indices as ``REGIME_CLASSES``):

1. **volatile** if ``rv`` is above the ``vol_quantile`` [0.8] quantile of the rv of the trailing
   ``vol_lookback`` [960 windows, 20 trading days] windows that had *ended* by bar t (windows s <= t - K; at least
   ``vol_min_periods`` [240] of them): the top fifth of what the market had recently done. Relative, not absolute,
   so March 2020 or 2022 are not volatile from start to end;
2. **trending** if ``z >= trend_z`` [1.25: a random walk's window exceeds it 21 % of the time; on EURUSD 2017-2022
   about 14 % of windows after the volatile ones];
3. **ranging** if ``z < range_z`` [0.5] and ``efficiency < range_efficiency`` [0.06, ~35th percentile]:
   the price went back and forth and ended near where it began;
4. **transition** otherwise (drift too large for a range, too small for a trend).

On EURUSD 2017, 2019, 2020, 2022 that gives about 21 % volatile, 14 % trending, 28 % ranging, 37 % transition.
A window that spans a data stop longer than ``max_gap_minutes`` [120] between consecutive M30 bars (a weekend, a
holiday, a data hole) gets no label (-1): its "path" would be two sessions glued together. So a label at t reads
bars t+1..t+K of the future and, for the volatility reference only, the past windows' rv (bars <= t, known at t);
``tests/test_regime.py`` checks both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from agents.four_agent.config import REGIME_CLASSES

TRENDING, RANGING, VOLATILE, TRANSITION = (REGIME_CLASSES.index(c)
                                           for c in ("trending", "ranging", "volatile", "transition"))
UNLABELLED = -1


@dataclass(frozen=True)
class LabelConfig:
    """Thresholds of the label rule (module docstring); stored in the checkpoint manifest."""

    horizon: int = 24
    trend_z: float = 1.25
    range_z: float = 0.5
    range_efficiency: float = 0.06
    vol_quantile: float = 0.8
    vol_lookback: int = 960
    vol_min_periods: int = 240
    max_gap_minutes: int = 120

    def __post_init__(self) -> None:
        if self.horizon < 2:
            raise ValueError(f"horizon must be >= 2 bars, got {self.horizon}")
        if not self.range_z <= self.trend_z:
            raise ValueError("range_z must be <= trend_z")
        if not 0.0 < self.vol_quantile < 1.0:
            raise ValueError("vol_quantile must be in (0, 1)")
        if not 0 < self.vol_min_periods <= self.vol_lookback:
            raise ValueError("need 0 < vol_min_periods <= vol_lookback")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"classes": list(REGIME_CLASSES)}


class RegimeLabels(NamedTuple):
    labels: np.ndarray  # (n,) int64, class index or UNLABELLED
    z: np.ndarray  # (n,) window statistics (NaN where undefined)
    efficiency: np.ndarray
    rv: np.ndarray
    vol_ref: np.ndarray  # the volatility threshold at t (from windows ended by t)


def _window_sum(x: np.ndarray, k: int, start: int, n: int) -> np.ndarray:
    """Out[t] = x[t + start] + ... + x[t + start + k - 1] for t < n (NaN where it runs past the end); each from its
    own window's values (no running totals)."""
    out = np.full(n, np.nan)
    m = len(x) - start - k + 1
    if m > 0:
        out[:min(m, n)] = np.lib.stride_tricks.sliding_window_view(x[start:], k).sum(axis=1)[:n]
    return out


def regime_labels(times_ns: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                  cfg: LabelConfig = LabelConfig()) -> RegimeLabels:
    """Labels of consecutive complete M30 bars (bar open times in UTC ns, bid OHLC)."""
    n, k = len(close), cfg.horizon
    t = np.asarray(times_ns, dtype=np.int64)
    lo_, lh, ll, lc = (np.log(np.asarray(a, dtype=np.float64)) for a in (open_, high, low, close))
    d = np.r_[np.nan, np.diff(lc)]  # d[j] = c[j] - c[j-1]
    f = lc - lo_  # c[j] - o[j]
    net = np.full(n, np.nan)
    net[:n - k] = lc[k:] - lo_[1:n - k + 1]  # c[t+K] - o[t+1]
    rv2 = np.full(n, np.nan)
    rv2[:n - k] = f[1:n - k + 1] ** 2 + _window_sum(d * d, k - 1, 2, n)[:n - k]
    rv = np.sqrt(rv2)
    travelled = _window_sum(lh - ll, k, 1, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(rv > 0, np.abs(net) / rv, 0.0)
        eff = np.where(travelled > 0, np.abs(net) / travelled, 0.0)
    gaps = np.diff(t) / 60e9  # minutes between bar t and t+1 at index t
    span_gap = np.full(n, np.inf)
    if n - k > 0 and k > 1:  # the largest step inside t+1..t+K: gaps[t+1 .. t+K-1]
        win = np.lib.stride_tricks.sliding_window_view(gaps[1:], k - 1).max(axis=1)
        span_gap[:min(len(win), n - k)] = win[:n - k]
    defined = np.isfinite(rv) & (span_gap <= cfg.max_gap_minutes)
    z, eff, rv = (np.where(defined, a, np.nan) for a in (z, eff, rv))
    # volatility reference: windows that had ended by bar t (s + K <= t)
    ref = pd.Series(rv).shift(k).rolling(cfg.vol_lookback, min_periods=cfg.vol_min_periods).quantile(
        cfg.vol_quantile).to_numpy()
    labels = np.full(n, UNLABELLED, np.int64)
    ok = defined & np.isfinite(ref)
    vol = ok & (rv > ref)
    trend = ok & ~vol & (z >= cfg.trend_z)
    rng = ok & ~vol & ~trend & (z < cfg.range_z) & (eff < cfg.range_efficiency)
    labels[ok] = TRANSITION
    labels[trend] = TRENDING
    labels[rng] = RANGING
    labels[vol] = VOLATILE
    return RegimeLabels(labels, z, eff, rv, ref)


def labels_for_bars(m30: pd.DataFrame, cfg: LabelConfig = LabelConfig()) -> RegimeLabels:
    """:func:`regime_labels` of complete M30 bars as ``feeds.resample.htf_bars`` returns them."""
    return regime_labels(m30.index.as_unit("ns").asi8, *(m30[c].to_numpy(np.float64)
                                                          for c in ("open", "high", "low", "close")), cfg)


def previous_label(labels: np.ndarray, horizon: int) -> np.ndarray:
    """The causal "previous label" baseline: at bar t the newest label whose window has ended, that of bar
    t - horizon (its window t-K+1..t is complete at t); UNLABELLED where there is none."""
    out = np.full(len(labels), UNLABELLED, np.int64)
    if horizon < len(labels):
        out[horizon:] = labels[:len(labels) - horizon]
    return out
