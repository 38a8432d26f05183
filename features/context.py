"""Everything a decision needs per M1 bar, computed once from the bar history (causal by construction).

Built by the backtest and by the training envs from the same function, so both see identical numbers:
M1 features, the features of the newest *complete* H4 bar (``feeds.resample`` rule), the H4 ATR that the
pre-trade validator uses, and the range-based volume substitute. Indexed by M1 bar position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import talib

from features.engine import DEFAULT_SPEC, N_FEATURES, FeatureSpec, compute_features, volume_substitute
from feeds.resample import completed_index, htf_bars, index_minutes

H4_MINUTES = 240
H4_SPEC = FeatureSpec.for_timeframe(H4_MINUTES)


@dataclass(frozen=True)
class MarketContext:
    """Per-M1-bar arrays (length n). ``first_ready`` is the first bar where every input is defined."""

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

    def __len__(self) -> int:
        return len(self.minutes)


def build_context(m1: pd.DataFrame, macro: pd.DataFrame | None, h4_offset_minutes: int = 0,
                  spec: FeatureSpec = DEFAULT_SPEC) -> MarketContext:
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
    vr = volume_substitute(m1).to_numpy(np.float64)
    return MarketContext(
        index=m1.index, minutes=index_minutes(m1.index),
        open=m1["open"].to_numpy(np.float64), high=m1["high"].to_numpy(np.float64),
        low=m1["low"].to_numpy(np.float64), close=m1["close"].to_numpy(np.float64),
        m1_features=compute_features(m1, macro, spec), h4_features=aligned, h4_atr=atr, h4_pos=pos,
        volume_ratio=np.nan_to_num(vr, nan=1.0), first_ready=min(first_ready, n),
    )
