"""The four-agent system's input matrices, from the one feature engine, with two drivers.

Every number comes from ``features.engine.raw_feature_arrays`` run on complete M5 / M30 bars
(``feeds.resample``: the one completion rule) plus, for the Regime matrix, macro *changes* read from the same
``feeds.macro.MacroTable`` with its publication lags. Rows run oldest first; the last row is the newest bar that is
complete at the M1 bar asked about. All values are float32, the engine's causal rolling normalisation, clipped to
+-``FeatureSpec.clip``.

=========  ==========  ====================================================================================
matrix     shape       columns (engine features computed on that timeframe's bars; see ``features.engine``)
=========  ==========  ====================================================================================
tactical   60 x 7      ``TACTICAL_COLUMNS``: returns, volatility, rsi, macd, atr, bb_width, gap (M5 bars)
structure  48 x 8      ``STRUCTURE_COLUMNS``: price_norm, returns, volatility, rsi, macd, adx, cci, gap (M30)
regime     96 x 19     ``REGIME_COLUMNS``: the 16 engine features on M30 bars (incl. the ADX regime one-hot and
                       vix, fed_funds, yield_curve as last published), then ``MACRO_CHANGE_COLUMNS``
=========  ==========  ====================================================================================

Macro changes (regime columns 16..18), causal by construction: the value last published at the bar's open time
minus the value last published at ``change_days`` calendar days earlier (``MacroTable.asof`` of both times, so
neither can be a value published after the bar opened), divided by a scale:
``vix_change`` = VIX change over ``vix_change_days`` (7) / ``vix_change_scale`` (5 points); ``fed_funds_change``
and ``yield_curve_change`` = change over ``rates_change_days`` (28) / ``rates_change_scale`` (0.25 percentage
points, one usual Fed step). Like the engine's macro columns they are looked up at the HTF bar's *open* time,
which precedes its completion.

Gaps are explicit: the engine's ``gap`` column says how long the data stopped before each bar (0 for contiguous
bars, ~1 after a weekend); nothing is forward-filled. Missing rows: before enough complete bars exist, and for
bars inside the engine's warm-up (the first ``FeatureSpec.warmup_bars`` = 119 bars of a timeframe, where some
feature is undefined), a row is all zeros and its mask entry is False; every other row is True. A matrix is
*ready* (every row real) once ``warmup_bars + rows`` bars of its timeframe are complete: 179 M5 bars
(~15 h), 167 M30 bars (structure) and 215 M30 bars (regime, ~4.5 trading days). Load
``features.context.HISTORY_DAYS`` of history before a period anyway: Wilder's RSI/ATR/ADX remember where the
series began (see there).

Two drivers, one implementation of every number (``_m5_rows`` / ``_m30_rows``):

* ``build_matrices`` (backtests, envs, pretraining): M5 and M30 bars via ``htf_bars``, features once per HTF bar,
  and per M1 bar the row of the newest complete HTF bar (``completed_index``). The matrix at M1 bar ``i`` is a
  *view* into the padded row arrays (``MarketMatrices.at``); ``RowWindows.batch`` gathers a minibatch. Nothing
  is materialised per M1 bar.
* ``IncrementalMatrices`` (live, a user's own Cerebro): fed one closed M1 bar at a time (or blocks), builds M5/M30
  bars with ``feeds.resample.HTFAggregator`` and, when one completes, re-runs the engine with ``rows=`` over the
  last ``M5_WINDOW`` / ``M30_WINDOW`` complete bars; memory is bounded. Its matrices are bit-identical to
  ``build_matrices`` over the same bars from the same first bar (``tests/test_matrices.py`` checks every M1 bar
  of six real weeks, EURUSD 2024-01-02..02-16, single bars and random blocks).

Window measurement (the engine over the last W complete bars, newest row, against the whole-series row, at every
bar from W on): on EURUSD 2024 Jan-Apr (24,731 M5 and 4,122 M30 bars) every tactical, structure and regime value is
bit-identical from W = 450 on, for both timeframes; at W = 440 five M5 and one M30 row still differ in the last
float32 bit, always in the ``atr`` z-score (Wilder's ATR forgets its start like (13/14)^W). W = 600 also matches
every bar of 2020 H1 (37,170 M5 and 6,196 M30 bars, the COVID crash). ``M5_WINDOW`` = ``M30_WINDOW`` = 600; one
engine run over 600 bars takes about 0.6 ms here, once per completed M5 / M30 bar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from features.engine import FEATURE_NAMES, FeatureSpec, finish, raw_feature_arrays
from feeds.macro import MacroTable
from feeds.resample import HTFAggregator, completed_index, htf_bars

TACTICAL_COLUMNS: tuple[str, ...] = ("returns", "volatility", "rsi", "macd", "atr", "bb_width", "gap")
STRUCTURE_COLUMNS: tuple[str, ...] = ("price_norm", "returns", "volatility", "rsi", "macd", "adx", "cci", "gap")
MACRO_CHANGE_COLUMNS: tuple[str, ...] = ("vix_change", "fed_funds_change", "yield_curve_change")
REGIME_COLUMNS: tuple[str, ...] = (*FEATURE_NAMES, *MACRO_CHANGE_COLUMNS)

M5_MINUTES, M30_MINUTES = 5, 30
M5_SPEC = FeatureSpec.for_timeframe(M5_MINUTES)
M30_SPEC = FeatureSpec.for_timeframe(M30_MINUTES)
M5_WINDOW = 600
"""complete M5 bars the incremental driver re-runs the engine over (450 already reproduce every value)"""
M30_WINDOW = 600
"""complete M30 bars the incremental driver re-runs the engine over (450 already reproduce every value)"""

_TACTICAL_IDX = np.array([FEATURE_NAMES.index(c) for c in TACTICAL_COLUMNS])
_STRUCTURE_IDX = np.array([FEATURE_NAMES.index(c) for c in STRUCTURE_COLUMNS])
_NS_PER_MIN = 60_000_000_000
_NS_PER_DAY = 1440 * _NS_PER_MIN


@dataclass(frozen=True)
class MatrixSpec:
    """Matrix lengths and the macro-change definitions; stored in checkpoint manifests with the engine specs.

    :param tactical_rows: complete M5 bars in the tactical matrix
    :param structure_rows: complete M30 bars in the structure matrix
    :param regime_rows: complete M30 bars in the regime matrix
    :param vix_change_days: calendar days over which the VIX change is taken
    :param vix_change_scale: VIX points that map to 1.0
    :param rates_change_days: calendar days over which fed funds and 10y-2y changes are taken
    :param rates_change_scale: percentage points that map to 1.0
    """

    tactical_rows: int = 60
    structure_rows: int = 48
    regime_rows: int = 96
    vix_change_days: int = 7
    vix_change_scale: float = 5.0
    rates_change_days: int = 28
    rates_change_scale: float = 0.25
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("tactical_rows", "structure_rows", "regime_rows", "vix_change_days", "rates_change_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.vix_change_scale > 0 and self.rates_change_scale > 0):
            raise ValueError("change scales must be positive")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description for manifests: lengths, columns and the engine specs of both timeframes."""
        return {**asdict(self), "tactical_columns": list(TACTICAL_COLUMNS),
                "structure_columns": list(STRUCTURE_COLUMNS), "regime_columns": list(REGIME_COLUMNS),
                "m5_feature_spec": M5_SPEC.to_dict(), "m30_feature_spec": M30_SPEC.to_dict()}


DEFAULT_MATRIX_SPEC = MatrixSpec()


def _table(macro: pd.DataFrame | MacroTable | None) -> MacroTable | None:
    return macro if macro is None or isinstance(macro, MacroTable) else MacroTable.from_frame(macro)


# ------------------------------------------------------------------ the one implementation of every number
def macro_changes(times_ns: np.ndarray, macro: MacroTable | None, spec: MatrixSpec = DEFAULT_MATRIX_SPEC,
                  clip: float = M30_SPEC.clip) -> np.ndarray:
    """(n, 3) float32 ``MACRO_CHANGE_COLUMNS`` at bar open times ``times_ns``: last published value now minus the
    last published value ``change_days`` earlier, scaled; 0 where either is unknown (or without macro data)."""
    t = np.asarray(times_ns, dtype=np.int64)
    if macro is None:
        return np.zeros((len(t), 3), np.float32)
    now = macro.asof(t)
    out = np.empty((len(t), 3))
    days = (spec.vix_change_days, spec.rates_change_days, spec.rates_change_days)
    scales = (spec.vix_change_scale, spec.rates_change_scale, spec.rates_change_scale)
    for j in range(3):
        before = macro.asof(t - days[j] * _NS_PER_DAY)[:, j]
        out[:, j] = (now[:, j] - before) / scales[j]
    np.nan_to_num(out, copy=False, nan=0.0, posinf=clip, neginf=-clip)
    np.clip(out, -clip, clip, out=out)
    return out.astype(np.float32)


def _blank_warmup(rows: np.ndarray, first_index: int, warmup: int) -> np.ndarray:
    """Validity of rows whose HTF bars are ``first_index, first_index + 1, ...``; rows in the warm-up are zeroed."""
    valid = np.arange(first_index, first_index + len(rows)) >= warmup
    rows[~valid] = 0.0
    return valid


def _m5_rows(times_ns: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
             macro: MacroTable | None, rows: int | None = None) -> np.ndarray:
    """Tactical rows of the last ``rows`` (all: None) of these complete M5 bars."""
    raw = raw_feature_arrays(times_ns, high, low, close, macro, M5_SPEC, rows)
    k = len(close) if rows is None else rows
    return np.ascontiguousarray(finish(raw[len(close) - k:], M5_SPEC)[:, _TACTICAL_IDX])


def _m30_rows(times_ns: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
              macro: MacroTable | None, spec: MatrixSpec, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(structure rows, regime rows) of the last ``rows`` (all: None) of these complete M30 bars."""
    raw = raw_feature_arrays(times_ns, high, low, close, macro, M30_SPEC, rows)
    k = len(close) if rows is None else rows
    f = finish(raw[len(close) - k:], M30_SPEC)
    regime = np.concatenate([f, macro_changes(np.asarray(times_ns)[len(close) - k:], macro, spec)], axis=1)
    return np.ascontiguousarray(f[:, _STRUCTURE_IDX]), regime


# ------------------------------------------------------------------ precomputed driver
class Matrices(NamedTuple):
    """The three matrices at one M1 bar and their row masks (True = a real, fully defined row)."""

    tactical: np.ndarray  # (tactical_rows, 7)
    tactical_mask: np.ndarray
    structure: np.ndarray  # (structure_rows, 8)
    structure_mask: np.ndarray
    regime: np.ndarray  # (regime_rows, 19)
    regime_mask: np.ndarray


@dataclass(frozen=True)
class RowWindows:
    """One row per complete HTF bar, with ``length`` zero rows (mask False) in front, so that the window ending at
    any HTF row ``pos`` (-1: none complete yet) is the slice ``[pos + 1, pos + 1 + length)``: a view."""

    rows: np.ndarray  # (length + n_htf, width) float32
    valid: np.ndarray  # (length + n_htf,) bool
    length: int
    warmup: int  # the HTF row from which rows are real

    @classmethod
    def from_rows(cls, rows: np.ndarray, valid: np.ndarray, length: int, warmup: int) -> RowWindows:
        pad = np.zeros((length, rows.shape[1]), np.float32)
        return cls(np.concatenate([pad, rows]), np.concatenate([np.zeros(length, bool), valid]), length, warmup)

    @property
    def n_bars(self) -> int:
        """Complete HTF bars held."""
        return len(self.rows) - self.length

    def window(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(matrix, mask) ending at HTF row ``pos``: read-only views, no copy."""
        if not -1 <= pos < self.n_bars:
            raise IndexError(f"HTF row {pos} outside -1..{self.n_bars - 1}")
        return self.rows[pos + 1:pos + 1 + self.length], self.valid[pos + 1:pos + 1 + self.length]

    def batch(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, length, width) matrices and (B, length) masks ending at the HTF rows ``pos`` (a minibatch: copies)."""
        pos = np.asarray(pos, dtype=np.int64)
        if len(pos) and (pos.min() < -1 or pos.max() >= self.n_bars):
            raise IndexError(f"HTF rows outside -1..{self.n_bars - 1}")
        win = np.lib.stride_tricks.sliding_window_view(self.rows, self.length, axis=0)  # (n, width, length)
        vm = np.lib.stride_tricks.sliding_window_view(self.valid, self.length)
        return np.ascontiguousarray(win[pos + 1].transpose(0, 2, 1)), vm[pos + 1].copy()

    def ready(self, pos: int | np.ndarray) -> bool | np.ndarray:
        """Whether every row of the window ending at ``pos`` is real."""
        return np.asarray(pos) >= self.warmup + self.length - 1


def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


@dataclass(frozen=True)
class MarketMatrices:
    """The three matrices for every M1 bar of a series, as row windows plus per-M1-bar HTF positions.

    ``m5_pos[i]`` / ``m30_pos[i]``: the newest M5 / M30 row complete at M1 bar ``i`` (-1 before the first);
    ``new_m5[i]`` / ``new_m30[i]``: an M5 / M30 bar completes at M1 bar ``i`` (the Tactical / Regime and Structure
    agents decide there). ``first_ready``: the first M1 bar at which all three matrices are ready (len if none).
    """

    spec: MatrixSpec
    tactical: RowWindows
    structure: RowWindows
    regime: RowWindows
    m5_time: np.ndarray  # int64 UTC ns, M5 bar open times
    m30_time: np.ndarray
    m5_pos: np.ndarray
    m30_pos: np.ndarray
    new_m5: np.ndarray
    new_m30: np.ndarray
    first_ready: int

    def __len__(self) -> int:
        return len(self.m5_pos)

    def at(self, i: int) -> Matrices:
        """The matrices at M1 bar ``i`` (views)."""
        t, tm = self.tactical.window(int(self.m5_pos[i]))
        s, sm = self.structure.window(int(self.m30_pos[i]))
        r, rm = self.regime.window(int(self.m30_pos[i]))
        return Matrices(t, tm, s, sm, r, rm)

    def ready_at(self, i: int) -> bool:
        return bool(self.tactical.ready(self.m5_pos[i]) and self.regime.ready(self.m30_pos[i])
                    and self.structure.ready(self.m30_pos[i]))


def _htf_arrays(htf: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = htf.index.as_unit("ns").asi8
    return t, *(np.ascontiguousarray(htf[k].to_numpy(np.float64)) for k in ("high", "low", "close"))


def m5_windows(m5: pd.DataFrame, macro: pd.DataFrame | MacroTable | None,
               spec: MatrixSpec = DEFAULT_MATRIX_SPEC) -> RowWindows:
    """Tactical row windows of complete M5 bars (``htf_bars(m1, 5)``)."""
    macro = _table(macro)
    t, h, lo, c = _htf_arrays(m5)
    rows = _m5_rows(t, h, lo, c, macro) if len(t) else np.zeros((0, len(TACTICAL_COLUMNS)), np.float32)
    w = RowWindows.from_rows(rows, _blank_warmup(rows, 0, M5_SPEC.warmup_bars), spec.tactical_rows,
                             M5_SPEC.warmup_bars)
    _readonly(w.rows, w.valid)
    return w


def m30_windows(m30: pd.DataFrame, macro: pd.DataFrame | MacroTable | None,
                spec: MatrixSpec = DEFAULT_MATRIX_SPEC) -> tuple[RowWindows, RowWindows]:
    """(structure, regime) row windows of complete M30 bars (``htf_bars(m1, 30)``); the Regime pretraining reads
    these directly, without the M5 matrices."""
    macro = _table(macro)
    t, h, lo, c = _htf_arrays(m30)
    if len(t):
        st, rg = _m30_rows(t, h, lo, c, macro, spec)
    else:
        st = np.zeros((0, len(STRUCTURE_COLUMNS)), np.float32)
        rg = np.zeros((0, len(REGIME_COLUMNS)), np.float32)
    out = (RowWindows.from_rows(st, _blank_warmup(st, 0, M30_SPEC.warmup_bars), spec.structure_rows,
                                M30_SPEC.warmup_bars),
           RowWindows.from_rows(rg, _blank_warmup(rg, 0, M30_SPEC.warmup_bars), spec.regime_rows,
                                M30_SPEC.warmup_bars))
    for w in out:
        _readonly(w.rows, w.valid)
    return out


def build_matrices(m1: pd.DataFrame, macro: pd.DataFrame | MacroTable | None,
                   spec: MatrixSpec = DEFAULT_MATRIX_SPEC, offset_minutes: int = 0) -> MarketMatrices:
    """All matrices of a series of M1 bars (UTC-indexed OHLCV, as ``feeds.loaders.load_bars`` gives).

    :param macro: the macro series (or a ``MacroTable``), None for zeros
    :param spec: matrix lengths and macro changes
    :param offset_minutes: HTF bin offset from 00:00 UTC (as ``htf_bars``)
    """
    table = _table(macro)
    n = len(m1)
    m5, m30 = htf_bars(m1, M5_MINUTES, offset_minutes), htf_bars(m1, M30_MINUTES, offset_minutes)
    tactical = m5_windows(m5, table, spec)
    structure, regime = m30_windows(m30, table, spec)
    p5, p30 = completed_index(n, m5), completed_index(n, m30)
    new5 = np.r_[p5[:1] >= 0, p5[1:] != p5[:-1]] if n else np.zeros(0, bool)
    new30 = np.r_[p30[:1] >= 0, p30[1:] != p30[:-1]] if n else np.zeros(0, bool)
    ok = tactical.ready(p5) & structure.ready(p30) & regime.ready(p30)
    first = int(np.argmax(ok)) if ok.any() else n
    t5, t30 = m5.index.as_unit("ns").asi8.copy(), m30.index.as_unit("ns").asi8.copy()
    _readonly(t5, t30, p5, p30, new5, new30)
    return MarketMatrices(spec, tactical, structure, regime, t5, t30, p5, p30, new5, new30, first)


# ------------------------------------------------------------------ incremental driver
class _Bars:
    """Complete HTF bars of one timeframe (open ns; high, low, close), the newest ``keep`` at least, bounded."""

    def __init__(self, keep: int, room: int) -> None:
        self.keep = keep
        self.time = np.zeros(keep + room, np.int64)
        self.hlc = np.zeros((keep + room, 3))
        self.held = 0  # rows in use
        self.count = 0  # bars ever completed
        self.pending = 0  # completed, features not yet computed

    def push(self, minute: int, h: float, lo: float, c: float) -> None:
        if self.held == len(self.time):  # keep the window before the uncomputed bars
            k = self.keep - 1 + self.pending
            self.time[:k] = self.time[self.held - k:self.held]
            self.hlc[:k] = self.hlc[self.held - k:self.held]
            self.held = k
        self.time[self.held] = minute * _NS_PER_MIN
        self.hlc[self.held] = (h, lo, c)
        self.held += 1
        self.count += 1
        self.pending += 1

    def take(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pending count, times, highs, lows, closes) over the pending bars and the ``keep - 1`` before them."""
        k, self.pending = self.pending, 0
        sl = slice(max(0, self.held - (self.keep + k - 1)), self.held)
        return (k, self.time[sl], *(np.ascontiguousarray(self.hlc[sl, j]) for j in range(3)))


class _Rows:
    """The newest ``length`` rows of one matrix (zero rows, mask False, until there are enough), bounded."""

    def __init__(self, length: int, width: int) -> None:
        self.length = length
        self.rows = np.zeros((4 * length, width), np.float32)
        self.valid = np.zeros(4 * length, bool)
        self.end = length  # the zero padding in front

    def push(self, rows: np.ndarray, valid: np.ndarray) -> None:
        k, L = len(rows), self.length
        if k >= L:
            self.rows[:L], self.valid[:L], self.end = rows[-L:], valid[-L:], L
            return
        if self.end + k > len(self.rows):
            self.rows[:L] = self.rows[self.end - L:self.end]
            self.valid[:L] = self.valid[self.end - L:self.end]
            self.end = L
        self.rows[self.end:self.end + k], self.valid[self.end:self.end + k] = rows, valid
        self.end += k

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        return self.rows[self.end - self.length:self.end], self.valid[self.end - self.length:self.end]


class IncrementalMatrices:
    """``MarketMatrices.at`` for the newest bar, grown by ``append`` (one closed M1 bar) or ``extend`` (a block).

    The matrices returned are views into internal buffers, valid until the next append: copy them to keep them.

    :param macro: the macro series (a ``MacroTable`` is built once), or None for zeros
    :param spec: matrix lengths and macro changes (a checkpoint's)
    :param offset_minutes: HTF bin offset from 00:00 UTC (as ``build_matrices``)
    """

    _BLOCK = M5_WINDOW  # M1 bars per engine pass in ``extend``: at most this many M5 bars complete in it

    def __init__(self, macro: pd.DataFrame | MacroTable | None, spec: MatrixSpec = DEFAULT_MATRIX_SPEC,
                 offset_minutes: int = 0) -> None:
        self.macro, self.spec = _table(macro), spec
        self._agg5 = HTFAggregator(M5_MINUTES, offset_minutes)
        self._agg30 = HTFAggregator(M30_MINUTES, offset_minutes)
        self._m5 = _Bars(M5_WINDOW, self._BLOCK)
        self._m30 = _Bars(M30_WINDOW, self._BLOCK)
        self._tactical = _Rows(spec.tactical_rows, len(TACTICAL_COLUMNS))
        self._structure = _Rows(spec.structure_rows, len(STRUCTURE_COLUMNS))
        self._regime = _Rows(spec.regime_rows, len(REGIME_COLUMNS))
        self._n = 0
        self._last_t = -(2**63)

    def __len__(self) -> int:
        return self._n

    @property
    def m5_count(self) -> int:
        """Complete M5 bars so far (``MarketMatrices.m5_pos`` + 1 at the same bar)."""
        return self._m5.count

    @property
    def m30_count(self) -> int:
        return self._m30.count

    @property
    def ready(self) -> bool:
        """Whether every row of all three matrices is real."""
        s = self.spec
        return (self._m5.count >= M5_SPEC.warmup_bars + s.tactical_rows
                and self._m30.count >= M30_SPEC.warmup_bars + max(s.structure_rows, s.regime_rows))

    def append(self, time: pd.Timestamp | int, o: float, h: float, lo: float, c: float) -> tuple[bool, bool]:
        """Add the next closed M1 bar (open time, UTC ns or a Timestamp; bid OHLC). Returns whether an M5 bar and
        whether an M30 bar completed at it (then the Tactical / the Regime and Structure agents decide)."""
        t = int(time) if isinstance(time, int | np.integer) else pd.Timestamp(time).tz_convert("UTC").value
        if t <= self._last_t:
            raise ValueError(f"bars must move forward in time: {pd.Timestamp(t, tz='UTC')} after "
                             f"{pd.Timestamp(self._last_t, tz='UTC')}")
        if not (lo > 0.0 and lo <= o <= h and lo <= c <= h):  # also rejects NaN
            raise ValueError(f"bad bar at {pd.Timestamp(t, tz='UTC')}: o={o} h={h} l={lo} c={c}")
        self._last_t = t
        new5, new30 = self._step(t // _NS_PER_MIN, float(o), float(h), float(lo), float(c))
        self._compute()
        return new5, new30

    def extend(self, times_ns: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> None:
        """Add several closed M1 bars (a backfill): the same matrices as appending them one by one, with one engine
        pass per timeframe per block of ``_BLOCK`` bars."""
        times_ns = np.asarray(times_ns, dtype=np.int64)
        cols = [np.asarray(a, dtype=np.float64) for a in (o, h, lo, c)]
        for a in range(0, len(times_ns), self._BLOCK):
            t = times_ns[a:a + self._BLOCK]
            oo, hh, ll, cc = (x[a:a + self._BLOCK] for x in cols)
            if (t[0] if len(t) else self._last_t + 1) <= self._last_t or (np.diff(t) <= 0).any():
                raise ValueError("bars must move forward in time")
            ok = (ll > 0.0) & (ll <= oo) & (oo <= hh) & (ll <= cc) & (cc <= hh)
            if not ok.all():
                j = int(np.argmin(ok))
                raise ValueError(f"bad bar at {pd.Timestamp(int(t[j]), tz='UTC')}: o={oo[j]} h={hh[j]} l={ll[j]} "
                                 f"c={cc[j]}")
            for j in range(len(t)):
                self._step(int(t[j]) // _NS_PER_MIN, float(oo[j]), float(hh[j]), float(ll[j]), float(cc[j]))
            if len(t):
                self._last_t = int(t[-1])
            self._compute()

    def matrices(self) -> Matrices:
        """The three matrices and masks now (views, valid until the next append)."""
        return Matrices(*self._tactical.window(), *self._structure.window(), *self._regime.window())

    # ------------------------------------------------------------------ internals
    def _step(self, minute: int, o: float, h: float, lo: float, c: float) -> tuple[bool, bool]:
        self._n += 1
        done5 = self._agg5.step(minute, o, h, lo, c)
        if done5 is not None:
            self._m5.push(done5[0], done5[2], done5[3], done5[4])
        done30 = self._agg30.step(minute, o, h, lo, c)
        if done30 is not None:
            self._m30.push(done30[0], done30[2], done30[3], done30[4])
        return done5 is not None, done30 is not None

    def _compute(self) -> None:
        """Features of the bars completed since the last call: the engine over them and the window before."""
        if self._m5.pending:
            first = self._m5.count - self._m5.pending
            k, t, hi, lo, cl = self._m5.take()
            rows = _m5_rows(t, hi, lo, cl, self.macro, rows=k)
            self._tactical.push(rows, _blank_warmup(rows, first, M5_SPEC.warmup_bars))
        if self._m30.pending:
            first = self._m30.count - self._m30.pending
            k, t, hi, lo, cl = self._m30.take()
            st, rg = _m30_rows(t, hi, lo, cl, self.macro, self.spec, rows=k)
            self._structure.push(st, _blank_warmup(st, first, M30_SPEC.warmup_bars))
            self._regime.push(rg, _blank_warmup(rg, first, M30_SPEC.warmup_bars))
