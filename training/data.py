"""Market contexts for training and evaluation periods, split at long data gaps (missing years)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from brokers.instruments import get_instrument
from features.context import MarketContext, build_context, history_start
from features.drift import feature_ranges
from feeds.loaders import load_bars
from feeds.macro import load_macro
from feeds.paths import fx_data_dir
from training.args import RunPlan

MAX_GAP = pd.Timedelta(days=7)


def segments(m1: pd.DataFrame, max_gap: pd.Timedelta = MAX_GAP) -> list[pd.DataFrame]:
    """Split bars where the data stop for longer than ``max_gap`` (e.g. a year with no file)."""
    cuts = [0, *(np.flatnonzero(np.diff(m1.index.asi8) > max_gap.value) + 1).tolist(), len(m1)]
    return [m1.iloc[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def period_contexts(symbol: str, start: str, end: str, data: str | Path | None = None,
                    h4_offset_minutes: int = 0, history: bool = True, market: bool = False) -> list[MarketContext]:
    """One context per contiguous segment of ``symbol`` bars in [start, end]; segments too short to
    finish the feature warm-up are dropped.

    With ``history`` the bars of the weeks before ``start`` are loaded too (``features.context.HISTORY_DAYS``)
    and serve only as feature history, so decisions begin at ``start`` rather than a month later; where the
    data have no bars before ``start`` the warm-up is taken from the period, as without it. ``market``: with the
    market block (``features.market``) for ``symbol``."""
    first = history_start(start) if history else start
    m1 = load_bars(Path(data) if data else fx_data_dir(), symbol=symbol, start=first, end=end)
    macro = load_macro()
    inst = get_instrument(symbol) if market else None
    out = [build_context(part, macro, h4_offset_minutes, trade_from=start, market=inst) for part in segments(m1)]
    out = [c for c in out if len(c) - c.first_ready > 1440]
    if not out:
        raise ValueError(f"{symbol} {start}..{end}: no segment long enough after the feature warm-up")
    return out


def context_feature_ranges(contexts: list[MarketContext]) -> dict:
    """The training period's feature ranges for a checkpoint's manifest (``features.drift``): the bars after each
    context's warm-up."""
    return feature_ranges([c.m1_features[c.first_ready:] for c in contexts],
                          [c.h4_features[c.first_ready:] for c in contexts])


class RunContexts(NamedTuple):
    """What a training run reads: its training and validation contexts and the training data's feature ranges."""

    train: list[MarketContext]
    val: list[MarketContext]
    ranges: dict


def run_contexts(args: RunPlan, symbol: str, data: str = "", market: bool = False) -> RunContexts:
    """The contexts of a run's periods (``args``' train and validation dates), one helper for every trainer;
    ``market``: with the market block."""
    train = period_contexts(symbol, args.train_start, args.train_end, data or None, market=market)
    val = period_contexts(symbol, args.val_start, args.val_end, data or None, market=market)
    return RunContexts(train, val, context_feature_ranges(train))  # ranges: drift monitoring in backtests and live
