"""M1 -> M5 / M30 / H4 bars and the ONE rule for when a higher-timeframe bar is complete.

A higher-timeframe (HTF) bar covers the bin ``[start, start + tf)`` of UTC minutes, bins aligned to
00:00 UTC plus ``offset_minutes`` (e.g. a broker's server time). It is complete at the M1 bar whose
close time (open + 1 min) reaches the bin end: at the bin's last minute when that minute has a bar,
otherwise at the first M1 bar after the bin (a data hole delays it; nothing is forward-filled).
``is_complete`` is that rule; the vectorised ``htf_bars`` / ``completed_index`` apply it for the
backtest, the envs and live, so all three see the same bars at the same M1 bar.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

TIMEFRAMES = {"M1": 1, "M5": 5, "M30": 30, "H1": 60, "H4": 240, "D1": 1440}


def is_complete(bin_end_minute: int, m1_open_minute: int) -> bool:
    """True once the M1 bar opening at ``m1_open_minute`` has closed at or after the bin end."""
    return m1_open_minute + 1 >= bin_end_minute


def completes_at(minute: int, prev_minute: int | None, tf_minutes: int, offset_minutes: int = 0) -> bool:
    """Whether an HTF bar completes at the M1 bar opening at ``minute``, the previous M1 bar having opened at
    ``prev_minute`` (None: no previous bar): the ``is_complete`` rule for one bar at a time, as a live process or a
    per-bar cadence needs it (same answer as ``completed_index`` changing at that bar: tests/test_resample.py)."""
    start = (minute - offset_minutes) // tf_minutes * tf_minutes + offset_minutes
    if is_complete(start + tf_minutes, minute):
        return True
    if prev_minute is None:
        return False
    prev_start = (prev_minute - offset_minutes) // tf_minutes * tf_minutes + offset_minutes
    return prev_start != start and not is_complete(prev_start + tf_minutes, prev_minute)  # a hole ended it


def index_minutes(index: pd.DatetimeIndex) -> np.ndarray:
    """Minutes since the epoch of a tz-aware UTC index (int64)."""
    if index.tz is None:
        raise ValueError("bar index must be tz-aware UTC")
    return index.as_unit("ns").asi8 // 60_000_000_000


def htf_bars(m1: pd.DataFrame, tf_minutes: int, offset_minutes: int = 0) -> pd.DataFrame:
    """Aggregate M1 bid bars into complete higher-timeframe bars.

    Returns OHLCV indexed by bin open time (UTC) with an int column ``complete_at``: the position of
    the M1 bar at which the bar becomes complete. Bins that never complete inside the data (the last
    one, usually) are dropped. If two bins complete at the same M1 bar (only possible around data
    holes) only the later is kept, so at any M1 bar there is one newest complete bar; the number
    dropped is logged.
    """
    if tf_minutes < 1:
        raise ValueError("tf_minutes must be >= 1")
    mins = index_minutes(m1.index)
    n = len(mins)
    starts = (mins - offset_minutes) // tf_minutes * tf_minutes + offset_minutes
    first = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]]) if n else np.array([], int)
    o, h, lo, c, v = (m1[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume"))
    ends = starts[first] + tf_minutes
    # first M1 bar whose close reaches the bin end (same inequality as is_complete)
    complete_at = np.searchsorted(mins + 1, ends, side="left")
    out = pd.DataFrame(
        {
            "open": o[first],
            "high": np.maximum.reduceat(h, first) if n else h,
            "low": np.minimum.reduceat(lo, first) if n else lo,
            "close": c[np.r_[first[1:] - 1, n - 1]] if n else c,
            "volume": np.add.reduceat(v, first) if n else v,
            "complete_at": complete_at,
        },
        index=pd.DatetimeIndex(pd.to_datetime(starts[first], unit="m", utc=True), name="datetime"),
    )
    out = out[out["complete_at"] < n]
    at = out["complete_at"].to_numpy()
    keep = np.r_[at[1:] != at[:-1], True] if len(at) else np.zeros(0, bool)
    if not keep.all():
        first = out.index[np.flatnonzero(~keep)[0]]
        log.info("%d of %d %s bars end in a data hole and complete on the same minute as the next bar; only the "
                 "later one is delivered (first: the bar opening %s)", int((~keep).sum()), len(out),
                 _name(tf_minutes), f"{first:%Y-%m-%d %H:%M} UTC")
    return out[keep]


def _name(tf_minutes: int) -> str:
    return next((k for k, v in TIMEFRAMES.items() if v == tf_minutes), f"{tf_minutes}-minute")


class HTFAggregator:
    """``htf_bars`` one M1 bar at a time: the live feeds and the incremental feature driver build higher-timeframe
    bars with it, so they complete at exactly the M1 bar ``htf_bars`` says (``tests/test_alignment.py``).

    :param tf_minutes: bar length in minutes (5, 30, 240, ...)
    :param offset_minutes: bin offset from 00:00 UTC
    """

    def __init__(self, tf_minutes: int, offset_minutes: int = 0) -> None:
        if tf_minutes < 1:
            raise ValueError("tf_minutes must be >= 1")
        self.tf, self.offset = int(tf_minutes), int(offset_minutes)
        self._bin: list | None = None  # [start minute, open, high, low, close, volume, done]

    def step(self, minute: int, o: float, h: float, lo: float, c: float, v: float = 0.0) -> tuple | None:
        """Add the M1 bar opening at ``minute``; returns the bar that completes at it, as (bin open minute, open,
        high, low, close, volume), or None. A bin whose last minutes are missing completes at the first M1 bar after
        it; when that bar also completes its own bin (a bin of one bar), only the later is returned, as in
        ``htf_bars``."""
        start = (minute - self.offset) // self.tf * self.tf + self.offset
        done = None
        b = self._bin
        if b is not None and start != b[0]:
            if not b[6]:
                done = b  # completed by the first M1 bar after it (a hole at its end)
            b = None
        if b is None:
            b = self._bin = [start, o, h, lo, c, v, False]
        else:
            b[2], b[3], b[4], b[5] = max(b[2], h), min(b[3], lo), c, b[5] + v
        if is_complete(start + self.tf, minute):
            b[6] = True
            done = b
        return None if done is None else tuple(done[:6])


def completed_index(n_m1: int, htf: pd.DataFrame) -> np.ndarray:
    """For each M1 bar position, the row of ``htf`` that is the newest complete bar (-1 if none yet)."""
    return np.searchsorted(htf["complete_at"].to_numpy(), np.arange(n_m1), side="right") - 1
