"""The one causal feature engine shared by backtests, RL envs and live trading.

Every feature at bar t is a function of bars[:t+1] only (and of macro values published by
t, ``feeds.macro.PUBLICATION``): indicators come from TA-Lib (recursive, seeded at the first bar)
and window-exact rolling statistics over past bars; nothing is fitted on the whole series. The
proof is ``tests/test_features.py`` (prefix computation == full computation).

Features (all scale-free, roughly in [-5, 5], finally clipped to [-clip, clip]):

==  ==================  =====================================================================
 0  price_norm          (close - rolling mean) / rolling std of close, ``norm_window`` bars
 1  returns             log return / rolling std of log returns (``vol_window``, incl. current)
 2  volatility          log(rolling std of log returns / its ``vol_long_window`` rolling mean)
 3  rsi                 (RSI(14) - 50) / 50
 4  macd                MACD(12, 26, 9) histogram / ATR(14)
 5  atr                 rolling z-score (``z_window``) of log(ATR(14) / close)
 6  bb_width            rolling z-score (``z_window``) of (upper - lower) / middle of Bollinger(20, 2)
 7  adx                 ADX(14) / 100
 8  cci                 CCI(20) / ``cci_scale``, clipped to +-``cci_clip``
 9  gap                 log1p(minutes since previous bar - bar length) / log1p(``gap_scale_minutes``),
                        clipped to [0, 1]: 0 for contiguous bars, ~1 after a weekend. Gaps are
                        modelled explicitly, prices are never forward-filled.
10  regime_trend        1 if ADX >= ``adx_trend`` (25)
11  regime_range        1 if ADX < ``adx_range`` (20)
12  regime_transition   1 if ``adx_range`` <= ADX < ``adx_trend``
13  vix                 (VIX - 20) / 10, the last published close (``feeds.macro.PUBLICATION``)
14  fed_funds           effective fed funds rate / 5, from its publication (next business day 9:00 New York)
15  yield_curve         10y-2y spread / 2, the last published value
==  ==================  =====================================================================

Conventions: rows where an indicator is still undefined (warm-up) get 0.0 for that feature
(the regime one-hot is all zero there); ``spec.warmup_bars`` rows must be skipped before every
feature is defined. Macro ``None`` (or a date before the first published value) gives 0.0.
Divisions by a (near-)zero rolling spread give 0.0, never inf. Volume is always 0 in our
HistData bars, so no feature uses it; the M1 agent's volume-ratio input uses
:func:`volume_substitute` (a range-based proxy) instead.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import talib

from feeds.macro import MacroTable, publication_rules

logger = logging.getLogger(__name__)

FEATURE_NAMES: tuple[str, ...] = (
    "price_norm",
    "returns",
    "volatility",
    "rsi",
    "macd",
    "atr",
    "bb_width",
    "adx",
    "cci",
    "gap",
    "regime_trend",
    "regime_range",
    "regime_transition",
    "vix",
    "fed_funds",
    "yield_curve",
)
N_FEATURES = len(FEATURE_NAMES)
_IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}

_EPS = 1e-12  # spreads below this count as zero (flat market): the ratio is set to 0
# floor inside logs of ratios that can be exactly 0 (zero-range bars)
_LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class FeatureSpec:
    """All windows and scales of the engine; stored in checkpoint manifests so a model is
    never fed features computed differently from those it was trained on."""

    bar_minutes: int = 1
    norm_window: int = 100
    vol_window: int = 20
    vol_long_window: int = 100
    z_window: int = 100
    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    atr_period: int = 14
    bb_period: int = 20
    bb_nbdev: float = 2.0
    adx_period: int = 14
    cci_period: int = 20
    cci_scale: float = 200.0
    cci_clip: float = 5.0
    gap_scale_minutes: float = 2880.0  # two days: a normal weekend maps to ~1
    adx_trend: float = 25.0
    adx_range: float = 20.0
    vix_center: float = 20.0
    vix_scale: float = 10.0
    fed_funds_scale: float = 5.0
    yield_curve_scale: float = 2.0
    clip: float = 10.0
    version: int = 2  # 2: fed funds from its publication (next business day 9:00 New York), not the next UTC day

    def __post_init__(self) -> None:
        if self.bar_minutes <= 0:
            raise ValueError(f"bar_minutes must be positive, got {self.bar_minutes}")
        if not self.adx_range <= self.adx_trend:
            raise ValueError("adx_range must be <= adx_trend")

    @classmethod
    def for_timeframe(cls, minutes: int, **overrides: Any) -> FeatureSpec:
        """Spec for bars of ``minutes`` (1 = M1, 240 = H4); windows stay in bars."""
        return replace(cls(), bar_minutes=int(minutes), **overrides)

    @property
    def warmup_bars(self) -> int:
        """Rows to skip before every feature is defined (= index of the first fully defined row)."""
        first_valid = (
            self.norm_window - 1,  # price_norm
            self.vol_window,  # returns: log returns start at row 1
            self.vol_window + self.vol_long_window - 1,  # volatility
            self.rsi_period,  # rsi (TA-Lib lookback)
            max(
                self.macd_slow - 1 + self.macd_signal - 1, self.atr_period
            ),  # macd / ATR
            self.atr_period + self.z_window - 1,  # atr z-score
            self.bb_period - 1 + self.z_window - 1,  # bb_width z-score
            2 * self.adx_period - 1,  # adx, regimes
            self.cci_period - 1,  # cci
            1,  # gap
        )
        return max(first_valid)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description for checkpoint manifests (includes the feature names)."""
        out: dict[str, Any] = asdict(self)
        out["feature_names"] = list(FEATURE_NAMES)
        out["warmup_bars"] = self.warmup_bars
        out["macro_publication"] = publication_rules()
        return out


DEFAULT_SPEC = FeatureSpec()


_CHUNK = 4096  # rows of sliding windows reduced at a time (bounds the temporaries)


def _rolling(x: np.ndarray, window: int, how: str, rows: int | None = None) -> np.ndarray:
    """Trailing-window mean, population std or mean absolute deviation over past bars only (NaN until the
    window is full; a NaN inside a window gives NaN).

    Each value is computed from its own window's values alone (numpy's pairwise sums over a sliding window),
    never from a running total: pandas' rolling sums carry rounding from the first bar of the series, so a
    window of constant prices read 1e-12 instead of 0 and the same bar's features moved with where the history
    began. Window-exact values are what lets the incremental driver reproduce the whole-series computation bit
    for bit. ``rows``: compute only the last ``rows`` values (the others are NaN); the incremental driver needs
    just the newest bar's.
    """
    n = len(x)
    out = np.full(n, np.nan)
    first = max(window - 1, 0 if rows is None else n - rows)
    if first >= n:
        return out
    seg = np.ascontiguousarray(x[first - window + 1:], dtype=np.float64)
    # the sliding windows as a strided view of seg (numpy's sliding_window_view, without its per-call checks)
    view = np.ndarray((n - first, window), np.float64, buffer=seg, strides=(seg.itemsize, seg.itemsize))
    for a in range(0, len(view), _CHUNK):
        v = view[a:a + _CHUNK]
        m = v.mean(axis=1)
        if how == "mean":
            out[first + a:first + a + len(v)] = m
            continue
        d = v - m[:, None]
        if how == "std":
            out[first + a:first + a + len(v)] = np.sqrt((d * d).mean(axis=1))
        elif how == "mad":
            out[first + a:first + a + len(v)] = np.abs(d).mean(axis=1)
        else:
            raise ValueError(f"unknown rolling statistic {how!r}")
    return out


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where |den| is (near) zero, NaN where either input is NaN (warm-up)."""
    out = np.full(num.shape, np.nan)
    ok = np.isfinite(num) & np.isfinite(den)
    nz = ok & (np.abs(den) > _EPS)
    out[ok] = 0.0
    np.divide(num, den, out=out, where=nz)
    return out


def _rolling_z(x: np.ndarray, window: int, rows: int | None = None) -> np.ndarray:
    """Causal z-score against the trailing ``window`` values (current one included)."""
    return _safe_div(x - _rolling(x, window, "mean", rows), _rolling(x, window, "std", rows))


def _more(rows: int | None, k: int) -> int | None:
    """Rows an inner statistic must provide so that ``rows`` outer values over ``k``-bar windows exist."""
    return None if rows is None else rows + k - 1


def _times_ns(index: pd.DatetimeIndex) -> np.ndarray:
    """Bar open times as UTC nanoseconds (naive = UTC)."""
    idx = pd.DatetimeIndex(index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return idx.as_unit("ns").asi8


def raw_features(
    bars: pd.DataFrame, macro: pd.DataFrame | MacroTable | None, spec: FeatureSpec = DEFAULT_SPEC,
    rows: int | None = None,
) -> np.ndarray:
    """Float64 (n, 16) features before warm-up filling and clipping (NaN = undefined yet).

    ``rows``: only the last ``rows`` rows are computed (the others are NaN); they are bit-identical to the same
    rows of the whole computation. The incremental driver asks for one.
    """
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise TypeError("bars must have a DatetimeIndex of bar open times (UTC)")
    missing = [c for c in ("open", "high", "low", "close") if c not in bars.columns]
    if missing:
        raise KeyError(f"bars lack columns {missing}")
    return raw_feature_arrays(_times_ns(bars.index), bars["high"].to_numpy(dtype=np.float64),
                              bars["low"].to_numpy(dtype=np.float64), bars["close"].to_numpy(dtype=np.float64),
                              macro, spec, rows)


def raw_feature_arrays(
    times_ns: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
    macro: pd.DataFrame | MacroTable | None, spec: FeatureSpec = DEFAULT_SPEC, rows: int | None = None,
) -> np.ndarray:
    """:func:`raw_features` on arrays: bar open times (UTC ns), highs, lows and closes."""
    n = len(close)
    out = np.full((n, N_FEATURES), np.nan)
    if n == 0:
        return out
    high = np.ascontiguousarray(high, dtype=np.float64)
    low = np.ascontiguousarray(low, dtype=np.float64)
    close = np.ascontiguousarray(close, dtype=np.float64)
    zw = spec.z_window

    out[:, _IDX["price_norm"]] = _rolling_z(close, spec.norm_window, rows)

    logret = np.full(n, np.nan)
    logret[1:] = np.diff(np.log(close))
    vol = _rolling(logret, spec.vol_window, "std", _more(rows, spec.vol_long_window))
    out[:, _IDX["returns"]] = _safe_div(logret, vol)
    vol_long = _rolling(vol, spec.vol_long_window, "mean", rows)
    out[:, _IDX["volatility"]] = np.log((vol + _LOG_FLOOR) / (vol_long + _LOG_FLOOR))

    rsi = talib.RSI(close, timeperiod=spec.rsi_period)
    out[:, _IDX["rsi"]] = (rsi - 50.0) / 50.0

    atr = talib.ATR(high, low, close, timeperiod=spec.atr_period)
    _, _, hist = talib.MACD(
        close,
        fastperiod=spec.macd_fast,
        slowperiod=spec.macd_slow,
        signalperiod=spec.macd_signal,
    )
    out[:, _IDX["macd"]] = _safe_div(hist, atr)
    out[:, _IDX["atr"]] = _rolling_z(np.log(np.maximum(atr / close, _LOG_FLOOR)), zw, rows)

    # Bollinger width (upper - lower) / middle = 2 nbdev std / mean over bb_period closes (TA-Lib's BBANDS, whose
    # running sums would carry rounding from the first bar; see _rolling)
    bb_rows = _more(rows, zw)
    bb = _safe_div(2.0 * spec.bb_nbdev * _rolling(close, spec.bb_period, "std", bb_rows),
                   _rolling(close, spec.bb_period, "mean", bb_rows))
    out[:, _IDX["bb_width"]] = _rolling_z(bb, zw, rows)

    adx = talib.ADX(high, low, close, timeperiod=spec.adx_period)
    out[:, _IDX["adx"]] = adx / 100.0
    # CCI (Lambert): (typical - its SMA) / (0.015 x mean absolute deviation), over cci_period bars, as TA-Lib's
    # CCI computes it but window-exact (TA-Lib sums a circular buffer whose order depends on the start)
    typical = (high + low + close) / 3.0
    cci = _safe_div(typical - _rolling(typical, spec.cci_period, "mean", rows),
                    0.015 * _rolling(typical, spec.cci_period, "mad", rows))
    out[:, _IDX["cci"]] = np.clip(cci / spec.cci_scale, -spec.cci_clip, spec.cci_clip)

    gap = np.full(n, np.nan)
    gap[1:] = np.diff(np.asarray(times_ns, dtype=np.int64)) / 60e9
    excess = np.maximum(gap - spec.bar_minutes, 0.0)
    out[:, _IDX["gap"]] = np.minimum(
        np.log1p(excess) / np.log1p(spec.gap_scale_minutes), 1.0
    )

    defined = ~np.isnan(adx)
    a = np.where(defined, adx, 0.0)
    trend = defined & (a >= spec.adx_trend)
    rng = defined & (a < spec.adx_range)
    out[:, _IDX["regime_trend"]] = trend
    out[:, _IDX["regime_range"]] = rng
    out[:, _IDX["regime_transition"]] = defined & ~trend & ~rng
    out[~defined, _IDX["regime_trend"] : _IDX["regime_transition"] + 1] = np.nan

    if macro is None:
        out[:, _IDX["vix"] :] = 0.0
    else:
        table = macro if isinstance(macro, MacroTable) else MacroTable.from_frame(macro)
        m = table.asof(times_ns)
        out[:, _IDX["vix"]] = (m[:, 0] - spec.vix_center) / spec.vix_scale
        out[:, _IDX["fed_funds"]] = m[:, 1] / spec.fed_funds_scale
        out[:, _IDX["yield_curve"]] = m[:, 2] / spec.yield_curve_scale
    if rows is not None and rows < n:
        out[: n - rows] = np.nan  # only the rows asked for are complete
    return out


def finish(raw: np.ndarray, spec: FeatureSpec = DEFAULT_SPEC) -> np.ndarray:
    """Raw features as the agents see them: float32, undefined -> 0, clipped to +-``spec.clip`` (in place)."""
    np.nan_to_num(raw, copy=False, nan=0.0, posinf=spec.clip, neginf=-spec.clip)
    np.clip(raw, -spec.clip, spec.clip, out=raw)
    return raw.astype(np.float32)


def compute_features(
    bars: pd.DataFrame, macro: pd.DataFrame | MacroTable | None, spec: FeatureSpec = DEFAULT_SPEC
) -> np.ndarray:
    """Float32 (n, 16) features in :data:`FEATURE_NAMES` order; undefined -> 0, clipped."""
    return finish(raw_features(bars, macro, spec), spec)


def features_frame(
    bars: pd.DataFrame, macro: pd.DataFrame | None, spec: FeatureSpec = DEFAULT_SPEC
) -> pd.DataFrame:
    """:func:`compute_features` as a DataFrame with FEATURE_NAMES columns and the bars' index."""
    return pd.DataFrame(
        compute_features(bars, macro, spec),
        index=bars.index,
        columns=list(FEATURE_NAMES),
    )


def volume_substitute(bars: pd.DataFrame, window: int = 20) -> pd.Series:
    """Range-based stand-in for a volume ratio (our data has no volume): :func:`volume_ratio` as a Series."""
    ratio = volume_ratio(bars["high"].to_numpy(dtype=np.float64), bars["low"].to_numpy(dtype=np.float64), window)
    return pd.Series(ratio, index=bars.index, name="volume_substitute")


def volume_ratio(high: np.ndarray, low: np.ndarray, window: int = 20, rows: int | None = None) -> np.ndarray:
    """(high - low) / trailing ``window``-bar mean of (high - low), current bar included; 1.0 when the whole
    window has zero range (nothing unusual), NaN during the first ``window - 1`` bars."""
    rng = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
    mean = _rolling(rng, window, "mean", rows)
    ratio = np.where(np.isnan(mean), np.nan, 1.0)
    np.divide(rng, mean, out=ratio, where=np.isfinite(mean) & (mean > _EPS))
    return ratio
