"""Backtrader feeds: the M1 bid feed plus pre-resampled higher-timeframe feeds, aligned by one rule.

A higher-timeframe bar is stamped with the open time of the M1 bar at which it becomes complete
(``feeds.resample.htf_bars``), so Backtrader delivers it in the same cycle as that M1 bar and never
earlier. Its own bin open time is kept in the extra line ``bar_open`` (a Backtrader date number).
Pre-resampled feeds are used instead of ``cerebro.resampledata`` because they are ~3x faster
(see benchmarks/bench_backtest.py) and share the alignment function with the envs.
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd

from feeds.resample import htf_bars


class ArrayPandasData(bt.feeds.PandasData):
    """``PandasData`` that reads its rows from NumPy columns made once at ``start``: the same values, in the same
    lines. Backtrader's own ``_load`` does one ``DataFrame.iloc`` per value, which was 60 % of a month's backtest
    (``python -m cProfile run_backtest.py ...``). The datetime must be the frame's index (our feeds' layout)."""

    def start(self) -> None:
        super().start()  # resolves the column mapping
        if self._colmapping["datetime"] is not None:
            raise ValueError(f"{type(self).__name__} takes the datetime from the frame's index, not a column")
        frame = self.p.dataname
        self._columns = [(getattr(self.lines, name), frame.iloc[:, col].to_numpy())
                         for name, col in self._colmapping.items() if name != "datetime" and col is not None]
        self._times = [bt.date2num(t) for t in frame.index.to_pydatetime()]

    def _load(self) -> bool:
        self._idx += 1
        i = self._idx
        if i >= len(self._times):
            return False
        for line, values in self._columns:
            line[0] = values[i]
        self.lines.datetime[0] = self._times[i]
        return True


class M1Data(ArrayPandasData):
    """M1 bid bars; datetime = bar open time, naive UTC (Backtrader's convention)."""

    params = (("openinterest", None),)


class HTFData(ArrayPandasData):
    """A complete higher-timeframe bar, delivered at the M1 bar that completes it."""

    lines = ("bar_open",)
    params = (("openinterest", None), ("bar_open", "bar_open"))


def _naive(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return index.tz_convert("UTC").tz_localize(None)


def m1_feed(m1: pd.DataFrame, name: str) -> M1Data:
    frame = m1[["open", "high", "low", "close", "volume"]].copy()
    frame.index = _naive(m1.index)
    return M1Data(dataname=frame, name=name, timeframe=bt.TimeFrame.Minutes, compression=1)


def htf_feed(m1: pd.DataFrame, tf_minutes: int, name: str, offset_minutes: int = 0) -> HTFData:
    htf = htf_bars(m1, tf_minutes, offset_minutes)
    frame = htf[["open", "high", "low", "close", "volume"]].copy()
    frame["bar_open"] = [bt.date2num(t) for t in _naive(htf.index).to_pydatetime()]
    frame.index = _naive(m1.index[htf["complete_at"].to_numpy()])
    return HTFData(dataname=frame, name=name, timeframe=bt.TimeFrame.Minutes, compression=tf_minutes)


def add_fx_feeds(cerebro: bt.Cerebro, m1: pd.DataFrame, symbol: str, h4_offset_minutes: int = 0,
                 timeframes: tuple[int, ...] = (5, 240)) -> list[bt.feed.DataBase]:
    """Add the feeds our strategies read to a user's own Cerebro: data0 the M1 bid bars (``feeds.loaders.load_bars``
    gives them), data1 M5 and data2 H4 bars built by the one completion rule and delivered at the M1 bar that
    completes them (then any other ``timeframes``). Returns the feeds, M1 first (give it to the broker)."""
    feeds = [m1_feed(m1, name=f"{symbol}_M1")]
    for tf in timeframes:
        label = "H4" if tf == 240 else f"M{tf}"
        feeds.append(htf_feed(m1, tf, name=f"{symbol}_{label}", offset_minutes=h4_offset_minutes if tf == 240 else 0))
    for f in feeds:
        cerebro.adddata(f)
    return feeds
