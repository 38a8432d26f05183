"""The FX calendar: the trading day ends at the 17:00 New York rollover.

Spot FX trades around the clock from Sunday evening to Friday evening, New York time. The market's day
boundary is the 17:00 New York rollover (21:00 UTC in US summer time, 22:00 UTC in winter): swaps are charged
there, and the session that opens on Sunday evening is Monday's. Grouping by UTC calendar date instead makes the
two Sunday hours a "day" of their own (about 313 days a year where the market has 260), so every daily Sharpe
and Sortino and every count of active days would be wrong. This module is the one definition of that day, used
by the metrics, the tearsheet, model selection, the broker's swap schedule and the macro publication rules.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
ROLLOVER_HOUR = 17
"""the FX day ends (and swaps are charged) at 17:00 New York time"""
_SHIFT = pd.Timedelta(hours=24 - ROLLOVER_HOUR)  # 17:00 NY + 7 h = the next New York midnight
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def trading_days(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The FX trading day of each timestamp (naive = UTC), as tz-naive midnight labels of the day it belongs to:
    Sunday 21:00 UTC in summer (17:00 New York) is Monday; Friday 20:59 UTC is Friday."""
    idx = pd.DatetimeIndex(index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx
    return (idx.tz_convert(NEW_YORK) + _SHIFT).normalize().tz_localize(None)


def count_trading_days(index: pd.DatetimeIndex) -> int:
    """Distinct FX trading days among the timestamps."""
    return int(len(np.unique(trading_days(index).asi8))) if len(index) else 0


def next_rollover(minute: int) -> tuple[int, int]:
    """First 17:00 New York rollover strictly after ``minute`` (minutes since the Unix epoch, UTC) on a weekday,
    and its weekday in New York (0 = Monday).

    Friday's rollover carries a position over the weekend; brokers charge the weekend on the instrument's
    triple-swap weekday instead, so every weekday counts one night except that one.
    """
    local = (_EPOCH + dt.timedelta(minutes=minute)).astimezone(NEW_YORK)
    day = local.date()
    while True:
        cand = dt.datetime(day.year, day.month, day.day, ROLLOVER_HOUR, 0, tzinfo=NEW_YORK)
        if cand > local and cand.weekday() < 5:
            return int((cand - _EPOCH).total_seconds() // 60), cand.weekday()
        day += dt.timedelta(days=1)
