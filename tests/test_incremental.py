"""The incremental feature driver against the precomputed context: the same engine, bit for bit, on real bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.context import H4_SPEC, HISTORY_DAYS, build_context, history_start
from features.engine import raw_features
from features.incremental import M1_WINDOW, IncrementalContext
from feeds.loaders import load_bars
from feeds.macro import MacroTable, load_macro
from feeds.resample import htf_bars

START = pd.Timestamp("2024-01-15", tz="UTC")


@pytest.fixture(scope="module")
def bars(fx_dir: Path) -> pd.DataFrame:
    return load_bars(fx_dir, symbol="EURUSD", start="2023-12-04", end="2024-02-02")


@pytest.fixture(scope="module")
def macro(macro_dir: Path) -> MacroTable:
    return MacroTable.from_frame(load_macro(macro_dir))


def _feed(ctx: IncrementalContext, m1: pd.DataFrame, rng: np.random.Generator, single: slice) -> None:
    """Backfill-sized blocks of random length, and one stretch bar by bar (the live path)."""
    t = m1.index.as_unit("ns").asi8
    o, h, lo, c = (m1[k].to_numpy() for k in ("open", "high", "low", "close"))
    i = 0
    while i < len(m1):
        if single.start <= i < single.stop:
            ctx.append(int(t[i]), float(o[i]), float(h[i]), float(lo[i]), float(c[i]))
            i += 1
            continue
        k = min(int(rng.integers(1, 700)), len(m1) - i, max(1, single.start - i) if i < single.start else len(m1))
        ctx.extend(t[i:i + k], o[i:i + k], h[i:i + k], lo[i:i + k], c[i:i + k])
        i += k


@pytest.mark.parametrize("capacity", [4 * M1_WINDOW, M1_WINDOW])  # the small one compacts every M1_WINDOW bars
def test_incremental_equals_precomputed_at_every_bar(bars: pd.DataFrame, macro: MacroTable, capacity: int) -> None:
    full = build_context(bars, macro, trade_from=START)
    ctx = IncrementalContext(macro, trade_from=START, capacity=capacity)
    n = len(bars)
    rng = np.random.default_rng(capacity)
    held_from = n - capacity
    m1 = np.zeros((n, 16), np.float32)
    h4, atr, pos, vol = np.zeros((n, 16), np.float32), np.zeros(n), np.zeros(n, np.int64), np.zeros(n)
    # read every bar back as it arrives (a live strategy reads the newest), in blocks for speed
    t = bars.index.as_unit("ns").asi8
    cols = [bars[k].to_numpy() for k in ("open", "high", "low", "close")]
    i = 0
    single = slice(n - 3000, n - 1000)  # two thousand bars one at a time
    while i < n:
        k = 1 if single.start <= i < single.stop else min(int(rng.integers(1, 700)), n - i)
        ctx.extend(t[i:i + k], *(a[i:i + k] for a in cols))
        for j in range(i, i + k):
            m1[j], h4[j], atr[j] = ctx.m1_features[j], ctx.h4_features[j], ctx.h4_atr[j]
            pos[j], vol[j] = ctx.h4_pos[j], ctx.volume_ratio[j]
        i += k
    assert len(ctx) == n and ctx.first_ready == full.first_ready > 40_000  # the H4 warm-up, then START
    np.testing.assert_array_equal(m1, full.m1_features)
    np.testing.assert_array_equal(h4, full.h4_features)
    np.testing.assert_array_equal(atr, full.h4_atr)
    np.testing.assert_array_equal(pos, full.h4_pos)
    np.testing.assert_array_equal(vol, full.volume_ratio)
    assert ctx.close[n - 1] == full.close[n - 1] and ctx.minutes[n - 1] == full.minutes[n - 1]
    with pytest.raises(IndexError, match="not held"):
        ctx.m1_features[held_from - 2 * capacity]
    assert ctx.decides_at(n - 1) and not full.decides_at(n - 1)  # live has no last bar to keep free


def test_h4_bars_follow_the_one_completion_rule_around_holes(macro: MacroTable) -> None:
    """A bin whose last minutes are missing completes at the first bar after it; two bins completing at one bar
    give only the later (feeds.resample.htf_bars); the incremental driver counts the same H4 bars."""
    idx = pd.date_range("2024-03-04 00:00", periods=60 * 24 * 4, freq="1min", tz="UTC")
    keep = np.ones(len(idx), bool)
    keep[(idx >= "2024-03-04 03:50") & (idx < "2024-03-04 07:59")] = False  # 03:xx bin ends in a hole; 04:00 bin
    keep[(idx >= "2024-03-05 11:00") & (idx < "2024-03-05 12:30")] = False  # a hole across an H4 boundary
    idx = idx[keep]
    price = 1.1 + 0.0001 * np.sin(np.arange(len(idx)) / 50.0)
    m1 = pd.DataFrame({"open": price, "high": price + 2e-5, "low": price - 2e-5, "close": price, "volume": 0.0},
                      index=idx)
    full = build_context(m1, macro)
    ctx = IncrementalContext(macro)
    _feed(ctx, m1, np.random.default_rng(0), slice(0, len(m1)))
    pos = np.array([ctx.h4_pos[i] for i in range(len(m1))])
    np.testing.assert_array_equal(pos, full.h4_pos)
    assert pos.max() + 1 == len(htf_bars(m1, 240)) < len(pd.unique(idx.floor("4h")))  # one bin was dropped


def test_bad_bars_fail_loudly(macro: MacroTable) -> None:
    ctx = IncrementalContext(macro)
    ctx.append(pd.Timestamp("2024-03-04 10:00", tz="UTC"), 1.1, 1.1, 1.1, 1.1)
    with pytest.raises(ValueError, match="forward in time"):
        ctx.append(pd.Timestamp("2024-03-04 10:00", tz="UTC"), 1.1, 1.1, 1.1, 1.1)
    with pytest.raises(ValueError, match="bad bar"):
        ctx.append(pd.Timestamp("2024-03-04 10:01", tz="UTC"), float("nan"), 1.1, 1.1, 1.1)


def test_history_days_keep_a_later_start_within_1e_6(fx_dir: Path, macro: MacroTable) -> None:
    """The exponential memory of Wilder's ATR/ADX/RSI depends on where the history starts: with HISTORY_DAYS of
    history the H4 features over a month match those from half a year of history within 1e-6 (42 days, the
    earlier default, left 2e-4 in the ATR z-score)."""
    period = pd.Timestamp("2024-07-01", tz="UTC")
    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-01-02", end="2024-07-31")
    ref_h4 = htf_bars(m1, 240)
    ref = raw_features(ref_h4, macro, H4_SPEC)
    short = htf_bars(m1[m1.index >= history_start(period)], 240)
    got = raw_features(short, macro, H4_SPEC)
    mine, theirs = got[short.index >= period], ref[ref_h4.index >= period]
    assert len(mine) == len(theirs) > 100 and HISTORY_DAYS >= 70
    assert np.nanmax(np.abs(mine - theirs)) < 1e-6


def test_a_backtest_on_the_incremental_driver_trades_as_the_precomputed_one(fx_dir: Path, macro_dir: Path) -> None:
    """The live path (features computed bar by bar in the strategy) against the fast path, through Backtrader: the
    seeded random agent, sized by the validator from the H4 ATR, makes the same fills and equity."""
    from strategies.backtest import BacktestConfig, run_backtest

    start = pd.Timestamp("2024-03-04", tz="UTC")
    m1 = load_bars(fx_dir, symbol="EURUSD", start=history_start(start), end="2024-03-13")
    runs = [run_backtest("random", m1, BacktestConfig(symbol="EURUSD", trade_from=start, precompute_features=pre,
                                                      strategy_params={"every": 7, "seed": 3}))
            for pre in (True, False)]
    fast, live = runs
    assert isinstance(live.strategy_obj.ctx, IncrementalContext) and len(fast.fills) > 100
    assert live.fills == fast.fills
    np.testing.assert_array_equal(live.equity, fast.equity)
    assert live.cmdp["blocked_actions"] + live.cmdp["shrunk_actions"] == \
        fast.cmdp["blocked_actions"] + fast.cmdp["shrunk_actions"]
