"""Everything a decision needs per M1 bar, computed once from the bar history (causal by construction).

Built by the backtest and by the training envs from the same function, so both see identical numbers:
M1 features, the features of the newest *complete* H4 bar (``feeds.resample`` rule), the H4 ATR that the
pre-trade validator uses, the range-based volume substitute and, when asked for, the market block
(``features.market``: sessions, levels, slower returns, carry, macro changes). Indexed by M1 bar position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import talib

from features.engine import DEFAULT_SPEC, N_FEATURES, FeatureSpec, compute_features, volume_ratio
from features.market import DEFAULT_MARKET_SPEC, market_block, swap_differential
from feeds.loaders import to_utc
from feeds.resample import completed_index, htf_bars, index_minutes

H4_MINUTES = 240
H4_SPEC = FeatureSpec.for_timeframe(H4_MINUTES)
HISTORY_DAYS = 84
"""calendar days of bars to load before a period (a backtest's --start, a live run's backfill, a validation or
test period). The H4 feature warm-up alone needs about four weeks (H4_SPEC.warmup_bars H4 bars); the rest is
for the exponential memory of Wilder's ATR/ADX/RSI: with 84 days the H4 features at and after the period's first
bar are within 1e-9 of those from half a year of history (70 days: 1e-7; the earlier 42 days: 2-6e-4, in the ATR
z-score), so a live process that backfills this much decides as a backtest with a longer history does
(tests/test_incremental.py)"""


def history_start(start: str | pd.Timestamp, days: int = HISTORY_DAYS) -> pd.Timestamp:
    """First day to load so that trading can begin at ``start`` with every feature defined."""
    return to_utc(start, "start", whole_day_end=False).normalize() - pd.Timedelta(days=days)


@dataclass(frozen=True)
class MarketContext:
    """Per-M1-bar arrays (length n). ``first_ready`` is the first bar a decision may be taken on: every input
    is defined and, when the bars include history before the trading period, the period has begun."""

    index: pd.DatetimeIndex
    minutes: np.ndarray  # int64 minutes since the epoch (bar open)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    m1_features: np.ndarray  # (n, 16) float32
    h4_features: np.ndarray  # (n, 16) float32, of the newest complete H4 bar; zeros before the first
    h4_atr: np.ndarray  # ATR(14) of complete H4 bars in price units; NaN before it is defined
    h4_pos: np.ndarray  # row of the newest complete H4 bar, -1 before the first
    volume_ratio: np.ndarray  # range-based substitute for volume (our data have none)
    first_ready: int
    market: np.ndarray | None = None  # (n, features.market.N_MARKET) float32, or None: not asked for

    def __len__(self) -> int:
        return len(self.minutes)

    @property
    def first_ready_minute(self) -> int | None:
        """The first decision bar's open (minutes since the epoch), None if there is none."""
        return int(self.minutes[self.first_ready]) if self.first_ready < len(self.minutes) else None

    def decides_at(self, i: int) -> bool:
        """Whether a decision may be taken on bar ``i``: every input defined, the period begun, and not the last
        bar (an order decided there could not fill)."""
        return self.first_ready <= i < len(self.minutes) - 1


def build_context(m1: pd.DataFrame, macro: pd.DataFrame | None, h4_offset_minutes: int = 0,
                  spec: FeatureSpec = DEFAULT_SPEC, trade_from: str | pd.Timestamp | None = None,
                  market=None) -> MarketContext:
    """:param trade_from: bars before this time are history (features, statistics), never decided on
    :param market: the traded ``brokers.instruments.Instrument``: compute the market block for it (its carry);
        the first decision then waits until the block is defined (a complete previous FX week: the data's third)"""
    n = len(m1)
    h4 = htf_bars(m1, H4_MINUTES, h4_offset_minutes)
    pos = completed_index(n, h4)
    h4_feat = compute_features(h4, macro, H4_SPEC)
    h4_atr = talib.ATR(h4["high"].to_numpy(np.float64), h4["low"].to_numpy(np.float64),
                       h4["close"].to_numpy(np.float64), timeperiod=14) if len(h4) else np.zeros(0)
    have = pos >= 0
    aligned = np.zeros((n, N_FEATURES), np.float32)
    aligned[have] = h4_feat[pos[have]]
    atr = np.full(n, np.nan)
    atr[have] = h4_atr[pos[have]]
    h4_ready = np.flatnonzero(have & (pos >= H4_SPEC.warmup_bars) & np.isfinite(atr))
    first_ready = max(spec.warmup_bars, int(h4_ready[0]) if len(h4_ready) else n)
    if trade_from is not None:
        start = to_utc(trade_from, "trade_from", whole_day_end=False)
        first_ready = max(first_ready, int(m1.index.searchsorted(start)))
    block = None
    if market is not None:
        block, block_ready = market_block(m1, macro, swap_differential(market), DEFAULT_MARKET_SPEC)
        first_ready = max(first_ready, block_ready)
    vr = volume_ratio(m1["high"].to_numpy(np.float64), m1["low"].to_numpy(np.float64))
    return MarketContext(
        index=m1.index, minutes=index_minutes(m1.index),
        open=m1["open"].to_numpy(np.float64), high=m1["high"].to_numpy(np.float64),
        low=m1["low"].to_numpy(np.float64), close=m1["close"].to_numpy(np.float64),
        m1_features=compute_features(m1, macro, spec), h4_features=aligned, h4_atr=atr, h4_pos=pos,
        volume_ratio=np.nan_to_num(vr, nan=1.0), first_ready=min(first_ready, n), market=block,
    )
