"""Metrics pinned to hand-computed values, FX trading days, and a tearsheet whose numbers can be read back."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feeds.calendar import count_trading_days, next_rollover, trading_days
from feeds.loaders import load_bars
from reports import metrics
from reports.tearsheet import buy_hold_returns, write_tearsheet

MAX_DD = re.compile(r"<tr><td>Max Drawdown</td><td>(-?\d+(?:\.\d+)?)%</td><td>(-?\d+(?:\.\d+)?)%</td></tr>")
CUM = re.compile(r"<tr><td>Cumulative Return</td><td>(-?\d+(?:\.\d+)?)%</td><td>(-?\d+(?:\.\d+)?)%</td></tr>")
WORST = re.compile(r"<h3>Worst 10 Drawdowns</h3>\s*<table>.*?<tbody>\s*<tr><td>(\d{4}-\d{2}-\d{2})</td>"
                   r"<td>(\d{4}-\d{2}-\d{2})</td><td>(-?\d+\.\d+)</td><td>(\d+)</td></tr>", re.S)


def utc(*stamps: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(list(stamps), tz="UTC").as_unit("ns")


# --------------------------------------------------------------------------- the FX trading day


def test_the_fx_day_ends_at_the_new_york_rollover_in_summer_and_winter() -> None:
    days = trading_days(utc(
        "2024-07-05T20:59", "2024-07-07T21:00",  # Friday before 17:00 NY; Sunday 17:00 NY (EDT): Monday's
        "2024-07-08T20:59", "2024-07-08T21:00",  # Monday 16:59 / 17:00 NY: Monday / Tuesday
        "2024-01-07T21:30", "2024-01-07T22:00",  # winter (EST): 17:00 NY is 22:00 UTC
    ))
    assert [f"{d:%a %Y-%m-%d}" for d in days] == ["Fri 2024-07-05", "Mon 2024-07-08", "Mon 2024-07-08",
                                                 "Tue 2024-07-09", "Sun 2024-01-07", "Mon 2024-01-08"]
    assert next_rollover(int(utc("2024-07-08T20:59").asi8[0] // 60_000_000_000))[0] * 60_000_000_000 == \
        utc("2024-07-08T21:00").asi8[0]  # the swap schedule uses the same boundary


def test_real_weeks_have_five_trading_days_and_no_sunday(fx_dir: Path) -> None:
    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-01-01", end="2024-12-31")
    days = trading_days(m1.index)
    assert not (days.day_of_week >= 5).any()  # the Sunday-evening session is Monday's
    assert count_trading_days(m1.index) == 261 and m1.index.normalize().nunique() == 314  # UTC dates: 313 + 1


def test_daily_returns_group_by_fx_day() -> None:
    idx = utc("2024-07-05T20:00", "2024-07-07T21:05", "2024-07-08T10:00", "2024-07-08T21:10")
    r = metrics.daily_returns(idx, np.array([101.0, 99.0, 102.0, 103.02]), 100.0)
    assert list(r.index) == list(pd.to_datetime(["2024-07-05", "2024-07-08", "2024-07-09"]))
    np.testing.assert_allclose(r.to_numpy(), [0.01, 102.0 / 101.0 - 1.0, 0.01], rtol=1e-12)


# --------------------------------------------------------------------------- statistics, by hand

RETS = pd.Series([0.01, -0.02, 0.015, 0.0, -0.005, 0.02, 0.003], index=pd.date_range("2024-03-04", periods=7,
                                                                                       freq="B"))


def test_sharpe_and_sortino_are_annualised_with_260_fx_days() -> None:
    r = RETS.to_numpy()
    mean, std = r.mean(), r.std(ddof=1)
    assert metrics.PERIODS_PER_YEAR == 260
    assert metrics.sharpe(RETS) == pytest.approx(mean / std * math.sqrt(260), rel=1e-12)
    downside = math.sqrt(np.sum(np.minimum(r, 0.0) ** 2) / len(r))
    assert metrics.sortino(RETS) == pytest.approx(mean / downside * math.sqrt(260), rel=1e-12)
    assert metrics.sharpe(RETS * 0.0) == 0.0  # flat: 0, not NaN and not a RuntimeWarning


def test_max_drawdown_is_measured_at_the_worst_price() -> None:
    # closes 100 -> 110 -> 104.5 -> 120; the second bar's worst price takes equity to 99, the third's to 101.2
    equity = np.array([100.0, 110.0, 104.5, 120.0])
    worst = np.array([100.0, 99.0, 101.2, 119.0])
    assert metrics.max_drawdown(equity, worst, 100.0) == pytest.approx((110.0 - 101.2) / 110.0, rel=1e-12)
    # from the initial balance too: a first bar that dips below it
    assert metrics.max_drawdown(np.array([100.0]), np.array([97.0]), 100.0) == pytest.approx(0.03, rel=1e-12)
    # at closes only it would be (110 - 104.5) / 110 = 5 %: not what we report
    assert metrics.max_drawdown(equity, equity, 100.0) == pytest.approx(0.05, rel=1e-12)


# --------------------------------------------------------------------------- tearsheet


def _html(tmp_path: Path, rets: pd.Series, bench: pd.Series) -> str:
    path = write_tearsheet(rets, bench, tmp_path / "t.html", "test")
    return path.read_text()


def test_tearsheet_shows_a_drawdown_open_from_the_first_day(tmp_path: Path) -> None:
    """A strategy that loses on its first day and never regains its start: QuantStats 0.0.86 alone shows '-'."""
    days = pd.date_range("2024-01-02", periods=60, freq="B")
    rng = np.random.default_rng(0)
    rets = pd.Series(np.r_[-0.01, rng.normal(-0.0005, 0.002, 59)], index=days, name="returns")
    bench = pd.Series(rng.normal(0.0, 0.004, 60), index=days, name="buy_hold")
    html = _html(tmp_path, rets, bench)
    eq = (1 + rets).cumprod()
    expected = (eq / np.maximum.accumulate(np.r_[1.0, eq.to_numpy()])[1:] - 1).min()
    bench_dd, strat_dd = map(float, MAX_DD.search(html).groups())
    assert strat_dd == pytest.approx(100 * expected, abs=0.006)
    start, _, dd, _ = WORST.search(html).groups()
    assert start == "2024-01-02" and float(dd) == pytest.approx(strat_dd, abs=0.011)
    bench_cum, strat_cum = map(float, CUM.search(html).groups())  # headline over the whole period, no matching
    assert strat_cum == pytest.approx(100 * (eq.iloc[-1] - 1), abs=0.006)
    assert bench_cum == pytest.approx(100 * ((1 + bench).prod() - 1), abs=0.006)
    assert "2 Jan, 2024 - " in html


def test_tearsheet_refuses_mismatched_days(tmp_path: Path) -> None:
    days = pd.date_range("2024-01-02", periods=10, freq="B")
    with pytest.raises(ValueError, match="share one index"):
        write_tearsheet(pd.Series(0.001, index=days), pd.Series(0.001, index=days[1:]), tmp_path / "t.html", "x")


def test_buy_hold_returns_compound_to_the_price_change() -> None:
    idx = utc("2024-07-05T20:00", "2024-07-07T21:05", "2024-07-08T10:00")
    r = buy_hold_returns(idx, [1.10, 1.12, 1.155])
    assert (1 + r).prod() - 1 == pytest.approx(1.155 / 1.10 - 1, rel=1e-12)


def test_scale_gaps_are_quantile_differences_over_the_reference_range() -> None:
    from reports.scale_check import gaps

    ref = np.array([[-2.0, 0.0, 5.0], [0.0, 0.0, 5.0], [2.0, 0.0, 5.0]])  # q05, q50, q95 of 3 features
    other = np.array([[-1.0, 0.0, 5.0], [0.5, 0.0, 5.0], [2.0, 1.0, 5.0]])
    np.testing.assert_allclose(gaps(ref, other), [0.25, np.inf, 0.0])  # |-1 - -2| / 4; width 0: differs, same
    np.testing.assert_array_equal(gaps(ref, ref), np.zeros(3))
