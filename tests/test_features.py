"""Feature engine tests on real data: causality (prefix == full), TA-Lib agreement, macro lag, gaps."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import shutil
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import talib

from features.engine import (
    DEFAULT_SPEC,
    FEATURE_NAMES,
    FeatureSpec,
    compute_features,
    features_frame,
    raw_features,
    volume_substitute,
)
from feeds.macro import MACRO_COLUMNS, load_macro, macro_asof

logger = logging.getLogger(__name__)

F = {name: i for i, name in enumerate(FEATURE_NAMES)}
SLICE_BARS = 20_000


def _read_bars(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    idx = pd.to_datetime(df.pop("datetime"), format="ISO8601", utc=True)
    df.index = pd.DatetimeIndex(idx, name="datetime")
    return df.astype("float64")


def _to_h4(m1: pd.DataFrame) -> pd.DataFrame:
    agg = {
        "open": "first",
        "high": "max",
        "low": "min",
        "close": "last",
        "volume": "sum",
    }
    return (
        m1.resample("240min", label="left", closed="left")
        .agg(agg)
        .dropna(subset=["close"])
    )


@pytest.fixture(scope="module")
def year_m1(fx_dir: Path) -> pd.DataFrame:
    return _read_bars(fx_dir / "EURUSD_M1_2024.csv.gz")


@pytest.fixture(scope="module")
def macro(macro_dir: Path) -> pd.DataFrame:
    return load_macro(macro_dir)


@pytest.fixture(scope="module")
def m1_slice(year_m1: pd.DataFrame) -> pd.DataFrame:
    return year_m1.iloc[:SLICE_BARS]


def _cut_points(index: pd.DatetimeIndex, warmup: int, n_spread: int = 9) -> list[int]:
    """Just before/after warm-up, around the first weekend gap, evenly spread, and the last bar."""
    n = len(index)
    gaps = np.diff(index.to_numpy()) / np.timedelta64(1, "h")
    weekend = int(np.flatnonzero(gaps > 24)[0]) + 1  # first bar after the first weekend
    cuts = {
        warmup - 1,
        warmup,
        warmup + 1,
        weekend - 1,
        weekend,
        weekend + 1,
        weekend + 30,
        n - 1,
    }
    cuts.update(np.linspace(warmup + 2, n - 2, n_spread).astype(int).tolist())
    return sorted(c for c in cuts if 0 <= c < n)


def _assert_causal(bars: pd.DataFrame, macro: pd.DataFrame, spec: FeatureSpec) -> None:
    full = compute_features(bars, macro, spec)
    cuts = _cut_points(bars.index, spec.warmup_bars)
    assert len(cuts) >= 15
    for t in cuts:
        prefix = compute_features(bars.iloc[: t + 1], macro, spec)
        np.testing.assert_allclose(
            prefix, full[: t + 1], rtol=0, atol=1e-6, err_msg=f"bar {t}"
        )
        np.testing.assert_array_equal(
            prefix[t], full[t], err_msg=f"bar {t} not bit-identical"
        )


def test_causal_m1_real(m1_slice: pd.DataFrame, macro: pd.DataFrame) -> None:
    _assert_causal(m1_slice, macro, DEFAULT_SPEC)


def test_causal_h4_real(year_m1: pd.DataFrame, macro: pd.DataFrame) -> None:
    # A 20k-bar M1 slice gives only ~85 H4 bars (< warm-up), so H4 uses the whole year.
    h4 = _to_h4(year_m1)
    assert len(h4) > 1000
    _assert_causal(h4, macro, FeatureSpec.for_timeframe(240))


@pytest.mark.parametrize("spec", [DEFAULT_SPEC, FeatureSpec.for_timeframe(240)])
def test_warmup_is_tight(
    year_m1: pd.DataFrame, macro: pd.DataFrame, spec: FeatureSpec
) -> None:
    bars = year_m1.iloc[:5000] if spec.bar_minutes == 1 else _to_h4(year_m1)
    raw = raw_features(bars, macro, spec)
    w = spec.warmup_bars
    assert not np.isnan(raw[w:]).any()
    assert np.isnan(raw[w - 1]).any()
    out = compute_features(bars, macro, spec)
    assert np.all(
        out[~np.isfinite(np.nan_to_num(raw, nan=np.inf))] == 0.0
    )  # undefined -> 0


def test_transforms_match_talib(m1_slice: pd.DataFrame, macro: pd.DataFrame) -> None:
    f = compute_features(m1_slice, macro)
    h, lo, c = (m1_slice[k].to_numpy() for k in ("high", "low", "close"))
    rows = np.arange(DEFAULT_SPEC.warmup_bars, len(c), 997)
    np.testing.assert_allclose(
        f[rows, F["rsi"]] * 50 + 50, talib.RSI(c, 14)[rows], atol=1e-4
    )
    np.testing.assert_allclose(
        f[rows, F["adx"]] * 100, talib.ADX(h, lo, c, 14)[rows], atol=1e-4
    )
    cci = talib.CCI(h, lo, c, 20)[rows]
    np.testing.assert_allclose(
        f[rows, F["cci"]] * 200, np.clip(cci, -1000, 1000), atol=1e-3
    )
    atr = talib.ATR(h, lo, c, 14)
    hist = talib.MACD(c, 12, 26, 9)[2]
    np.testing.assert_allclose(
        f[rows, F["macd"]], (hist / atr)[rows], rtol=1e-5, atol=1e-6
    )
    log_atr = pd.Series(np.log(atr / c))
    z = (log_atr - log_atr.rolling(100).mean()) / log_atr.rolling(100).std(ddof=0)
    np.testing.assert_allclose(
        f[rows, F["atr"]], z.to_numpy()[rows], rtol=1e-5, atol=1e-5
    )
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)  # our window-exact width equals TA-Lib's
    width = pd.Series((upper - lower) / middle)
    zb = (width - width.rolling(100).mean()) / width.rolling(100).std(ddof=0)
    np.testing.assert_allclose(f[rows, F["bb_width"]], zb.to_numpy()[rows], rtol=1e-4, atol=1e-4)
    adx = talib.ADX(h, lo, c, 14)[rows]
    assert np.array_equal(f[rows, F["regime_trend"]] == 1, adx >= 25)
    assert np.array_equal(f[rows, F["regime_range"]] == 1, adx < 20)
    assert np.all(
        f[rows, F["regime_trend"] : F["regime_transition"] + 1].sum(axis=1) == 1
    )


def test_macro_publication_lag(macro: pd.DataFrame) -> None:
    times = pd.DatetimeIndex(
        [
            "2020-03-16T00:00Z",
            "2020-03-16T23:59Z",
            "2020-03-17T00:00Z",
            "2020-03-17T15:00Z",
            "1970-01-05T12:00Z",
        ]
    )
    got = macro_asof(times, macro)
    vix = got[:, MACRO_COLUMNS.index("vix")]
    np.testing.assert_array_equal(
        vix[:4], [57.83, 57.83, 82.69, 82.69]
    )  # 03-13 (Fri), then 03-16
    assert np.isnan(got[4]).all()  # before every series starts
    # Fed funds: the Sunday 2020-03-15 emergency cut shows in the effective rate of Monday 03-16 (0.25), which the
    # New York Fed published on Tuesday 03-17 at 9:00 New York (13:00 UTC, summer time): until then 1.10.
    ff = got[:, MACRO_COLUMNS.index("fed_funds")]
    assert macro.loc["2020-03-15", "fed_funds"] == 1.10 and macro.loc["2020-03-16", "fed_funds"] == 0.25
    np.testing.assert_array_equal(ff[:4], [1.10, 1.10, 1.10, 0.25])
    edge = macro_asof(pd.DatetimeIndex(["2020-03-17T12:59Z", "2020-03-17T13:00Z"]), macro)
    np.testing.assert_array_equal(edge[:, MACRO_COLUMNS.index("fed_funds")], [1.10, 0.25])

    bars = pd.DataFrame(
        {"open": 1.1, "high": 1.1, "low": 1.1, "close": 1.1, "volume": 0.0},
        index=times[:4],
    )
    f = compute_features(bars, macro)
    np.testing.assert_allclose(f[:, F["vix"]], (vix[:4] - 20) / 10, rtol=1e-6)
    np.testing.assert_allclose(f[:, F["fed_funds"]], ff[:4] / 5, rtol=1e-6)
    assert np.all(compute_features(bars, None)[:, F["vix"] :] == 0.0)


@functools.cache
def _us_holidays() -> frozenset[dt.date]:
    from pandas.tseries.holiday import USFederalHolidayCalendar

    return frozenset(USFederalHolidayCalendar().holidays("1950-01-01", "2030-12-31").date)


def _published_brute_force(day: dt.date, series: str) -> dt.datetime:
    """Publication time (UTC) of ``day``'s observation, by hand: the next UTC midnight for VIX and 10y-2y, the
    next US business day (no weekend, no federal holiday) at 9:00 New York for fed funds."""
    if series != "fed_funds":
        return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    holidays = _us_holidays()
    d = day + dt.timedelta(days=1)
    while d.weekday() >= 5 or d in holidays:
        d += dt.timedelta(days=1)
    return dt.datetime.combine(d, dt.time(9), tzinfo=ZoneInfo("America/New_York")).astimezone(dt.UTC)


@pytest.mark.parametrize("series", MACRO_COLUMNS)
def test_macro_values_are_the_last_published_on_real_bars(series: str, year_m1: pd.DataFrame,
                                                          macro: pd.DataFrame) -> None:
    """Causality of the macro columns on a real year of bars, against an independent brute force: every
    bar sees the newest observation published at or before its open, and never one published later (every 53rd
    bar, and every bar of the first hours after each weekend and holiday, where the rules bite)."""
    idx = year_m1.index
    gap = np.r_[True, np.diff(idx.asi8) > 3_600 * 10**9]
    near = np.flatnonzero(np.convolve(gap, np.ones(900, int))[: len(idx)] > 0)  # 15 h after each gap
    rows = np.union1d(np.arange(0, len(idx), 53), near)
    got = macro_asof(idx[rows], macro)[:, MACRO_COLUMNS.index(series)]
    obs = macro[series].dropna()
    published = [_published_brute_force(d.date(), series) for d in obs.index]
    k = 0
    for row, value in zip(rows, got, strict=True):
        t = idx[row].to_pydatetime()
        while k < len(published) and published[k] <= t:
            k += 1
        assert k > 0 and value == obs.iloc[k - 1], (series, idx[row], value, obs.index[k - 1])
        assert published[k - 1] <= t and (k == len(published) or published[k] > t)


def test_macro_missing_values_skipped(macro: pd.DataFrame) -> None:
    assert np.isnan(macro.loc["2020-01-20", "vix"])  # MLK day: FRED leaves it empty
    got = macro_asof(
        pd.DatetimeIndex(["2020-01-21T10:00Z", "2020-01-22T10:00Z"]), macro
    )
    vix = got[:, MACRO_COLUMNS.index("vix")]
    assert vix[0] == macro.loc["2020-01-17", "vix"]
    assert vix[1] == 12.85  # the 2020-01-21 value
    assert not np.isnan(macro.loc["2015":"2024"]).all(axis=1).any()


def test_load_macro_errors(tmp_path: Path, macro_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_macro(tmp_path / "nowhere")
    for name in ("VIXCLS.csv", "DFF.csv"):
        shutil.copy(macro_dir / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match="T10Y2Y.csv"):
        load_macro(tmp_path)


def test_full_year_finite_and_gaps(year_m1: pd.DataFrame, macro: pd.DataFrame) -> None:
    compute_features(year_m1.iloc[:1000], macro)  # warm imports / caches
    start = time.perf_counter()
    frame = features_frame(year_m1, macro)
    elapsed = time.perf_counter() - start
    logger.info("features for %d M1 bars in %.2f s", len(year_m1), elapsed)
    assert elapsed < 10.0
    f = frame.to_numpy()
    assert f.shape == (len(year_m1), 16) and f.dtype == np.float32
    assert list(frame.columns) == list(FEATURE_NAMES) and frame.index.equals(
        year_m1.index
    )
    assert np.isfinite(f).all()
    assert np.abs(f).max() <= 10.0
    core = f[DEFAULT_SPEC.warmup_bars :, : F["gap"]]
    assert (np.abs(core) < 5).mean() > 0.995  # roughly in [-5, 5]

    step = np.diff(year_m1.index.to_numpy()) / np.timedelta64(1, "m")
    gap = f[1:, F["gap"]]
    np.testing.assert_array_equal(gap > 0, step > 1)  # exactly the bars after a hole
    weekend = step > 24 * 60
    assert weekend.sum() >= 50
    assert np.all(gap[weekend] > 0.95)
    assert f[0, F["gap"]] == 0.0


def test_spec_manifest() -> None:
    assert len(FEATURE_NAMES) == 16 and FEATURE_NAMES[9] == "gap"
    d = json.loads(json.dumps(DEFAULT_SPEC.to_dict()))
    assert (
        d["feature_names"] == list(FEATURE_NAMES)
        and d["version"] == 2
        and d["bar_minutes"] == 1
        and d["macro_publication"]["fed_funds"] == {"zone": "America/New_York", "days_after": 1,
                                                    "business_days": True, "hour": 9}
    )
    assert (
        FeatureSpec(
            **{k: v for k, v in d.items() if k not in ("feature_names", "warmup_bars", "macro_publication")}
        )
        == DEFAULT_SPEC
    )
    h4 = FeatureSpec.for_timeframe(240)
    assert h4.bar_minutes == 240 and h4.warmup_bars == DEFAULT_SPEC.warmup_bars
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_SPEC.norm_window = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        FeatureSpec.for_timeframe(0)


def test_volume_substitute(m1_slice: pd.DataFrame) -> None:
    v = volume_substitute(m1_slice, window=20)
    assert v.index.equals(m1_slice.index)
    assert (
        v.iloc[:19].isna().all()
        and np.isfinite(v.iloc[19:]).all()
        and (v.iloc[19:] >= 0).all()
    )
    flat = pd.DataFrame(
        {"high": [1.0] * 30, "low": [1.0] * 30}, index=m1_slice.index[:30]
    )
    assert (volume_substitute(flat).iloc[19:] == 1.0).all()
