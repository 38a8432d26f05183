"""Daily FRED macro series (VIX, fed funds, 10y-2y) and their causal as-of join onto bars.

The files hold raw observations with FRED's missing markers left empty. Nothing is
forward-filled when loading: filling (and the publication lag) happens only in
:func:`macro_asof`, so the lag rule lives in exactly one place.
"""

from __future__ import annotations

import logging
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


def _utc_days(bar_times: pd.DatetimeIndex) -> np.ndarray:
    """Bar times as UTC calendar days (datetime64[D]); naive times are taken as UTC (Backtrader's convention)."""
    idx = pd.DatetimeIndex(bar_times)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.to_numpy().astype("datetime64[D]")


def macro_asof(bar_times: pd.DatetimeIndex, macro: pd.DataFrame) -> np.ndarray:
    """Macro values visible at each bar: shape (n, 3) float64, columns as :data:`MACRO_COLUMNS`.

    For a bar at UTC time t, each series gives its latest non-missing value observed on a date
    strictly before t's UTC date (a daily value is published after its day ends, so it is
    usable only from the next day). NaN before the first usable value.
    """
    missing = [c for c in MACRO_COLUMNS if c not in macro.columns]
    if missing:
        raise KeyError(
            f"macro frame lacks columns {missing}; expected {list(MACRO_COLUMNS)}"
        )
    days = _utc_days(bar_times)
    out = np.full((len(days), len(MACRO_COLUMNS)), np.nan, dtype=np.float64)
    if len(days) == 0:
        return out
    if not macro.index.is_monotonic_increasing:
        macro = macro.sort_index()
    obs_days = pd.DatetimeIndex(macro.index).to_numpy().astype("datetime64[D]")
    for j, col in enumerate(MACRO_COLUMNS):
        values = macro[col].to_numpy(dtype=np.float64)
        ok = ~np.isnan(values)
        series_days, series_vals = obs_days[ok], values[ok]
        # side="left": index of the first observation >= bar day, minus one = last one strictly before.
        pos = np.searchsorted(series_days, days, side="left") - 1
        valid = pos >= 0
        out[valid, j] = series_vals[pos[valid]]
    return out
