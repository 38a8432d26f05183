"""Bar validation: refuse corrupt M1 data loudly, because a silent bad bar corrupts every backtest.

All checks are vectorised numpy so a full year (~370k rows) validates in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from feeds.errors import DataError

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
BAR_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")


def where(pos: int, lines: np.ndarray | None) -> str:
    """``line N`` (the file's line, as an editor shows it) when the rows' line numbers are known, else ``row N``
    (0-based position in the frame)."""
    return f"line {int(lines[pos])}" if lines is not None else f"row {pos}"


def _row_error(source: str, index: pd.Index, pos: int, what: str, lines: np.ndarray | None) -> DataError:
    """One-line error naming the source, the line (or row) and its timestamp."""
    return DataError(f"{source}: {where(pos, lines)} at {index[pos]}: {what}")


def _first(mask: np.ndarray) -> int | None:
    """Position of the first True in ``mask``, or None."""
    if not mask.any():
        return None
    return int(np.argmax(mask))


def validate_bars(df: pd.DataFrame, source: str, lines: np.ndarray | None = None) -> None:
    """Raise DataError on the first bad row of ``df`` (OHLCV bars on a UTC DatetimeIndex).

    Structural problems (columns, index type, timezone) are reported first; among row-level
    problems the earliest row wins, so the message points at where the file goes wrong.
    ``lines`` gives each row's line number in its file, for the message.
    """
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing columns {missing} (have {list(df.columns)})"
        )
    index = df.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"{source}: index is {type(index).__name__}, expected a DatetimeIndex"
        )
    if index.tz is None:
        where = f" (first row {index[0]})" if len(index) else ""
        raise DataError(
            f"{source}: index is timezone-naive{where}; expected tz-aware UTC"
        )
    if str(index.tz) != "UTC":
        where = f" (first row {index[0]})" if len(index) else ""
        raise DataError(f"{source}: index timezone is {index.tz}{where}; expected UTC")
    if len(df) == 0:
        return

    problems: list[tuple[int, str]] = []

    def note(mask: np.ndarray, describe: Callable[[int], str]) -> None:
        pos = _first(mask)
        if pos is not None:
            problems.append((pos, describe(pos)))

    nat = np.asarray(index.isna())
    note(nat, lambda p: "missing timestamp (NaT)")

    prices = {
        c: df[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in PRICE_COLUMNS
    }
    for col in PRICE_COLUMNS:
        arr = prices[col]
        note(~np.isfinite(arr), lambda p, c=col: f"{c} is not finite ({prices[c][p]})")
    finite = np.logical_and.reduce([np.isfinite(prices[c]) for c in PRICE_COLUMNS])
    for col in PRICE_COLUMNS:
        arr = prices[col]
        note(finite & (arr <= 0), lambda p, c=col: f"non-positive {c} ({prices[c][p]})")
    o, h, lo, c = (prices[k] for k in PRICE_COLUMNS)
    note(finite & (h < lo), lambda p: f"high < low (high={h[p]}, low={lo[p]})")
    ok_range = finite & (h >= lo)
    note(
        ok_range & ((o < lo) | (o > h)),
        lambda p: f"open {o[p]} outside [low, high] = [{lo[p]}, {h[p]}]",
    )
    note(
        ok_range & ((c < lo) | (c > h)),
        lambda p: f"close {c[p]} outside [low, high] = [{lo[p]}, {h[p]}]",
    )

    ts = index.asi8
    if len(ts) > 1:
        step = np.diff(ts)
        valid = ~(nat[1:] | nat[:-1])
        back = np.concatenate(([False], valid & (step < 0)))
        note(back, lambda p: f"timestamps not sorted (previous row is {index[p - 1]})")
    dup = np.asarray(index.duplicated(keep="first")) & ~nat
    note(dup, lambda p: "duplicate timestamp")

    if problems:
        pos, what = min(problems, key=lambda t: t[0])
        raise _row_error(source, index, pos, what, lines)
