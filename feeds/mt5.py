"""Live feeds for MetaTrader 5: closed M1 bars from the terminal, and M5 / M30 / H4 bars built from them live.

``MT5Data`` is a Backtrader live feed (``islive()``; ``_load`` returns None while no new bar exists, which keeps
Cerebro's loop alive, and False only when a simulator's data are exhausted) with an explicit state machine
(``FeedState``, as Backtrader's Oanda feed keeps one). At start it backfills ``history_days`` of M1 bars
(paginated: the API caps a request at 100,000 bars) and delivers them as history (``delivering_history()``: the
strategy's features and indicators see them, nothing trades on them); then it polls for newly *closed* bars (the
newest bar of ``copy_rates_*`` may still be forming: it is never delivered), converts server time to UTC, and
after a reconnect backfills from the last delivered bar, so no bar is duplicated or skipped. A real market gap (a
weekend, a holiday, a data hole) is reported, never filled.

``LiveHTFData`` builds a higher-timeframe bar from the M1 bars one at a time with ``feeds.resample.HTFAggregator``
(the one completion rule) and delivers it stamped at the M1 bar that completes it, in that bar's Cerebro cycle:
the strategy sees exactly the bars a backtest's pre-resampled feeds (``feeds.btfeeds.HTFData``) give it.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from enum import IntEnum
from typing import Any

import backtrader as bt
import numpy as np

from features.context import HISTORY_DAYS, history_start
from feeds.resample import HTFAggregator

log = logging.getLogger(__name__)
TIMEFRAME_M1 = 1
MAX_BARS = 100_000  # bars one copy_rates request returns at most (a terminal's default "Max. bars in chart")


class FeedState(IntEnum):
    START = 0
    BACKFILL = 1
    LIVE = 2
    OVER = 3


def _num(utc_seconds: int) -> float:
    return bt.date2num(dt.datetime.fromtimestamp(int(utc_seconds), dt.UTC).replace(tzinfo=None))


class MT5Data(bt.feed.DataBase):
    """Closed M1 bid bars of one symbol from an ``MT5Store``.

    :param store: the ``stores.mt5.MT5Store``
    :param history_days: calendar days of bars backfilled before the first live bar (``features.context``'s
        ``history_start``: the same history a backtest's ``--start`` loads)
    :param max_gap_report_minutes: holes longer than this are reported as market gaps (shorter ones are the
        normal minutes without ticks, counted)
    """

    params = (("store", None), ("history_days", HISTORY_DAYS), ("max_gap_report_minutes", 60))

    def __init__(self) -> None:
        if self.p.store is None:
            raise ValueError("MT5Data needs store=MT5Store(...)")
        self.store = self.p.store
        self.symbol = self.store.config.symbol
        self.state = FeedState.START
        self._queue: collections.deque = collections.deque()  # (server time, o, h, l, c, tick volume)
        self._last_time: int | None = None  # server time of the last bar queued (delivered or about to be)
        self.history_bars = 0
        self.delivered = 0
        self.gaps = 0
        self.holes = 0
        self._subscribers: list[LiveHTFData] = []
        self.store.on_reconnect.append(self._on_reconnect)

    def islive(self) -> bool:
        return True

    def subscribe(self, htf: LiveHTFData) -> None:
        self._subscribers.append(htf)

    def delivering_history(self) -> bool:
        """Whether the bar just delivered is backfilled history (before the first live bar)."""
        return self.delivered <= self.history_bars

    def catching_up(self) -> bool:
        """More closed bars are already waiting: the current one is not the newest (after a reconnect)."""
        return bool(self._queue)

    # ------------------------------------------------------------------ Backtrader's feed hooks
    def start(self) -> None:
        super().start()
        self.store.start(data=self)
        self.state = FeedState.BACKFILL
        self.put_notification(self.DELAYED)
        now = self.store.now()
        first = history_start(dt.datetime.fromtimestamp(now, dt.UTC), self.p.history_days).timestamp() \
            if self.p.history_days else now
        self._fetch(self.store.to_server(first))
        self.history_bars = len(self._queue)
        log.info("%s: %d bars of history backfilled", self.symbol, self.history_bars)

    def load(self) -> bool | None:
        """Backtrader's ``load``, except when there is no bar: then the buffers are left alone (its forward and
        forced backwards would drop the oldest value of a full ``exactbars`` buffer on every empty poll)."""
        if self.state == FeedState.OVER:
            return False
        if not self._queue:
            self._fetch(self._last_time + 60 if self._last_time is not None else self.store.to_server(self.store.now()))
        if not self._queue:
            if self.state != FeedState.LIVE and self.delivered >= self.history_bars:
                self.state = FeedState.LIVE
                self.put_notification(self.LIVE)
            if not self.store.wait_for_bar():
                self.state = FeedState.OVER  # a simulator's data are exhausted
                for sub in self._subscribers:
                    sub.source_over = True
                return False
            return None
        return super().load()

    def _load(self) -> bool:
        srv, o, h, lo, c, v = self._queue.popleft()
        utc = self.store.to_utc(srv)
        lines = self.lines
        lines.datetime[0] = _num(utc)
        lines.open[0], lines.high[0], lines.low[0], lines.close[0] = o, h, lo, c
        lines.volume[0], lines.openinterest[0] = v, 0.0
        self.delivered += 1
        if self.delivered == self.history_bars + 1 and self.state != FeedState.LIVE:
            self.state = FeedState.LIVE
            self.put_notification(self.LIVE)
        minute = utc // 60
        for sub in self._subscribers:
            sub.push(minute, o, h, lo, c, v, lines.datetime[0])
        return True

    # ------------------------------------------------------------------ the terminal
    def _fetch(self, server_from: int) -> None:
        """Queue every bar closed since ``server_from`` (server seconds), paginating; report gaps."""
        api = self.store
        while True:
            now = api.to_server(api.now())
            rates = api.call("copy_rates_range", self.symbol, TIMEFRAME_M1,
                             dt.datetime.fromtimestamp(server_from, dt.UTC), dt.datetime.fromtimestamp(now, dt.UTC))
            if rates is None or len(rates) == 0:
                return
            rates = np.asarray(rates)
            closed = rates[rates["time"] + 60 <= now]  # the forming bar is never delivered
            if self._last_time is not None:
                closed = closed[closed["time"] > self._last_time]  # never twice, whatever the request's bounds
            for r in closed:
                t = int(r["time"])
                if self._last_time is not None and t - self._last_time > 60:
                    minutes = (t - self._last_time) // 60 - 1
                    if minutes > self.p.max_gap_report_minutes:
                        self.gaps += 1
                        log.info("%s: market gap of %d minutes before %s (server time); not filled", self.symbol,
                                 minutes, dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M"))
                    else:
                        self.holes += 1
                self._queue.append((t, float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"]),
                                    float(r["tick_volume"])))
                self._last_time = t
            if len(rates) < MAX_BARS:
                return
            server_from = int(rates["time"][-1]) + 60  # more bars than one request returns: page on

    def _on_reconnect(self) -> None:
        """After a reconnect the next poll backfills from the last bar queued (no duplicate, no skipped bar)."""
        if self.state == FeedState.LIVE:
            self.put_notification(self.DELAYED)
            self.state = FeedState.BACKFILL


class LiveHTFData(bt.feed.DataBase):
    """A higher-timeframe bar built live from an M1 feed by the one completion rule, delivered at the M1 bar that
    completes it.

    :param source: the M1 live feed (``MT5Data``; any feed that calls ``push`` for each bar it delivers)
    :param tf_minutes: 5, 30, 240, ...
    :param offset_minutes: bin offset from 00:00 UTC
    """

    lines = ("bar_open",)
    params = (("source", None), ("tf_minutes", 5), ("offset_minutes", 0))

    def __init__(self) -> None:
        if self.p.source is None:
            raise ValueError("LiveHTFData needs source=<the M1 live feed>")
        self._agg = HTFAggregator(self.p.tf_minutes, self.p.offset_minutes)
        self._ready: tuple[float, tuple] | None = None
        self.source_over = False
        self.p.source.subscribe(self)

    def islive(self) -> bool:
        return True

    def push(self, minute: int, o: float, h: float, lo: float, c: float, v: float, m1_num: float) -> None:
        done = self._agg.step(minute, o, h, lo, c, v)
        if done is not None:
            self._ready = (m1_num, done)

    def delivering_history(self) -> bool:
        return self.p.source.delivering_history()

    def load(self) -> bool | None:
        """As ``MT5Data.load``: no bar, no change to the buffers."""
        if self._ready is None:
            return False if self.source_over else None
        return super().load()

    def _load(self) -> bool:
        m1_num, (start, o, h, lo, c, v) = self._ready
        self._ready = None
        lines = self.lines
        lines.datetime[0] = m1_num  # stamped at the completing M1 bar, as feeds.btfeeds.htf_feed does
        lines.open[0], lines.high[0], lines.low[0], lines.close[0] = o, h, lo, c
        lines.volume[0], lines.openinterest[0] = v, 0.0
        lines.bar_open[0] = _num(start * 60)
        return True


def live_feeds(store: Any, history_days: int = HISTORY_DAYS, h4_offset_minutes: int = 0,
               timeframes: tuple[int, ...] = (5, 240)) -> list[bt.feed.DataBase]:
    """The M1 feed and its live higher-timeframe feeds, in the order strategies expect (data0 M1, data1 M5,
    data2 H4, then any others)."""
    m1 = MT5Data(store=store, history_days=history_days, name=f"{store.config.symbol}_M1",
                 timeframe=bt.TimeFrame.Minutes, compression=1)
    out: list[bt.feed.DataBase] = [m1]
    for tf in timeframes:
        out.append(LiveHTFData(source=m1, tf_minutes=tf, offset_minutes=h4_offset_minutes if tf == 240 else 0,
                               name=f"{store.config.symbol}_{'H4' if tf == 240 else f'M{tf}'}",
                               timeframe=bt.TimeFrame.Minutes, compression=tf))
    return out
