"""The feature engine's second driver: a market context that grows one M1 bar at a time.

Backtests and envs build a ``features.context.MarketContext`` once over the whole series (vectorised, fast).
Live trading and a user's own Cerebro receive bars one at a time; ``IncrementalContext.append`` takes each new
closed M1 bar and gives the agents exactly what the precomputed context would at that bar, from *the same*
engine (``features.engine.raw_feature_arrays``; no indicator is implemented twice):

* M1 features: the engine re-run over the last ``M1_WINDOW`` bars, newest row only (``rows=1``). The engine's
  rolling statistics are window-exact and its recursive TA-Lib indicators (RSI, ATR, ADX, MACD) forget their
  start geometrically, so from 500 bars on the newest row is bit-identical to the whole-series computation
  (``tests/test_incremental.py`` checks every bar of a real month).
* H4 bars: built from the M1 bars by the one completion rule (``feeds.resample``: complete at the M1 bar whose
  close reaches the bin end, or the first bar after a hole; of two bins completing at one bar only the later
  counts), and their features recomputed over the last ``H4_WINDOW`` complete H4 bars when one completes. From
  ~500 H4 bars (112 days) on, a later start changes nothing; ``HISTORY_DAYS`` of history keep the H4 features
  within 1e-6 of a long history (``benchmarks/bench_latency.py`` and the tests measure both).

Storage is bounded: raw bars and per-bar outputs live in arrays of ``capacity`` rows that are compacted when
full, so a live process's memory does not grow with the bars it has seen. Bars are addressed by their absolute
position since the first bar appended, like ``MarketContext``; only the last ``capacity`` are kept.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import talib

from features.context import H4_MINUTES, H4_SPEC
from features.engine import DEFAULT_SPEC, N_FEATURES, FeatureSpec, finish, raw_feature_arrays, volume_ratio
from features.market import (
    DEFAULT_MARKET_SPEC,
    MARKET_WINDOW,
    N_MARKET,
    raw_market_arrays,
    swap_differential,
    trading_day_numbers,
    trading_week,
    week_numbers,
)
from feeds.loaders import to_utc
from feeds.macro import MacroTable
from feeds.resample import HTFAggregator

M1_WINDOW = 1000
"""M1 bars the engine re-runs over for each new bar (500 already reproduce the whole-series features)"""
H4_WINDOW = 600
"""complete H4 bars the H4 features are recomputed over (496, 112 days, already change nothing)"""
VOLUME_WINDOW = 20  # features.engine.volume_ratio's default, as build_context uses it
_ATR_PERIOD = 14
if H4_SPEC.warmup_bars <= _ATR_PERIOD:  # readiness is decided without the ATR: past the H4 warm-up it is defined
    raise RuntimeError("the H4 warm-up must be longer than the H4 ATR's period")
_NS = 60_000_000_000


class _Rows:
    """Absolute-position access into a bounded buffer: bar ``i`` of the stream lives at row ``i - offset``."""

    def __init__(self, owner: IncrementalContext, array: np.ndarray) -> None:
        self._owner, self._array = owner, array  # compaction copies in place, so the array stays this one

    def __getitem__(self, i: int):
        o = self._owner
        if o._pending:
            o.flush()
        k = int(i) - o._offset
        if not 0 <= k < o._n - o._offset:
            raise IndexError(f"bar {i} is not held (held: {o._offset}..{o._n - 1})")
        return self._array[k]

    def __len__(self) -> int:
        return len(self._owner)

    def tolist(self) -> _Rows:
        """Itself: observation builders turn a context's arrays into lists once; these must stay live."""
        return self


class IncrementalContext:
    """``MarketContext``'s per-bar view, grown by ``append``.

    :param macro: the macro series (a ``MacroTable`` is built once), or None for zeros
    :param h4_offset_minutes: H4 bin offset from 00:00 UTC (as ``build_context``)
    :param spec: the M1 feature spec (a checkpoint's)
    :param trade_from: bars before this time are history: never decided on
    :param first_bar: bars before this position are history (the same, by position)
    :param capacity: bars kept (at least ``M1_WINDOW``; with the market block at least ``MARKET_WINDOW``)
    :param market: the traded ``brokers.instruments.Instrument``: compute the market block too (``features.market``,
        re-run over the last ``MARKET_WINDOW`` bars for each new one; build_context's ``market``)
    """

    market: _Rows | None = None

    def __init__(self, macro: pd.DataFrame | MacroTable | None, h4_offset_minutes: int = 0,
                 spec: FeatureSpec = DEFAULT_SPEC, trade_from: str | pd.Timestamp | None = None,
                 first_bar: int = 0, capacity: int = 4 * M1_WINDOW, market=None) -> None:
        if capacity < M1_WINDOW:
            raise ValueError(f"capacity must be at least M1_WINDOW ({M1_WINDOW}), got {capacity}")
        if market is not None:
            capacity = max(capacity, MARKET_WINDOW)
        self.macro = macro if macro is None or isinstance(macro, MacroTable) else MacroTable.from_frame(macro)
        self.spec, self.h4_offset = spec, int(h4_offset_minutes)
        start = to_utc(trade_from, "trade_from", whole_day_end=False) if trade_from is not None else None
        self._trade_from_ns = -(2**62) if start is None else start.value
        self.first_bar = int(first_bar)
        self.capacity = capacity
        cap = 2 * capacity  # compacted to ``capacity`` rows when full
        self._time = np.zeros(cap, np.int64)  # bar open, UTC ns
        self._minute = np.zeros(cap, np.int64)
        self._o, self._hi, self._lo, self._c = (np.zeros(cap) for _ in range(4))
        self._m1 = np.zeros((cap, N_FEATURES), np.float32)
        self._h4 = np.zeros((cap, N_FEATURES), np.float32)
        self._atr = np.full(cap, np.nan)
        self._pos = np.full(cap, -1, np.int64)
        self._vol = np.ones(cap)
        self._columns = (self._time, self._minute, self._o, self._hi, self._lo, self._c, self._m1, self._h4,
                         self._atr, self._pos, self._vol)
        self._carry = None if market is None else swap_differential(market)
        self._week, self._weeks = -1, 0  # FX weeks begun so far: the market block needs a complete previous one
        if market is not None:
            self._mk = np.zeros((cap, N_MARKET), np.float32)
            self._day = np.zeros(cap, np.int64)  # FX trading day per bar: the block's levels need the window's
            self._columns += (self._mk, self._day)
        self._n = 0  # bars appended
        self._offset = 0  # absolute position of buffer row 0
        # complete H4 bars (bin open ns; high, low, close), bounded, and the bin being built
        self._h4_time = np.zeros(2 * H4_WINDOW, np.int64)
        self._h4_hlc = np.zeros((2 * H4_WINDOW, 3))
        self._h4_n = 0  # complete H4 bars so far
        self._h4_held = 0  # of them in the buffer
        self._h4_agg = HTFAggregator(H4_MINUTES, self.h4_offset)
        self._h4_row = np.zeros(N_FEATURES, np.float32)
        self._h4_atr = math.nan
        self._first_ready = -1
        self.first_ready_minute: int | None = None  # kept: the bar itself leaves the bounded buffer
        self._last_t = -(2**63)
        self._pending: list[tuple[int, float, float, float, float]] = []  # appended, not yet computed
        self.minutes, self.open, self.high, self.low, self.close = (
            _Rows(self, a) for a in (self._minute, self._o, self._hi, self._lo, self._c))
        self.m1_features, self.h4_features, self.h4_atr, self.h4_pos, self.volume_ratio = (
            _Rows(self, a) for a in (self._m1, self._h4, self._atr, self._pos, self._vol))
        if market is not None:
            self.market = _Rows(self, self._mk)

    def __len__(self) -> int:
        return self._n + len(self._pending)

    @property
    def first_ready(self) -> int:
        """The first bar a decision may be taken on; -1 until there is one (known without computing features)."""
        return self._first_ready

    def decides_at(self, i: int) -> bool:
        """Whether bar ``i`` is one a decision may be taken on (every input defined, the trading period begun).
        Live, there is no last bar to keep free."""
        return 0 <= self.first_ready <= i

    # ------------------------------------------------------------------ the driver
    def append(self, time: pd.Timestamp | int, o: float, h: float, lo: float, c: float) -> int:
        """Add the next closed M1 bar (open time, UTC ns or a Timestamp; bid OHLC); returns its position. The
        cheap part runs now (the H4 bins, whether a decision may be taken on it); its features are computed when
        first read, together with every bar appended before (a live feed's backfill of weeks of history is then
        one pass of the engine, not one per bar). The values are the same either way."""
        t = int(time) if isinstance(time, int | np.integer) else pd.Timestamp(time).tz_convert("UTC").value
        if t <= self._last_t:
            raise ValueError(f"bars must move forward in time: {pd.Timestamp(t, tz='UTC')} after "
                             f"{pd.Timestamp(self._last_t, tz='UTC')}")
        if not (lo > 0.0 and lo <= o <= h and lo <= c <= h):  # also rejects NaN
            raise ValueError(f"bad bar at {pd.Timestamp(t, tz='UTC')}: o={o} h={h} l={lo} c={c}")
        self._last_t = t
        done = self._h4_step(t // _NS, o, h, lo, c)
        i = len(self)
        if self._carry is not None and self._weeks < 3:  # only until the block can be ready
            week = trading_week(t)
            self._weeks += week != self._week
            self._week = week
        if self._first_ready < 0 and i >= max(self.spec.warmup_bars, self.first_bar) \
                and self._h4_n - 1 >= H4_SPEC.warmup_bars and t >= self._trade_from_ns and self._market_ready(i):
            self._first_ready = i  # build_context's rule (its H4 ATR test holds: the warm-up outlasts the ATR's)
            self.first_ready_minute = t // _NS
        self._pending.append((t, float(o), float(h), float(lo), float(c), done))
        if len(self._pending) >= self.capacity:
            self.flush()
        return i

    def _market_ready(self, i: int) -> bool:
        """build_context's rule for the market block: every value defined (a third FX week begun, so the previous
        one is complete; the longest window full); True without the block."""
        return self._carry is None or (i >= DEFAULT_MARKET_SPEC.warmup_bars and self._weeks >= 3)

    def extend(self, times_ns: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> None:
        """Add several closed M1 bars at once (a backfill); the same as appending them one by one."""
        for row in zip(np.asarray(times_ns, dtype=np.int64).tolist(), *(np.asarray(a, dtype=np.float64).tolist()
                                                                       for a in (o, h, lo, c)), strict=True):
            self.append(*row)
        self.flush()

    def flush(self) -> None:
        """Compute the features of the bars appended since the last read, in one pass of the engine."""
        if not self._pending:
            return
        p, self._pending = self._pending, []
        k = len(p)
        times_ns = np.array([b[0] for b in p], np.int64)  # exact: nanoseconds do not fit a float64
        px = np.array([b[1:5] for b in p])
        if self._n - self._offset + k > len(self._time):
            self._compact(k)
        b0 = self._n - self._offset  # buffer row of the first new bar
        rows = slice(b0, b0 + k)
        self._time[rows], self._minute[rows] = times_ns, times_ns // _NS
        self._o[rows], self._hi[rows], self._lo[rows], self._c[rows] = px[:, 0], px[:, 1], px[:, 2], px[:, 3]
        self._n += k
        # the H4 bars completed among these (already stored by append): their features in one pass
        done_at = [j for j, b in enumerate(p) if b[5]]
        new_h4 = len(done_at)
        if new_h4:
            rows_h4, atr_h4 = self._h4_features(new_h4)
        # M1 features: the engine over the new bars and the M1_WINDOW before them, newest k rows
        sl = slice(max(0, b0 - M1_WINDOW + 1), b0 + k)
        raw = raw_feature_arrays(self._time[sl], self._hi[sl], self._lo[sl], self._c[sl], self.macro, self.spec,
                                 rows=k)
        self._m1[rows] = finish(raw[-k:], self.spec)
        v = max(0, b0 - (VOLUME_WINDOW - 1))
        vr = volume_ratio(self._hi[v:b0 + k], self._lo[v:b0 + k], VOLUME_WINDOW, rows=k)[-k:]
        self._vol[rows] = np.where(np.isnan(vr), 1.0, vr)
        if self._carry is not None:  # the market block over the new bars and the MARKET_WINDOW before them
            self._day[rows] = trading_day_numbers(times_ns)
            m = slice(max(0, b0 - MARKET_WINDOW + 1), b0 + k)
            days = self._day[m]
            week = week_numbers(days)
            # the first new row's week must be at least the window's third: else its previous week may be cut off
            if m.start > 0 and np.count_nonzero(np.diff(week[:len(week) - k + 1])) < 2:
                raise RuntimeError(f"the market block's window of {MARKET_WINDOW} M1 bars does not hold the previous "
                                   "FX week whole (more than 7,500 bars a week: weekend bars?)")
            raw = raw_market_arrays(self._time[m], self._hi[m], self._lo[m], self._c[m], self.macro, self._carry,
                                    rows=k, days=days)
            self._mk[rows] = finish(raw[-k:], FeatureSpec(clip=DEFAULT_MARKET_SPEC.clip))
        # each bar sees the newest H4 bar complete at it
        h4_row, h4_atr, pos = self._h4_row, self._h4_atr, self._h4_n - new_h4 - 1
        nxt = 0
        for j in range(k):
            if nxt < new_h4 and done_at[nxt] == j:
                h4_row, h4_atr, pos = rows_h4[nxt], float(atr_h4[nxt]), pos + 1
                nxt += 1
            r = b0 + j
            self._h4[r], self._atr[r], self._pos[r] = h4_row, h4_atr, pos
        self._h4_row, self._h4_atr = h4_row, h4_atr

    def _compact(self, room: int) -> None:
        """Keep the newest rows so that ``room`` more fit and at most ``capacity`` are held (memory stays
        bounded)."""
        held = self._n - self._offset
        keep = min(held, self.capacity, len(self._time) - room)
        drop = held - keep
        for arr in self._columns:
            arr[:keep] = arr[drop:held]
        self._offset += drop

    def _h4_step(self, minute: int, o: float, h: float, lo: float, c: float) -> bool:
        """Advance the H4 bars by one M1 bar (``feeds.resample.HTFAggregator``, the one completion rule); True if
        an H4 bar completes at this bar (it is then stored)."""
        done = self._h4_agg.step(minute, o, h, lo, c)
        if done is None:
            return False
        if self._h4_held == len(self._h4_time):
            self._h4_time[:H4_WINDOW] = self._h4_time[-H4_WINDOW:]
            self._h4_hlc[:H4_WINDOW] = self._h4_hlc[-H4_WINDOW:]
            self._h4_held = H4_WINDOW
        self._h4_time[self._h4_held] = done[0] * _NS
        self._h4_hlc[self._h4_held] = done[2:5]
        self._h4_held += 1
        self._h4_n += 1
        return True

    def _h4_features(self, new: int) -> tuple[np.ndarray, np.ndarray]:
        """Features and ATR(14) of the newest ``new`` complete H4 bars, over them and the H4_WINDOW before."""
        sl = slice(max(0, self._h4_held - (H4_WINDOW + new - 1)), self._h4_held)
        hi, lo, cl = (np.ascontiguousarray(self._h4_hlc[sl, j]) for j in range(3))
        raw = raw_feature_arrays(self._h4_time[sl], hi, lo, cl, self.macro, H4_SPEC, rows=new)
        atr = talib.ATR(hi, lo, cl, timeperiod=_ATR_PERIOD)  # as build_context: NaN until defined
        return finish(raw[-new:], H4_SPEC), atr[-new:]
