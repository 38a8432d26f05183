"""What a live run records of its equity, in memory that does not grow with the bars it has seen.

A backtest keeps the equity of every M1 bar (``brokers.bt_broker.ForexBroker.equity``); a live process that runs
for months cannot. ``LiveRecorder`` keeps, per hour, the last equity and close and the lowest worst-price equity
(what ``equity.csv`` and the plots show), and online the exact numbers a summary needs: the running peak and the
largest fall from it to a bar's worst-price equity (``reports.metrics.max_drawdown``'s definition), the last
equity of each FX trading day (daily returns), and the process's resident memory a week in and at the end.
"""

from __future__ import annotations

import datetime as dt
import os

import backtrader as bt

_EPOCH_NUM = bt.date2num(dt.datetime(1970, 1, 1))
_WEEK_MINUTES = 7 * 1440


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class LiveRecorder(bt.Analyzer):
    """Hourly equity rows and exact running statistics over the trading bars (history bars are skipped)."""

    def start(self) -> None:
        self.hours: list[list[float]] = []  # [hour minute, last equity, min worst equity, last close]
        self.peak = self.strategy.broker.account.initial_cash
        self.max_drawdown = 0.0
        self.first_minute: int | None = None
        self.first_close: float | None = None
        self.rss_first_week: float | None = None
        self.bars = 0
        self._last_len = 0

    def next(self) -> None:
        d = self.strategy.datas[0]
        if len(d) == self._last_len or len(d) - 1 < self.strategy.first_bar:  # no new bar, or history
            self._last_len = len(d)
            return
        self._last_len = len(d)
        acct = self.strategy.broker.account
        minute = round((d.datetime[0] - _EPOCH_NUM) * 1440.0)
        eq, worst = acct.equity, min(acct.worst_equity, acct.equity)
        if self.first_minute is None:
            self.first_minute, self.first_close = minute, float(d.close[0])
        self.bars += 1
        hour = minute // 60 * 60
        if self.hours and self.hours[-1][0] == hour:
            row = self.hours[-1]
            row[1], row[2], row[3] = eq, min(row[2], worst), float(d.close[0])
        else:
            self.hours.append([hour, eq, worst, float(d.close[0])])
        if self.peak > 0:
            self.max_drawdown = max(self.max_drawdown, (self.peak - worst) / self.peak)
        self.peak = max(self.peak, eq)
        if self.rss_first_week is None and minute - self.first_minute >= _WEEK_MINUTES:
            self.rss_first_week = rss_mb()

    prenext = next

    def get_analysis(self) -> dict:
        return {"bars": self.bars, "max_drawdown": self.max_drawdown, "rss_mb_first_week": self.rss_first_week,
                "rss_mb_end": rss_mb()}
