"""QuantStats HTML tearsheet against buy-and-hold of the same symbol, over exactly the period of summary.json.

What we feed QuantStats 0.0.86 and why:

* ``match_dates=False``: with the default, QuantStats starts both series at the later of their first non-zero
  returns (an agent's first trade, often weeks in), so its headline metrics covered another period than our
  summary and its own EOY table (buy-and-hold -5.41 % in the headline, -6.25 % in the table and summary.json).
  Both series have the same index (FX trading days of the period), so nothing needs matching.
* ``periods_per_year=metrics.PERIODS_PER_YEAR``, so the tearsheet's Sharpe and Sortino are summary.json's.
* ``stats.drawdown_details`` misses a drawdown that is already open on the first row (``stats.py`` 3339: the
  shifted NaN in ``~no_dd & no_dd.shift(1)`` reads as "no start"), so a strategy that lost on its first day and
  never regained its starting equity showed ``-`` for Max Drawdown, its dates, Avg. Drawdown and the drawdown
  days, an empty "Worst 10 Drawdowns" table and no shaded periods. ``_open_drawdowns_counted`` wraps it for the
  duration of the call: a zero-drawdown row the day before, then the real first day put back as the start.

QuantStats measures drawdown on the daily closes of the compounded returns; summary.json's ``max_drawdown`` is
taken at every M1 bar's worst price, so it is at least as deep.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from reports import metrics

logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
log = logging.getLogger(__name__)


def buy_hold_returns(index: pd.DatetimeIndex, close, start_close: float | None = None) -> pd.Series:
    """Daily returns of holding the symbol (bid closes, unlevered) from the close of the period's first bar
    (``start_close``; default ``close[0]``), on the same FX trading days as the strategy (``metrics.daily_returns``)."""
    close = np.asarray(close, dtype=np.float64)
    return metrics.daily_returns(index, close, float(close[0] if start_close is None else start_close)
                                 ).rename("buy_hold")


def _open_drawdowns_counted(orig: Callable) -> Callable:
    """``qs.stats.drawdown_details`` that also reports a drawdown open on the first row (module docstring)."""

    def one(dd: pd.Series) -> pd.DataFrame:
        if not len(dd) or not dd.iloc[0] < 0:
            return orig(dd)
        first, phantom = dd.index[0], dd.index[0] - pd.Timedelta(days=1)
        out = orig(pd.concat([pd.Series([0.0], index=[phantom]), dd]))
        hit = out["start"] == f"{phantom:%Y-%m-%d}"
        out.loc[hit, "start"] = f"{first:%Y-%m-%d}"
        out.loc[hit, "days"] -= 1
        return out

    def fixed(drawdown):
        if isinstance(drawdown, pd.DataFrame):
            return pd.concat({c: one(drawdown[c]) for c in drawdown.columns}, axis=1)
        return one(drawdown)

    return fixed


def write_tearsheet(returns: pd.Series, benchmark: pd.Series, path: Path, title: str) -> Path:
    """Write the report; ``returns`` and ``benchmark`` are daily returns on the same FX trading days."""
    import matplotlib

    matplotlib.use("Agg")
    import quantstats as qs

    if not returns.index.equals(benchmark.index):
        raise ValueError("strategy and benchmark returns must share one index of trading days")
    common = {"output": str(path), "download_filename": str(path), "periods_per_year": metrics.PERIODS_PER_YEAR,
              "match_dates": False}
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"), \
            mock.patch.object(qs.stats, "drawdown_details", _open_drawdowns_counted(qs.stats.drawdown_details)):
        # deprecations inside QuantStats, seaborn and matplotlib (pandas 3, matplotlib 3.11), not ours to fix
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        warnings.filterwarnings("ignore", message=r"set_ticklabels\(\) should only be used", category=UserWarning)
        if returns.abs().sum() == 0:  # QuantStats cannot regress a strategy that never moved on the benchmark
            warnings.filterwarnings("ignore", message="No non-zero returns", category=UserWarning)
            log.warning("flat equity: tearsheet without the buy-and-hold benchmark; see buy_hold_return in "
                        "summary.json")
            qs.reports.html(returns, title=f"{title} (flat: no trades; benchmark omitted)", **common)
        else:
            qs.reports.html(returns, benchmark=benchmark, title=title, benchmark_title="buy & hold", **common)
    return path
