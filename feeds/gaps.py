"""Gap reporting for M1 bars: gaps are real (weekends, holidays, holes) and reported, never filled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

_MINUTE_NS = 60 * 1_000_000_000
_DAY_NS = 24 * 60 * _MINUTE_NS


@dataclass(frozen=True)
class GapReport:
    """Summary of the holes in a bar index.

    A gap's length is its number of missing minutes (bar spacing minus one minute);
    ``longest_start`` is the first missing minute of the longest gap.
    """

    bars: int
    gaps: int
    longest_minutes: int
    longest_start: pd.Timestamp | None
    missing_intraweek_minutes: int
    weekend_gaps: int

    def describe(self) -> str:
        """One line for logs."""
        longest = (
            f"longest {self.longest_minutes:,} min from {self.longest_start}"
            if self.longest_start is not None
            else "no gaps"
        )
        return (
            f"{self.bars:,} bars, {self.gaps:,} gaps ({self.weekend_gaps:,} weekend), "
            f"{self.missing_intraweek_minutes:,} missing intraweek minutes, {longest}"
        )


def find_gaps(index: pd.DatetimeIndex, min_minutes: int = 2) -> GapReport:
    """Report gaps between consecutive bars at least ``min_minutes`` apart (2 = any missing minute).

    A gap whose missing span touches a Saturday (UTC) is a weekend gap; the missing minutes of
    all other gaps add up to ``missing_intraweek_minutes``. Naive indexes are taken as UTC.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"find_gaps needs a DatetimeIndex, got {type(index).__name__}")
    idx = index.tz_convert("UTC") if index.tz is not None else index
    ts = idx.as_unit("ns").asi8
    n = len(ts)
    if n < 2:
        return GapReport(n, 0, 0, None, 0, 0)
    step = np.diff(ts)
    if (step <= 0).any():
        raise ValueError(
            "find_gaps needs a strictly increasing index (validate the bars first)"
        )
    spacing = step // _MINUTE_NS
    is_gap = spacing >= max(int(min_minutes), 2)
    if not is_gap.any():
        return GapReport(n, 0, 0, None, 0, 0)
    t0 = ts[:-1][is_gap]
    t1 = ts[1:][is_gap]
    missing = spacing[is_gap] - 1
    day0 = t0 // _DAY_NS  # days since 1970-01-01, a Thursday
    dow = (day0 + 3) % 7  # Monday=0 ... Saturday=5
    saturday = (
        day0 + (5 - dow) % 7
    ) * _DAY_NS  # Saturday on or after the gap's last bar
    weekend = saturday < t1
    k = int(np.argmax(missing))
    return GapReport(
        bars=n,
        gaps=int(is_gap.sum()),
        longest_minutes=int(missing[k]),
        longest_start=pd.Timestamp(int(t0[k]) + _MINUTE_NS, tz="UTC"),
        missing_intraweek_minutes=int(missing[~weekend].sum()),
        weekend_gaps=int(weekend.sum()),
    )
