"""The one completeness rule: what the strategy sees at each M1 bar is exactly what htf_bars says."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.loaders import load_bars
from feeds.resample import HTFAggregator, completed_index, completes_at, htf_bars, index_minutes, is_complete
from strategies.backtest import BacktestConfig, run_backtest
from strategies.base import FxStrategy


def _bars(times: list[str]) -> pd.DataFrame:
    idx = pd.DatetimeIndex(pd.to_datetime(times, utc=True), name="datetime")
    px = np.arange(1, len(idx) + 1, dtype=float)
    return pd.DataFrame({"open": px, "high": px + 0.5, "low": px - 0.5, "close": px + 0.25,
                         "volume": 0.0}, index=idx)


def test_is_complete_rule() -> None:
    assert is_complete(240, 239)  # the bin's last minute closes at the bin end
    assert not is_complete(240, 238)
    assert is_complete(240, 300)


def test_bin_with_last_minute_completes_on_it() -> None:
    m1 = _bars(["2024-01-02 00:00", "2024-01-02 03:59", "2024-01-02 04:00", "2024-01-02 04:01"])
    h4 = htf_bars(m1, 240)
    assert list(h4["complete_at"]) == [1]  # the 04:00 bin is still open at the end: dropped
    assert h4.iloc[0]["open"] == 1.0 and h4.iloc[0]["close"] == 2.25 and h4.iloc[0]["high"] == 2.5
    assert list(completed_index(4, h4)) == [-1, 0, 0, 0]


def test_hole_at_bin_end_delays_completion_to_next_bar() -> None:
    m1 = _bars(["2024-01-02 03:50", "2024-01-02 03:57", "2024-01-02 04:10", "2024-01-02 07:59"])
    h4 = htf_bars(m1, 240)
    # 00:00-04:00 bin completes at the 04:10 bar (first close past 04:00), 04:00-08:00 at 07:59
    assert list(h4["complete_at"]) == [2, 3]
    assert list(completed_index(4, h4)) == [-1, -1, 0, 1]


def test_completes_at_by_hand() -> None:
    assert completes_at(4, 3, 5) and not completes_at(3, 2, 5)  # 00:04 closes the 00:00 M5 bin
    assert completes_at(11, 2, 5)  # a hole 00:03-00:10: the 00:00 bin completes at the first bar after it
    assert not completes_at(11, 4, 5)  # ... unless it already completed at its last minute
    assert not completes_at(11, None, 5) and completes_at(14, None, 5)


@pytest.mark.parametrize("tf", [5, 15, 240])
def test_completes_at_is_completed_index_changing(eurusd_month: pd.DataFrame, tf: int) -> None:
    """The one-bar-at-a-time rule (the executor's cadence) against the vectorised one, on real bars with holes."""
    minutes = index_minutes(eurusd_month.index)
    pos = completed_index(len(minutes), htf_bars(eurusd_month, tf))
    expected = pos[1:] != pos[:-1]
    got = np.array([completes_at(int(m), int(p), tf) for p, m in zip(minutes[:-1], minutes[1:], strict=True)])
    np.testing.assert_array_equal(got, expected)
    assert (np.diff(minutes) > 1).sum() > 10 and expected.sum() > 100  # holes and completions both exercised


def test_offset_moves_bins() -> None:
    m1 = _bars(["2024-01-02 01:58", "2024-01-02 01:59", "2024-01-02 02:00"])
    assert list(htf_bars(m1, 240, offset_minutes=120)["complete_at"]) == [1]
    assert len(htf_bars(m1, 240)) == 0


def test_two_bins_completing_on_one_bar_keep_the_later() -> None:
    m1 = _bars(["2024-01-02 00:01", "2024-01-02 00:09"])  # M5 bins 00:00 and 00:05 both complete at 00:09
    m5 = htf_bars(m1, 5)
    assert len(m5) == 1 and m5.index[0] == pd.Timestamp("2024-01-02 00:05", tz="UTC")


class _Recorder(FxStrategy):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple] = []

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        row: list[float] = [len(self.m1), self.m1.datetime[0]]
        for d in (self.m5, self.h4):
            row += [len(d), d.bar_open[0], d.close[0]] if len(d) else [0, np.nan, np.nan]
        self.rows.append(tuple(row))


@pytest.fixture(scope="module")
def eurusd_month(fx_dir) -> pd.DataFrame:
    return load_bars(fx_dir, symbol="EURUSD", start="2024-03-01", end="2024-03-31")


def test_strategy_sees_exactly_the_completed_bars(eurusd_month: pd.DataFrame) -> None:
    m1 = eurusd_month
    res = run_backtest(_Recorder, m1, BacktestConfig(symbol="EURUSD"))
    rows = np.array(res.strategy_obj.rows)
    assert len(rows) == len(m1)  # one strategy call per M1 bar, none for higher-timeframe-only cycles
    mins = index_minutes(m1.index)
    for tf, cols in ((5, (2, 3, 4)), (240, (5, 6, 7))):
        htf = htf_bars(m1, tf)
        ci = completed_index(len(m1), htf)
        n_seen, open_seen, close_seen = (rows[:, c] for c in cols)
        np.testing.assert_array_equal(n_seen, ci + 1)
        have = ci >= 0
        expect_open = np.array([bt.date2num(t) for t in htf.index.tz_localize(None).to_pydatetime()])
        np.testing.assert_allclose(open_seen[have], expect_open[ci[have]], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(close_seen[have], htf["close"].to_numpy()[ci[have]])
        # never a bar that is still open: its bin end is at or before the M1 bar's close
        bin_end = index_minutes(htf.index)[ci[have]] + tf
        assert np.all(bin_end <= mins[have] + 1)


def test_htf_bars_match_pandas_resample(eurusd_month: pd.DataFrame) -> None:
    m1 = eurusd_month
    for tf in (5, 30, 240):
        ours = htf_bars(m1, tf)
        ref = m1.resample(f"{tf}min", label="left", closed="left").agg(
            {"open": "first", "high": "max", "low": "min", "close": "last"}).dropna()
        ref = ref.loc[ours.index]
        for col in ("open", "high", "low", "close"):
            np.testing.assert_array_equal(ours[col].to_numpy(), ref[col].to_numpy())
        assert len(ref) >= len(ours) >= len(ref) - 2 - 0.01 * len(ref)


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.sampled_from([1, 1, 1, 1, 2, 3, 4, 7, 29, 31, 61, 239, 241, 900]), min_size=1, max_size=400),
       tf=st.sampled_from([5, 30, 240]), offset=st.sampled_from([0, 2, 60]))
def test_aggregator_one_bar_at_a_time_equals_htf_bars(gaps: list[int], tf: int, offset: int) -> None:
    """The live feeds' and incremental driver's aggregator gives exactly htf_bars' bars, at the same M1 bars,
    whatever the holes (including bins that complete on the same bar as the next one)."""
    minutes = 28_000_000 + np.cumsum(gaps)
    idx = pd.to_datetime(minutes, unit="m", utc=True).as_unit("ns")
    px = 1.1 + 1e-4 * np.sin(np.arange(len(idx)))
    m1 = pd.DataFrame({"open": px, "high": px + 1e-5, "low": px - 1e-5, "close": px + 5e-6, "volume": 1.0},
                      index=idx)
    want = htf_bars(m1, tf, offset)
    agg = HTFAggregator(tf, offset)
    got = [(k, bar) for k, (m, o, h, lo, c) in enumerate(zip(minutes, px, px + 1e-5, px - 1e-5, px + 5e-6,
                                                            strict=True))
           if (bar := agg.step(int(m), o, h, lo, c, 1.0)) is not None]
    assert [k for k, _ in got] == want["complete_at"].tolist()
    assert [b[0] for _, b in got] == (want.index.as_unit("ns").asi8 // 60_000_000_000).tolist()
    np.testing.assert_array_equal(np.array([b[1:] for _, b in got]).reshape(-1, 5),
                                  want[["open", "high", "low", "close", "volume"]].to_numpy())
