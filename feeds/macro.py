"""Daily FRED macro series (VIX, fed funds, 10y-2y) and their causal as-of join onto bars.

The files hold raw observations with FRED's missing markers left empty. Nothing is
forward-filled when loading: filling (and the publication lag) happens only in
:func:`macro_asof`, and each series' publication rule lives in one table, :data:`PUBLICATION`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from feeds.errors import DataError
from feeds.paths import macro_data_dir

logger = logging.getLogger(__name__)

#: file name -> column name, in the column order used everywhere (features 13..15).
MACRO_FILES: dict[str, str] = {
    "VIXCLS.csv": "vix",
    "DFF.csv": "fed_funds",
    "T10Y2Y.csv": "yield_curve",
}
MACRO_COLUMNS: tuple[str, ...] = tuple(MACRO_FILES.values())


def _read_series(path: Path) -> pd.Series:
    """One FRED csv (``date,value``; empty or ``.`` = missing) as a float Series by date."""
    if not path.is_file():
        raise FileNotFoundError(f"macro file not found: {path}")
    df = pd.read_csv(path, dtype={"value": "string"}, keep_default_na=False)
    if list(df.columns) != ["date", "value"]:
        raise DataError(
            f"{path}: expected header 'date,value', got {','.join(map(str, df.columns))}"
        )
    values = df["value"].str.strip().replace({"": pd.NA, ".": pd.NA})
    try:
        numeric = pd.to_numeric(values, errors="raise").astype("float64")
        dates = pd.to_datetime(df["date"], format="%Y-%m-%d")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: unparsable row ({exc})") from exc
    series = pd.Series(
        numeric.to_numpy(dtype="float64", na_value=np.nan),
        index=pd.DatetimeIndex(dates, name="date"),
    )
    if not series.index.is_monotonic_increasing or series.index.has_duplicates:
        raise DataError(f"{path}: dates are not strictly ascending")
    return series


def load_macro(folder: Path | None = None) -> pd.DataFrame:
    """Load VIX, fed funds and the 10y-2y spread into one frame indexed by observation date.

    Columns ``vix``, ``fed_funds``, ``yield_curve``; missing observations stay NaN (not filled),
    and the index is the union of the three calendars.
    """
    folder = Path(folder) if folder is not None else macro_data_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"macro folder not found: {folder}")
    cols = {col: _read_series(folder / name) for name, col in MACRO_FILES.items()}
    frame = pd.concat(cols, axis=1, sort=True)
    frame.index.name = "date"
    logger.debug("loaded macro %s rows from %s", len(frame), folder)
    return frame[list(MACRO_COLUMNS)]


@dataclass(frozen=True)
class Publication:
    """When the observation of day D becomes known: ``days_after`` days after D (business days of the US
    Federal Reserve calendar when ``business_days``, else calendar days) at ``hour`` o'clock in ``zone``."""

    zone: str
    days_after: int
    business_days: bool
    hour: int
    why: str


PUBLICATION: dict[str, Publication] = {
    "vix": Publication("UTC", 1, False, 0, "CBOE's close (16:15 New York) of day D, known after the US close; used "
                                           "from the next UTC midnight (19:00-20:00 New York)"),
    "fed_funds": Publication("America/New_York", 1, True, 9, "the New York Fed publishes the effective rate of "
                                                             "business day D at about 9:00 on the next business "
                                                             "day (weekend and holiday values with it)"),
    "yield_curve": Publication("UTC", 1, False, 0, "Treasury constant-maturity yields of day D (H.15), known after "
                                                   "the US close; used from the next UTC midnight"),
}
"""The one table of publication rules: a bar may use a macro value only once it was published."""


def publication_rules() -> dict[str, dict[str, object]]:
    """The table as JSON-able dicts (feature specs record it in checkpoint manifests)."""
    return {k: {f: v for f, v in asdict(r).items() if f != "why"} for k, r in PUBLICATION.items()}


@cache
def _fed_holidays() -> np.ndarray:
    """US federal holidays as datetime64[D]. The Federal Reserve opens on a Friday before a Saturday holiday
    where this calendar observes it: the error makes a value known later, never earlier."""
    from pandas.tseries.holiday import USFederalHolidayCalendar

    return USFederalHolidayCalendar().holidays("1950-01-01", "2100-12-31").to_numpy().astype("datetime64[D]")


def published_at(days: np.ndarray, rule: Publication) -> np.ndarray:
    """UTC nanoseconds at which the observations of ``days`` (datetime64[D]) are published under ``rule``."""
    days = np.asarray(days, dtype="datetime64[D]")
    if rule.business_days:  # the first business day strictly after D, then ``days_after - 1`` more
        first = np.busday_offset(days + 1, 0, roll="forward", holidays=_fed_holidays())
        due = np.busday_offset(first, rule.days_after - 1, roll="forward", holidays=_fed_holidays())
    else:
        due = days + rule.days_after
    local = pd.DatetimeIndex(due.astype("datetime64[ns]")) + pd.Timedelta(hours=rule.hour)
    return local.tz_localize(rule.zone).tz_convert("UTC").as_unit("ns").asi8


@dataclass(frozen=True)
class MacroTable:
    """Each series' non-missing observations with their publication times (UTC ns), ready for as-of lookups:
    build it once per run (the feature engine's incremental driver looks up every new bar in it)."""

    published: tuple[np.ndarray, ...]  # per column of MACRO_COLUMNS, non-decreasing
    values: tuple[np.ndarray, ...]

    @classmethod
    def from_frame(cls, macro: pd.DataFrame) -> MacroTable:
        missing = [c for c in MACRO_COLUMNS if c not in macro.columns]
        if missing:
            raise KeyError(f"macro frame lacks columns {missing}; expected {list(MACRO_COLUMNS)}")
        if not macro.index.is_monotonic_increasing:
            macro = macro.sort_index()
        obs_days = pd.DatetimeIndex(macro.index).to_numpy().astype("datetime64[D]")
        published, values = [], []
        for col in MACRO_COLUMNS:
            v = macro[col].to_numpy(dtype=np.float64)
            ok = ~np.isnan(v)
            published.append(published_at(obs_days[ok], PUBLICATION[col]))
            values.append(v[ok])
        return cls(tuple(published), tuple(values))

    def asof(self, times_ns: np.ndarray) -> np.ndarray:
        """(n, 3) values, the last published at or before each time; NaN before a series' first value."""
        times_ns = np.asarray(times_ns, dtype=np.int64)
        out = np.full((len(times_ns), len(MACRO_COLUMNS)), np.nan, dtype=np.float64)
        for j, (known, vals) in enumerate(zip(self.published, self.values, strict=True)):
            pos = np.searchsorted(known, times_ns, side="right") - 1  # the last one published at or before t
            valid = pos >= 0
            out[valid, j] = vals[pos[valid]]
        return out


def macro_asof(bar_times: pd.DatetimeIndex, macro: pd.DataFrame | MacroTable) -> np.ndarray:
    """Macro values visible at each bar: shape (n, 3) float64, columns as :data:`MACRO_COLUMNS`.

    For a bar opening at UTC time t, each series gives its latest non-missing value published (``PUBLICATION``)
    at or before t. NaN before the first usable value. Naive times are taken as UTC (Backtrader's convention).
    """
    table = macro if isinstance(macro, MacroTable) else MacroTable.from_frame(macro)
    idx = pd.DatetimeIndex(bar_times)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return table.asof(idx.as_unit("ns").asi8)
