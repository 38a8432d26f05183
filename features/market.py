"""The market block: when and where in its day and week a bar is, what the slower timeframes did, carry, and the
macro series as changes (issue 15, lever 3). Opt-in (``EnvConfig.market_features``): the 16-D state stays the default
and every committed checkpoint keeps working.

Every value at M1 bar ``i`` is known at that bar's close: clock values from the close time (open + 1 minute), levels
from FX trading days that have ended (``feeds.calendar``: the day ends at the 17:00 New York rollover), returns and
volatilities from bars up to ``i``, macro values as published by the bar's open (``feeds.macro.PUBLICATION``). The
proof is ``tests/test_market_features.py`` (every prefix gives the same rows as the whole series).

==  =====================  =================================================================================
 0  tod_sin, tod_cos       the close's UTC time of day on the unit circle
 2  dow_sin, dow_cos       its position in the UTC week (Monday 00:00 = 0) on the unit circle
 4  asia                   1 in the Tokyo session (09:00-18:00 Asia/Tokyo)
 5  london                 1 in the London session (08:00-17:00 Europe/London, its summer time included)
 6  new_york               1 in the New York session (08:00-17:00 America/New_York)
 7  rollover               1 within ``rollover_minutes`` of the 17:00 New York rollover (swaps, wide spreads)
 8  prev_day_high          (close - the previous trading day's high) / that day's range
 9  prev_day_low           (close - the previous trading day's low) / that day's range
10  prev_week_high         (close - the previous week's high) / its range (weeks of trading days, Monday first)
11  prev_week_low          (close - the previous week's low) / its range
12  ret_h1, ret_h4, ret_d1 log return over the last 60 / 240 / 1440 M1 bars / (one-bar volatility x sqrt(k)),
                           the volatility over ``vol_windows[1]`` bars: a z-score of the move
15  vol_h1_d1              log(one-bar volatility over 60 bars / over 1440 bars)
16  vol_d1_w1              log(over 1440 bars / over 7200 bars, five trading days)
17  carry                  (swap_long - swap_short) / 2, in pips per night, / the spread in pips / ``carry_scale``:
                           the instrument's swap differential in nights of carry per spread paid
                           (``configs/instruments.yaml``). A constant per instrument: it tells instruments
                           apart, never the price level (version 1 divided by the close, which made it one)
18  vix_change ...         ``features.matrices.macro_changes``: VIX over 7 days, fed funds and 10y-2y over 28
==  =====================  =================================================================================

Undefined values (the first bars, no complete previous day or week in the data: the first period of a series may be
partial) are NaN before ``finish`` and 0 after; the block is defined from ``MarketSpec.warmup_bars`` on once the data
have begun a third FX week (``market_block``'s ready row; ``features.incremental`` applies the same rule).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.engine import FeatureSpec, _rolling, _safe_div, finish
from features.matrices import DEFAULT_MATRIX_SPEC, MACRO_CHANGE_COLUMNS, macro_changes
from feeds.calendar import ROLLOVER_HOUR, trading_days
from feeds.macro import MacroTable

MARKET_NAMES: tuple[str, ...] = (
    "tod_sin", "tod_cos", "dow_sin", "dow_cos", "asia", "london", "new_york", "rollover",
    "prev_day_high", "prev_day_low", "prev_week_high", "prev_week_low",
    "ret_h1", "ret_h4", "ret_d1", "vol_h1_d1", "vol_d1_w1", "carry", *MACRO_CHANGE_COLUMNS,
)
N_MARKET = len(MARKET_NAMES)
_IDX = {name: i for i, name in enumerate(MARKET_NAMES)}
_NS_MIN = 60_000_000_000
_NS_DAY = 1440 * _NS_MIN
_SESSIONS = (("asia", "Asia/Tokyo"), ("london", "Europe/London"), ("new_york", "America/New_York"))


@dataclass(frozen=True)
class MarketSpec:
    """Windows, sessions and scales of the market block; stored in checkpoint manifests with the engine's spec."""

    return_bars: tuple[int, int, int] = (60, 240, 1440)
    vol_windows: tuple[int, int, int] = (60, 1440, 7200)
    sessions: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] = ((9, 18), (8, 17), (8, 17))
    """local (start hour, end hour) of Tokyo, London and New York"""
    rollover_minutes: int = 30
    carry_scale: float = 1.0
    clip: float = FeatureSpec().clip
    version: int = 2  # 2: carry per spread (1: an annual % of the close, a price-level input within an instrument)

    def __post_init__(self) -> None:
        if any(k < 1 for k in (*self.return_bars, *self.vol_windows)):
            raise ValueError("return and volatility windows must be >= 1 bar")
        if not (self.carry_scale > 0 and self.rollover_minutes >= 0):
            raise ValueError("carry_scale must be positive and rollover_minutes >= 0")

    @property
    def warmup_bars(self) -> int:
        """Rows before every bar-count feature is defined (the previous week also needs a week of data)."""
        return max(max(self.return_bars), max(self.vol_windows))

    def to_dict(self) -> dict[str, Any]:
        """JSON's form (lists, not tuples), so a manifest read back compares equal; with the macro changes'
        windows and scales (``features.matrices.MatrixSpec``), which the block reuses."""
        m = DEFAULT_MATRIX_SPEC
        macro = {k: getattr(m, k) for k in ("vix_change_days", "vix_change_scale", "rates_change_days",
                                            "rates_change_scale")}
        return json.loads(json.dumps(asdict(self) | {"names": list(MARKET_NAMES), "warmup_bars": self.warmup_bars,
                                                      "macro_changes": macro}))


DEFAULT_MARKET_SPEC = MarketSpec()


MARKET_WINDOW = 15_000
"""M1 bars the incremental driver (``features.incremental``) re-runs the block over: the current and the previous
FX week hold at most 2 x 7,200 bars, and the longest volatility window is 7,200"""


def week_numbers(days: np.ndarray) -> np.ndarray:
    """FX weeks (Monday first) of trading days given as days since the epoch (1970-01-01 was a Thursday)."""
    return (np.asarray(days, dtype=np.int64) + 3) // 7


def trading_week(time_ns: int) -> int:
    """The FX week of one bar open time, as ``raw_market_arrays`` labels it."""
    return int(week_numbers(trading_day_numbers(np.array([time_ns])))[0])


def swap_differential(inst) -> float:
    """An instrument's carry in spreads per night: half the long swap minus the short swap, over the spread (both in
    pips): how many nights of holding a long rather than a short pay one spread."""
    if not inst.spread_pips > 0:
        raise ValueError(f"{inst.symbol}: the carry per spread needs a positive spread")
    return 0.5 * (float(inst.swap_long_pips) - float(inst.swap_short_pips)) / float(inst.spread_pips)


def _previous_period(period: np.ndarray, high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bar, the high and low of the previous period (day or week) present in the data; NaN in the first two: the
    first period may have begun before the data (a series starting mid-week), so it is nobody's previous one. A short
    period (a holiday's few hours) counts as one. ``period``: non-decreasing labels per bar."""
    n = len(period)
    starts = np.flatnonzero(np.r_[True, period[1:] != period[:-1]]) if n else np.zeros(0, int)
    ph, pl = np.maximum.reduceat(high, starts), np.minimum.reduceat(low, starts)
    which = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n])) - 1  # the previous period's number
    prev_h, prev_l = np.full(n, np.nan), np.full(n, np.nan)
    ok = which >= 1
    prev_h[ok], prev_l[ok] = ph[which[ok]], pl[which[ok]]
    return prev_h, prev_l


def raw_market_arrays(times_ns: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                      macro: pd.DataFrame | MacroTable | None, carry: float,
                      spec: MarketSpec = DEFAULT_MARKET_SPEC, rows: int | None = None,
                      days: np.ndarray | None = None) -> np.ndarray:
    """Float64 (n, ``N_MARKET``) block of M1 bars (open times in UTC ns); NaN where undefined.

    :param carry: the instrument's swap differential in spreads per night (``swap_differential``)
    :param rows: compute only the last ``rows`` rows (the others are NaN), as the incremental driver asks; the
        volatilities then come from the engine's window-exact statistic instead of pandas' online one (the same
        population std of the same returns, within 1e-12: ``tests/test_market_features.py``)
    :param days: the bars' FX trading days (days since the epoch) if known, else computed here
    """
    t = np.asarray(times_ns, dtype=np.int64)
    n = len(t)
    out = np.full((n, N_MARKET), np.nan)
    if n == 0:
        return out
    if np.any(np.diff(t) <= 0):
        raise ValueError("bar times must be strictly increasing")
    high, low, close = (np.ascontiguousarray(a, dtype=np.float64) for a in (high, low, close))
    if not np.all(np.isfinite(close) & np.isfinite(high) & np.isfinite(low)):
        raise ValueError("NaN or infinite price in the bars")
    tail = slice(0 if rows is None else max(0, n - rows), n)
    o = out[tail]  # a view: the rows asked for
    closes_at = t[tail] + _NS_MIN
    tod = (closes_at % _NS_DAY) / _NS_DAY
    dow = ((closes_at // _NS_DAY + 3) % 7 + tod) / 7.0  # 1970-01-01 was a Thursday: + 3 makes Monday 0
    o[:, _IDX["tod_sin"]], o[:, _IDX["tod_cos"]] = np.sin(2 * np.pi * tod), np.cos(2 * np.pi * tod)
    o[:, _IDX["dow_sin"]], o[:, _IDX["dow_cos"]] = np.sin(2 * np.pi * dow), np.cos(2 * np.pi * dow)
    utc = pd.DatetimeIndex(closes_at, tz="UTC")
    for (name, zone), (h0, h1) in zip(_SESSIONS, spec.sessions, strict=True):
        local = utc.tz_convert(zone)
        hour = local.hour.to_numpy() + local.minute.to_numpy() / 60.0
        o[:, _IDX[name]] = (hour >= h0) & (hour < h1)
    ny = utc.tz_convert("America/New_York")
    to_roll = (ny.hour.to_numpy() * 60 + ny.minute.to_numpy() - ROLLOVER_HOUR * 60) % 1440  # minutes past it
    o[:, _IDX["rollover"]] = np.minimum(to_roll, 1440 - to_roll) <= spec.rollover_minutes

    day = trading_day_numbers(t) if days is None else np.asarray(days, dtype=np.int64)
    week = week_numbers(day)
    for label, (hi_name, lo_name) in ((day, ("prev_day_high", "prev_day_low")),
                                      (week, ("prev_week_high", "prev_week_low"))):
        ph, pl = (a[tail] for a in _previous_period(label, high, low))
        rng = ph - pl
        o[:, _IDX[hi_name]] = _safe_div(close[tail] - ph, rng)
        o[:, _IDX[lo_name]] = _safe_div(close[tail] - pl, rng)

    logc = np.log(close)
    r1 = np.full(n, np.nan)
    r1[1:] = np.diff(logc)
    if rows is None:  # pandas' online rolling std: windows of days cost no more than short ones, a row depends on
        # the rows up to it only (the prefix test)
        ser = pd.Series(r1)
        vol = {w: ser.rolling(w, min_periods=w).std(ddof=0).to_numpy()[tail] for w in spec.vol_windows}
    else:
        vol = {w: _rolling(r1, w, "std", rows)[tail] for w in spec.vol_windows}
    base = vol[spec.vol_windows[1]]
    idx = np.arange(n)[tail]
    for name, k in zip(("ret_h1", "ret_h4", "ret_d1"), spec.return_bars, strict=True):
        move = np.where(idx >= k, logc[tail] - logc[np.maximum(idx - k, 0)], np.nan)
        o[:, _IDX[name]] = _safe_div(move, base * np.sqrt(k))
    w0, w1, w2 = spec.vol_windows
    for name, (a, b) in (("vol_h1_d1", (w0, w1)), ("vol_d1_w1", (w1, w2))):
        va, vb = vol[a], vol[b]
        col = np.where(np.isfinite(va) & np.isfinite(vb), 0.0, np.nan)  # a zero volatility (no move): 0
        ok = np.isfinite(va) & np.isfinite(vb) & (va > 0) & (vb > 0)
        col[ok] = np.log(va[ok] / vb[ok])
        o[:, _IDX[name]] = col

    o[:, _IDX["carry"]] = carry / spec.carry_scale
    table = macro if macro is None or isinstance(macro, MacroTable) else MacroTable.from_frame(macro)
    o[:, _IDX["vix_change"]:] = macro_changes(t[tail], table, clip=spec.clip)
    return out


def trading_day_numbers(times_ns: np.ndarray) -> np.ndarray:
    """FX trading day (``feeds.calendar``) of each bar open time, as days since the epoch."""
    return trading_days(pd.DatetimeIndex(np.asarray(times_ns, dtype=np.int64), tz="UTC")).asi8 // _NS_DAY


def market_block(m1: pd.DataFrame, macro: pd.DataFrame | MacroTable | None, carry: float,
                 spec: MarketSpec = DEFAULT_MARKET_SPEC) -> tuple[np.ndarray, int]:
    """The block of M1 bars as the agents see it (float32 (n, ``N_MARKET``), undefined -> 0, clipped to
    +-``spec.clip``) and the first row at which every value is defined (``n`` if none)."""
    idx = pd.DatetimeIndex(m1.index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    raw = raw_market_arrays(idx.as_unit("ns").asi8, m1["high"].to_numpy(np.float64), m1["low"].to_numpy(np.float64),
                            m1["close"].to_numpy(np.float64), macro, carry, spec)
    defined = np.flatnonzero(np.isfinite(raw).all(axis=1))
    return finish(raw, FeatureSpec(clip=spec.clip)), int(defined[0]) if len(defined) else len(raw)
