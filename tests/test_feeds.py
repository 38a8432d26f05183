"""Tests for feeds.validate, feeds.gaps and feeds.loaders: bad data must fail loudly, clocks must be exact."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feeds.errors import DataError
from feeds.gaps import GapReport, find_gaps
from feeds.loaders import load_bars
from feeds.validate import validate_bars

HEADER = "datetime,open,high,low,close,volume"
GOOD = [
    "2024-01-02T00:00:00Z,1.1,1.2,1.0,1.1,0",
    "2024-01-02T00:01:00Z,1.1,1.2,1.0,1.1,0",
    "2024-01-02T00:02:00Z,1.1,1.2,1.0,1.1,0",
    "2024-01-02T00:03:00Z,1.1,1.2,1.0,1.1,0",
    "2024-01-02T00:04:00Z,1.1,1.2,1.0,1.1,0",
]


def _write_csv(
    tmp_path: Path,
    rows: list[str],
    header: str = HEADER,
    name: str = "EURUSD_M1_2024.csv",
) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _with_row(i: int, row: str) -> list[str]:
    rows = list(GOOD)
    rows[i] = row
    return rows


# --------------------------------------------------------------------------- validation rules

MALFORMED = {
    "nan_price": (
        _with_row(2, "2024-01-02T00:02:00Z,nan,1.2,1.0,1.1,0"),
        "2024-01-02 00:02:00",
        "not finite",
    ),
    "inf_price": (
        _with_row(2, "2024-01-02T00:02:00Z,1.1,inf,1.0,1.1,0"),
        "2024-01-02 00:02:00",
        "not finite",
    ),
    "text_price": (
        _with_row(3, "2024-01-02T00:03:00Z,1.1,1.2,abc,1.1,0"),
        "2024-01-02 00:03:00",
        "not finite",
    ),
    "non_positive": (
        _with_row(2, "2024-01-02T00:02:00Z,1.1,1.2,0,1.1,0"),
        "2024-01-02 00:02:00",
        "non-positive low",
    ),
    "negative": (
        _with_row(1, "2024-01-02T00:01:00Z,-1.1,1.2,1.0,1.1,0"),
        "2024-01-02 00:01:00",
        "non-positive open",
    ),
    "high_lt_low": (
        _with_row(2, "2024-01-02T00:02:00Z,1.1,1.0,1.2,1.1,0"),
        "2024-01-02 00:02:00",
        "high < low",
    ),
    "open_outside": (
        _with_row(3, "2024-01-02T00:03:00Z,1.3,1.2,1.0,1.1,0"),
        "2024-01-02 00:03:00",
        "open 1.3 outside",
    ),
    "close_outside": (
        _with_row(4, "2024-01-02T00:04:00Z,1.1,1.2,1.0,0.9,0"),
        "2024-01-02 00:04:00",
        "close 0.9 outside",
    ),
    "unsorted": (
        [GOOD[0], GOOD[1], GOOD[3], GOOD[2], GOOD[4]],
        "2024-01-02 00:02:00",
        "not sorted",
    ),
    "duplicate": (
        [GOOD[0], GOOD[1], GOOD[2], GOOD[2], GOOD[4]],
        "2024-01-02 00:02:00",
        "duplicate timestamp",
    ),
    "naive_stamp": (
        _with_row(2, "2024-01-02T00:02:00,1.1,1.2,1.0,1.1,0"),
        "2024-01-02T00:02:00",
        "not marked UTC",
    ),
    "non_utc_stamp": (
        _with_row(2, "2024-01-02T00:02:00+02:00,1.1,1.2,1.0,1.1,0"),
        "2024-01-02T00:02:00+02:00",
        "not marked UTC",
    ),
    "bad_stamp": (
        _with_row(2, "2024-13-02T00:02:00Z,1.1,1.2,1.0,1.1,0"),
        "2024-13-02T00:02:00Z",
        "unparseable",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_names_file_and_row(tmp_path: Path, case: str) -> None:
    rows, stamp, reason = MALFORMED[case]
    path = _write_csv(tmp_path, rows)
    with pytest.raises(DataError) as err:
        load_bars(path)
    msg = str(err.value)
    assert str(path) in msg
    assert stamp in msg
    assert reason in msg
    assert "\n" not in msg


def test_missing_column_file(tmp_path: Path) -> None:
    rows = [",".join(r.split(",")[:5]) for r in GOOD]
    path = _write_csv(tmp_path, rows, header="datetime,open,high,low,close")
    with pytest.raises(DataError, match="missing columns.*volume") as err:
        load_bars(path)
    assert str(path) in str(err.value)


def _frame(index: pd.DatetimeIndex) -> pd.DataFrame:
    n = len(index)
    return pd.DataFrame(
        {
            "open": [1.1] * n,
            "high": [1.2] * n,
            "low": [1.0] * n,
            "close": [1.1] * n,
            "volume": [0.0] * n,
        },
        index=pd.DatetimeIndex(index, name="datetime"),
    )


def test_validate_index_rules() -> None:
    naive = pd.date_range("2024-01-02", periods=3, freq="min")
    with pytest.raises(DataError, match=r"src\.csv: index is timezone-naive"):
        validate_bars(_frame(naive), "src.csv")
    with pytest.raises(DataError, match="timezone is Europe/London"):
        validate_bars(_frame(naive.tz_localize("Europe/London")), "src.csv")
    with pytest.raises(DataError, match="missing columns"):
        validate_bars(_frame(naive.tz_localize("UTC")).drop(columns="high"), "src.csv")
    validate_bars(_frame(naive.tz_localize("UTC")), "src.csv")


def test_validate_reports_first_bad_row() -> None:
    df = _frame(pd.date_range("2024-01-02", periods=6, freq="min", tz="UTC"))
    df.iloc[4, df.columns.get_loc("high")] = 0.5  # later: high < low
    df.iloc[2, df.columns.get_loc("close")] = 1.5  # earlier: close outside range
    with pytest.raises(
        DataError, match=r"row 2 at 2024-01-02 00:02:00\+00:00: close 1.5 outside"
    ):
        validate_bars(df, "x")


def test_validate_fast_on_a_year() -> None:
    df = _frame(pd.date_range("2024-01-01", periods=400_000, freq="min", tz="UTC"))
    t = time.perf_counter()
    validate_bars(df, "big")
    assert time.perf_counter() - t < 0.5


# --------------------------------------------------------------------------- formats and clocks


def test_our_csv_roundtrip(tmp_path: Path) -> None:
    df = load_bars(_write_csv(tmp_path, GOOD))
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dt == np.float64 for dt in df.dtypes)
    assert df.index.name == "datetime"
    assert str(df.index.tz) == "UTC"
    assert df.index[0] == pd.Timestamp("2024-01-02 00:00", tz="UTC")
    assert df.attrs == {"symbol": "EURUSD", "source": "EURUSD_M1_2024.csv"}


def _histdata(
    tmp_path: Path, rows: list[str], name: str = "DAT_ASCII_EURUSD_M1_2017.csv"
) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return path


def test_histdata_new_york_clock(tmp_path: Path) -> None:
    path = _histdata(
        tmp_path,
        [
            "20170103 120000;1.05;1.06;1.04;1.05;0",
            "20170703 120000;1.14;1.15;1.13;1.14;0",
        ],
    )
    df = load_bars(path)  # 2017 -> America/New_York inferred
    assert list(df.index) == [
        pd.Timestamp("2017-01-03 17:00", tz="UTC"),  # EST, winter
        pd.Timestamp("2017-07-03 16:00", tz="UTC"),  # EDT, summer
    ]
    assert df.attrs["symbol"] == "EURUSD"
    assert df["close"].tolist() == [1.05, 1.14]


def test_histdata_eet7_clock(tmp_path: Path) -> None:
    path = _histdata(
        tmp_path,
        [
            "20190103 120000;1.05;1.06;1.04;1.05;0",
            "20190703 120000;1.14;1.15;1.13;1.14;0",
        ],
        name="DAT_ASCII_EURUSD_M1_2019.csv",
    )
    expected = [
        pd.Timestamp("2019-01-03 17:00", tz="UTC"),
        pd.Timestamp("2019-07-03 16:00", tz="UTC"),
    ]
    assert (
        list(load_bars(path).index) == expected
    )  # 2019 -> EET-7 inferred: +5h winter, +4h summer
    assert list(load_bars(path, clock="EET-7").index) == expected
    ny = load_bars(path, clock="America/New_York")
    assert ny.index[0] == pd.Timestamp("2019-01-03 17:00", tz="UTC")


def test_histdata_clock_mismatch_week(tmp_path: Path) -> None:
    """Mid-March: US is on DST, EU is not, so the two rules differ by one hour."""
    path = _histdata(
        tmp_path,
        ["20190315 120000;1.1;1.2;1.0;1.1;0"],
        name="DAT_ASCII_EURUSD_M1_2019.csv",
    )
    assert load_bars(path, clock="EET-7").index[0] == pd.Timestamp(
        "2019-03-15 17:00", tz="UTC"
    )
    assert load_bars(path, clock="America/New_York").index[0] == pd.Timestamp(
        "2019-03-15 16:00", tz="UTC"
    )


def test_histdata_zip_and_duplicates(tmp_path: Path) -> None:
    rows = [
        "20191028 000000;1.1;1.2;1.0;1.1;0",
        "20191028 000100;1.1;1.2;1.0;1.1;0",
        "20191028 000000;1.1;1.2;1.0;1.1;0",  # exact repeat: dropped
    ]
    path = tmp_path / "HISTDATA_COM_ASCII_EURUSD_M1_2019.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("DAT_ASCII_EURUSD_M1_2019.csv", "\n".join(rows) + "\n")
    df = load_bars(path)
    assert len(df) == 2
    assert df.index[0] == pd.Timestamp("2019-10-28 05:00", tz="UTC")

    rows[2] = "20191028 000000;1.1;1.2;1.0;1.15;0"  # same stamp, other values
    bad = _histdata(tmp_path, rows, name="DAT_ASCII_EURUSD_M1_2019.csv")
    with pytest.raises(
        DataError, match="20191028 000000: duplicate timestamp with different values"
    ):
        load_bars(bad)


MT5_HEADER = (
    "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"
)


def test_mt5_server_offset(tmp_path: Path) -> None:
    path = tmp_path / "EURUSD_M1_202401020000_202401020001.csv"
    rows = [
        MT5_HEADER,
        "2024.01.02\t00:00:00\t1.10\t1.20\t1.00\t1.10\t17\t0\t2",
        "2024.01.02\t00:01:00\t1.10\t1.20\t1.00\t1.15\t23\t0\t2",
    ]
    path.write_text("\n".join(rows) + "\n")
    df = load_bars(path, server_utc_offset_hours=2)
    assert df.index[0] == pd.Timestamp("2024-01-01 22:00", tz="UTC")
    assert df["volume"].tolist() == [17.0, 23.0]
    assert df.attrs["symbol"] == "EURUSD"
    with pytest.raises(DataError, match="server_utc_offset_hours"):
        load_bars(path)


def test_parquet(tmp_path: Path) -> None:
    idx = pd.date_range("2024-01-02", periods=3, freq="min")
    raw = _frame(idx).drop(columns="volume")
    naive = tmp_path / "EURUSD_M1.parquet"
    raw.to_parquet(naive)
    with pytest.raises(DataError, match="timezone-naive.*clock='UTC'"):
        load_bars(naive)
    df = load_bars(naive, clock="UTC")
    assert df.index[0] == pd.Timestamp("2024-01-02 00:00", tz="UTC")
    assert df["volume"].tolist() == [0.0, 0.0, 0.0]

    aware = tmp_path / "GBPUSD_M1.parquet"
    raw.set_axis(idx.tz_localize("Europe/Athens")).reset_index(
        names="datetime"
    ).to_parquet(aware)
    df = load_bars(aware)
    assert df.index[0] == pd.Timestamp("2024-01-01 22:00", tz="UTC")
    assert df.attrs["symbol"] == "GBPUSD"


def test_unknown_format_and_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "EURUSD_x.csv"
    path.write_text("hello world\n")
    with pytest.raises(DataError, match="unknown bar format"):
        load_bars(path)
    gz = tmp_path / "EURUSD_M1_2024.csv.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="unreadable") as err:
        load_bars(gz)
    assert str(gz) in str(err.value)
    with pytest.raises(DataError, match="no such file"):
        load_bars(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- folders and ranges


def test_start_end_whole_day(tmp_path: Path) -> None:
    rows = [
        f"2024-01-0{d}T{h:02d}:00:00Z,1.1,1.2,1.0,1.1,0"
        for d in (2, 3, 4)
        for h in (0, 23)
    ]
    path = _write_csv(tmp_path, rows)
    df = load_bars(path, start="2024-01-03", end="2024-01-03")
    assert list(df.index) == [
        pd.Timestamp("2024-01-03 00:00", tz="UTC"),
        pd.Timestamp("2024-01-03 23:00", tz="UTC"),
    ]
    df = load_bars(
        path,
        start=pd.Timestamp("2024-01-03 01:00", tz="Europe/Athens"),
        end="2024-01-03 23:00",
    )
    assert df.index[0] == pd.Timestamp("2024-01-02 23:00", tz="UTC")
    assert df.index[-1] == pd.Timestamp("2024-01-03 23:00", tz="UTC")
    with pytest.raises(DataError, match=r"no bars for EURUSD in \[2025-01-01"):
        load_bars(path, start="2025-01-01")


def test_folder_selection_and_overlap(tmp_path: Path) -> None:
    _write_csv(tmp_path, GOOD[:3], name="EURUSD_M1_2024_Q1.csv")
    _write_csv(tmp_path, GOOD[3:], name="eurusd_M1_2024_Q2.csv")
    (tmp_path / "EURUSD_M1_2022.csv").write_text(
        "garbage that would fail\n"
    )  # skipped by year
    (tmp_path / "README.md").write_text("not data\n")
    df = load_bars(tmp_path, "EURUSD", start="2024-01-01")
    assert len(df) == 5 and df.index.is_monotonic_increasing
    assert df.attrs["source"] == "EURUSD_M1_2024_Q1.csv, eurusd_M1_2024_Q2.csv"

    with pytest.raises(DataError, match="unknown bar format"):
        load_bars(tmp_path, "EURUSD")  # without a range the 2022 file is read
    with pytest.raises(DataError, match="no bar files for symbol GBPUSD"):
        load_bars(tmp_path, "GBPUSD")
    with pytest.raises(DataError, match="symbol is required"):
        load_bars(tmp_path)

    _write_csv(tmp_path, GOOD[2:4], name="EURUSD_M1_2024_Q3.csv")  # overlaps both
    with pytest.raises(
        DataError, match=r"2024-01-02 00:02:00\+00:00: duplicate timestamp.*overlap"
    ):
        load_bars(tmp_path, "EURUSD", start="2024-01-01")


# --------------------------------------------------------------------------- gaps


def test_gap_report_weekend_and_hole() -> None:
    friday = pd.date_range("2024-01-05 21:55", "2024-01-05 21:59", freq="min", tz="UTC")
    sunday = pd.date_range("2024-01-07 22:00", "2024-01-07 22:10", freq="min", tz="UTC")
    sunday = sunday.delete([3, 4, 5])  # 22:03, 22:04, 22:05 missing
    rep = find_gaps(friday.append(sunday))
    assert rep == GapReport(
        bars=5 + 8,
        gaps=2,
        longest_minutes=2880,
        longest_start=pd.Timestamp("2024-01-05 22:00", tz="UTC"),
        missing_intraweek_minutes=3,
        weekend_gaps=1,
    )
    assert "2 gaps (1 weekend)" in rep.describe()
    assert find_gaps(sunday, min_minutes=5).gaps == 0
    assert find_gaps(friday).gaps == 0 and find_gaps(friday).longest_start is None


# --------------------------------------------------------------------------- real data


def test_real_eurusd_month(fx_dir: Path) -> None:
    df = load_bars(fx_dir, "EURUSD", start="2024-11-01", end="2024-11-30")
    assert df.attrs["source"] == "EURUSD_M1_2024.csv.gz"
    assert df.index[0] >= pd.Timestamp("2024-11-01", tz="UTC")
    assert df.index[0] < pd.Timestamp("2024-11-01 00:05", tz="UTC")
    assert df.index[-1] < pd.Timestamp("2024-12-01", tz="UTC")
    assert df.index[-1] >= pd.Timestamp("2024-11-29 21:00", tz="UTC")  # Friday close
    assert 28_000 <= len(df) <= 31_000
    low_at = df["low"].idxmin()
    assert df["low"].min() == 1.03325
    assert low_at.date() == pd.Timestamp("2024-11-22").date()


def test_real_eurusd_year_matches_readme(fx_dir: Path) -> None:
    df = load_bars(fx_dir / "EURUSD_M1_2024.csv.gz")
    assert len(df) == 372_379
    assert df.index[0] == pd.Timestamp("2024-01-01 22:00", tz="UTC")
    assert df.index[-1] == pd.Timestamp("2024-12-31 21:58", tz="UTC")
    assert find_gaps(df.index).missing_intraweek_minutes == 3_386


def test_real_usdjpy_2017_range(fx_dir: Path) -> None:
    df = load_bars(fx_dir, "usdjpy", start="2017-01-01", end="2017-12-31")
    assert df["low"].min() == 107.319
    assert df["high"].max() == 118.605
    assert df.index[0] == pd.Timestamp("2017-01-02 07:00", tz="UTC")


def test_real_unknown_symbol(fx_dir: Path) -> None:
    with pytest.raises(DataError, match="no bar files for symbol NZDCHF") as err:
        load_bars(fx_dir, "NZDCHF")
    assert str(fx_dir) in str(err.value)
    with pytest.raises(DataError, match="no bars for GBPUSD"):
        load_bars(fx_dir, "GBPUSD", start="2024-01-01", end="2024-12-31")


def test_errors_name_the_line_an_editor_shows(tmp_path: Path) -> None:
    """Row numbers in errors are the file's line numbers: the header and blank lines count, and so do the
    duplicate rows HistData repeats at a DST change (dropped before validation)."""
    rows = _with_row(2, "2024-01-02T00:02:00Z,1.1,1.0,1.2,1.1,0")  # high < low on data row 2
    with pytest.raises(DataError, match=r"EURUSD_M1_2024\.csv: line 4 at 2024-01-02 00:02"):
        load_bars(_write_csv(tmp_path, rows))
    with pytest.raises(DataError, match=r"line 5 at 2024-01-02T00:02:00: timestamp is not marked UTC"):  # blank line 4
        load_bars(_write_csv(tmp_path, [*GOOD[:2], "", "2024-01-02T00:02:00,1.1,1.2,1.0,1.1,0"]))
    hist = ["20170102 020000;1.1;1.2;1.0;1.1;0", "20170102 020000;1.1;1.2;1.0;1.1;0",  # exact duplicate
            "20170102 020100;1.1;1.2;1.0;1.1;0", "20170102 020200;1.3;1.2;1.0;1.1;0"]  # open above high
    with pytest.raises(DataError, match=r"DAT_ASCII_EURUSD_M1_2017\.csv: line 4 at .*open 1.3 outside"):
        load_bars(_histdata(tmp_path, hist))
    path = tmp_path / "EURUSD_M1_export.csv"
    path.write_text("\n".join([MT5_HEADER, "2024.01.02\t00:00:00\t1.10\t1.20\t1.00\t1.10\t17\t0\t2",
                               "2024.01.02\t00:61:00\t1.10\t1.20\t1.00\t1.15\t23\t0\t2"]) + "\n")
    with pytest.raises(DataError, match=r"line 3 at '2024.01.02 00:61:00': unparseable"):
        load_bars(path, server_utc_offset_hours=2)


def test_array_feed_delivers_what_backtraders_pandas_feed_delivers(fx_dir: Path) -> None:
    """``feeds.btfeeds.ArrayPandasData`` (rows from NumPy columns) gives every line of every bar exactly as
    Backtrader's ``PandasData`` over the same frame, on real bars with gaps."""
    import backtrader as bt

    from feeds.btfeeds import M1Data, m1_feed

    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-03-01", end="2024-03-05")
    seen: dict[str, list[tuple]] = {}

    class Record(bt.Strategy):
        params = (("key", ""),)

        def next(self) -> None:
            d = self.data
            seen.setdefault(self.p.key, []).append((d.datetime[0], d.open[0], d.high[0], d.low[0], d.close[0],
                                                    d.volume[0]))

    ours = m1_feed(m1, "EURUSD_M1")
    assert isinstance(ours, M1Data)
    stock = bt.feeds.PandasData(dataname=ours.p.dataname, openinterest=None)
    for key, feed in (("ours", ours), ("stock", stock)):
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(feed)
        cerebro.addstrategy(Record, key=key)
        cerebro.run()
    assert len(seen["ours"]) == len(m1) and seen["ours"] == seen["stock"]
