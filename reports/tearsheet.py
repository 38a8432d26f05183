"""QuantStats HTML tearsheet against buy-and-hold of the same symbol."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pandas as pd

logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)


def buy_hold_returns(index: pd.DatetimeIndex, close) -> pd.Series:
    """Daily returns of holding the symbol (bid closes), on the same trading days as the strategy."""
    s = pd.Series(close, index=index.tz_convert("UTC").tz_localize(None))
    last = s.groupby(s.index.normalize()).last()
    first_open = float(s.iloc[0])
    prev = last.shift(1)
    prev.iloc[0] = first_open
    return (last / prev - 1.0).rename("buy_hold")


def write_tearsheet(returns: pd.Series, benchmark: pd.Series, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import quantstats as qs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            qs.reports.html(returns, benchmark=benchmark, output=str(path), title=title,
                            benchmark_title="buy & hold", download_filename=str(path))
        except ValueError as e:  # QuantStats cannot regress on a strategy that never moved (all-zero returns)
            if returns.abs().sum() > 0:
                raise
            logging.getLogger(__name__).warning(
                "flat equity (%s): tearsheet without the buy-and-hold benchmark; see buy_hold_return in summary.json",
                e)
            qs.reports.html(returns, output=str(path), title=f"{title} (flat: no trades; benchmark omitted)",
                            download_filename=str(path))
    return path
