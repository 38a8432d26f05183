"""The four-agent matrices (features.matrices) on real EURUSD bars: shapes and columns, causality (prefix ==
whole series), the incremental driver bit-identical to the precomputed one at every M1 bar, macro publication."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import matrices as mx
from features.engine import FEATURE_NAMES, FeatureSpec
from features.matrices import (
    M5_SPEC,
    M30_SPEC,
    MACRO_CHANGE_COLUMNS,
    REGIME_COLUMNS,
    STRUCTURE_COLUMNS,
    TACTICAL_COLUMNS,
    IncrementalMatrices,
    MatrixSpec,
    build_matrices,
)
from feeds.loaders import load_bars
from feeds.macro import MACRO_COLUMNS, PUBLICATION, MacroTable, load_macro, published_at

NS_DAY = 86_400 * 10**9


@pytest.fixture(scope="module")
def m1(fx_dir: Path) -> pd.DataFrame:
    return load_bars(fx_dir, symbol="EURUSD", start="2024-01-02", end="2024-02-16")  # 6 weeks, ~1,650 M30 bars


@pytest.fixture(scope="module")
def macro_frame(macro_dir: Path) -> pd.DataFrame:
    return load_macro(macro_dir)


@pytest.fixture(scope="module")
def macro(macro_frame: pd.DataFrame) -> MacroTable:
    return MacroTable.from_frame(macro_frame)


@pytest.fixture(scope="module")
def full(m1: pd.DataFrame, macro: MacroTable) -> mx.MarketMatrices:
    return build_matrices(m1, macro)


def _arrays(m1: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return (m1.index.as_unit("ns").asi8, *(m1[k].to_numpy() for k in ("open", "high", "low", "close")))


def test_shapes_columns_and_masks(full: mx.MarketMatrices, m1: pd.DataFrame) -> None:
    assert TACTICAL_COLUMNS == ("returns", "volatility", "rsi", "macd", "atr", "bb_width", "gap")
    assert STRUCTURE_COLUMNS == ("price_norm", "returns", "volatility", "rsi", "macd", "adx", "cci", "gap")
    assert REGIME_COLUMNS == (*FEATURE_NAMES, "vix_change", "fed_funds_change", "yield_curve_change")
    assert set(TACTICAL_COLUMNS) | set(STRUCTURE_COLUMNS) <= set(FEATURE_NAMES)
    assert len(full) == len(m1)
    i = len(m1) - 1
    m = full.at(i)
    assert m.tactical.shape == (60, 7) and m.structure.shape == (48, 8) and m.regime.shape == (96, 19)
    assert m.tactical_mask.shape == (60,) and m.regime_mask.dtype == bool
    assert all(a.dtype == np.float32 for a in (m.tactical, m.structure, m.regime))
    assert m.tactical.base is not None and not m.tactical.flags.writeable  # a read-only view, not a copy
    assert m.tactical_mask.all() and m.structure_mask.all() and m.regime_mask.all()
    assert np.abs(m.regime).max() <= FeatureSpec().clip
    # nothing complete at the first bar: all zeros, all masked
    first = full.at(0)
    assert not first.tactical.any() and not first.tactical_mask.any() and not first.regime_mask.any()
    # rows inside the engine warm-up are zero and masked; ready once every row is real
    w = M30_SPEC.warmup_bars
    pos = w + 10
    reg, mask = full.regime.window(pos)
    assert mask.sum() == 11 and not reg[~mask].any() and reg[mask].any()
    assert not full.regime.ready(w + 94) and full.regime.ready(w + 95)
    fr = full.first_ready
    assert full.ready_at(fr) and not full.ready_at(fr - 1)
    assert full.m30_pos[fr] == w + 95 or full.m5_pos[fr] == M5_SPEC.warmup_bars + 59
    # the gap column: the first M5 bar after a weekend says so
    gaps = np.diff(full.m5_time) / 60e9
    after = int(np.flatnonzero(gaps > 24 * 60)[0]) + 1
    tgap = TACTICAL_COLUMNS.index("gap")
    assert full.tactical.window(after)[0][-1, tgap] > 0.95 and full.tactical.window(after - 1)[0][-1, tgap] == 0.0
    # a minibatch gather equals the views
    b, bm = full.tactical.batch(np.array([-1, 5, after]))
    np.testing.assert_array_equal(b[2], full.tactical.window(after)[0])
    assert b.shape == (3, 60, 7) and not bm[0].any()


def test_one_new_flag_per_completed_bar(full: mx.MarketMatrices) -> None:
    assert full.new_m5.sum() == full.tactical.n_bars and full.new_m30.sum() == full.regime.n_bars
    assert np.all(full.new_m5[full.new_m30])  # aligned bins: an M30 completion is an M5 completion


def _cuts(full: mx.MarketMatrices) -> list[int]:
    n = len(full)
    done30 = np.flatnonzero(full.new_m30)
    done5 = np.flatnonzero(np.diff(full.m5_pos) > 0)
    cuts = {0, 1, full.first_ready - 1, full.first_ready, n - 1, int(done30[300]) - 1, int(done30[300]),
            int(done30[300]) + 1, int(done5[5000])}
    cuts.update(np.linspace(full.first_ready, n - 2, 6).astype(int).tolist())
    return sorted(c for c in cuts if 0 <= c < n)


def test_causal_prefix_equals_whole_series(m1: pd.DataFrame, macro: MacroTable, full: mx.MarketMatrices) -> None:
    for t in _cuts(full):
        prefix = build_matrices(m1.iloc[:t + 1], macro)
        for name, a, b in zip(mx.Matrices._fields, prefix.at(t), full.at(t), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"bar {t}: {name}")


def test_incremental_equals_precomputed_at_every_bar(m1: pd.DataFrame, macro: MacroTable,
                                                     full: mx.MarketMatrices) -> None:
    inc = IncrementalMatrices(macro)
    t, o, h, lo, c = _arrays(m1)
    fields = mx.Matrices._fields
    for i in range(len(m1)):
        new5, new30 = inc.append(int(t[i]), float(o[i]), float(h[i]), float(lo[i]), float(c[i]))
        assert (new5, new30) == (full.new_m5[i], full.new_m30[i])
        assert inc.m5_count == full.m5_pos[i] + 1 and inc.m30_count == full.m30_pos[i] + 1
        got, want = inc.matrices(), full.at(i)
        for k in range(6):
            if not np.array_equal(got[k], want[k]):
                raise AssertionError(f"bar {i} ({m1.index[i]}): {fields[k]} differs")
        assert inc.ready == full.ready_at(i)
    assert inc.m30_count > 2 * mx.M30_WINDOW  # the bounded bar buffers were compacted
    assert len(inc._m30.time) == mx.M30_WINDOW + inc._BLOCK and len(inc._tactical.rows) == 4 * 60


def test_blocks_equal_single_bars(m1: pd.DataFrame, macro: MacroTable, full: mx.MarketMatrices) -> None:
    inc = IncrementalMatrices(macro)
    t, o, h, lo, c = _arrays(m1)
    rng = np.random.default_rng(1)
    i = 0
    while i < len(m1):
        k = min(int(rng.integers(1, 2500)), len(m1) - i)
        if k < 3:
            inc.append(int(t[i]), float(o[i]), float(h[i]), float(lo[i]), float(c[i]))
            k = 1
        else:
            inc.extend(t[i:i + k], o[i:i + k], h[i:i + k], lo[i:i + k], c[i:i + k])
        i += k
        for a, b in zip(inc.matrices(), full.at(i - 1), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"after bar {i - 1}")
    with pytest.raises(ValueError, match="forward in time"):
        inc.append(int(t[-1]), 1.1, 1.1, 1.1, 1.1)
    with pytest.raises(ValueError, match="bad bar"):
        inc.append(int(t[-1]) + 60 * 10**9, 1.1, 1.0, 1.1, 1.1)


def test_a_short_window_would_not_reproduce(m1: pd.DataFrame, macro: MacroTable, full: mx.MarketMatrices,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The windows matter: with 150 M30 bars the exponential start of Wilder's indicators still shows."""
    monkeypatch.setattr(mx, "M30_WINDOW", 150)
    inc = IncrementalMatrices(macro)
    t, o, h, lo, c = _arrays(m1)
    end = int(np.flatnonzero(full.new_m30)[700]) + 1
    inc.extend(t[:end], o[:end], h[:end], lo[:end], c[:end])
    assert not np.array_equal(inc.matrices().regime, full.at(end - 1).regime)


def test_macro_columns_use_only_published_values(m1: pd.DataFrame, macro_frame: pd.DataFrame,
                                                 full: mx.MarketMatrices) -> None:
    """The regime macro columns against a brute force from the publication table, and unchanged when every value
    published after the bar is scrambled."""
    reg = full.regime
    spec = MatrixSpec()
    idx = {c: REGIME_COLUMNS.index(c) for c in (*MACRO_COLUMNS, *MACRO_CHANGE_COLUMNS)}
    obs = {c: macro_frame[c].dropna() for c in MACRO_COLUMNS}
    pub = {c: published_at(obs[c].index.to_numpy().astype("datetime64[D]"), PUBLICATION[c]) for c in MACRO_COLUMNS}

    def last_published(c: str, t: int) -> float:
        k = int(np.searchsorted(pub[c], t, side="right")) - 1
        return float(obs[c].iloc[k])

    scales = {"vix": (20.0, 10.0), "fed_funds": (0.0, 5.0), "yield_curve": (0.0, 2.0)}
    days = {"vix": spec.vix_change_days, "fed_funds": spec.rates_change_days, "yield_curve": spec.rates_change_days}
    cscale = {"vix": spec.vix_change_scale, "fed_funds": spec.rates_change_scale,
              "yield_curve": spec.rates_change_scale}
    for r in range(M30_SPEC.warmup_bars, reg.n_bars, 37):
        t = int(full.m30_time[r])
        row = reg.rows[r + reg.length]
        for c, chg in zip(MACRO_COLUMNS, MACRO_CHANGE_COLUMNS, strict=True):
            center, scale = scales[c]
            assert row[idx[c]] == np.float32((last_published(c, t) - center) / scale), (c, r)
            want = (last_published(c, t) - last_published(c, t - days[c] * NS_DAY)) / cscale[c]
            assert row[idx[chg]] == np.float32(want), (chg, r)
    # scramble every observation published after a bar's open time: the matrices at that bar do not move
    rng = np.random.default_rng(0)
    for i in (full.first_ready, len(m1) // 2, len(m1) - 1):
        t_i = int(m1.index.as_unit("ns").asi8[i])
        scrambled = macro_frame.copy()
        for c in MACRO_COLUMNS:
            days_c = scrambled.index.to_numpy().astype("datetime64[D]")
            later = published_at(days_c, PUBLICATION[c]) > t_i
            scrambled.loc[later, c] = rng.uniform(-50, 50, later.sum())
        other = build_matrices(m1.iloc[:i + 1], scrambled)
        for a, b in zip(other.at(i), full.at(i), strict=True):
            np.testing.assert_array_equal(a, b)
        # and the scrambling does reach bars after it (the test can fail)
        if i + 3000 < len(m1):
            later_m = build_matrices(m1.iloc[:i + 3000], scrambled)
            assert not np.array_equal(later_m.at(i + 2999).regime, full.at(i + 2999).regime)


def test_spec_manifest() -> None:
    d = MatrixSpec().to_dict()
    assert d["regime_columns"] == list(REGIME_COLUMNS) and d["m30_feature_spec"]["bar_minutes"] == 30
    assert d["m5_feature_spec"]["bar_minutes"] == 5 and d["tactical_rows"] == 60
    with pytest.raises(ValueError):
        MatrixSpec(regime_rows=0)
