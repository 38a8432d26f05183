"""Load M1 bars from files or folders into one validated, UTC-indexed OHLCV frame.

Every source clock is converted to UTC explicitly (never guessed silently), every frame is
validated before it is returned, and gaps are logged, never filled.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import logging
import re
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feeds.errors import DataError
from feeds.gaps import find_gaps
from feeds.validate import BAR_COLUMNS, PRICE_COLUMNS, validate_bars, where

logger = logging.getLogger(__name__)

FORMATS = ("auto", "csv", "histdata", "mt5", "parquet")
SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz", ".zip", ".parquet")
NY_CLOCK = "America/New_York"
EET7_CLOCK = "EET-7"

_SYMBOL_RE = re.compile(r"^[A-Za-z0-9]{3,12}$")
_YEAR_RE = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")
_DATE_ONLY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HISTDATA_RE = re.compile(r"^\d{8} \d{6};")
_MT5_COLUMNS = ("<DATE>", "<TIME>", "<OPEN>", "<HIGH>", "<LOW>", "<CLOSE>", "<TICKVOL>")


# --------------------------------------------------------------------------- public API


def load_bars(
    path: str | Path,
    symbol: str | None = None,
    start: Any = None,
    end: Any = None,
    fmt: str = "auto",
    server_utc_offset_hours: float | None = None,
    clock: str | None = None,
) -> pd.DataFrame:
    """Load M1 bars (bar open time, UTC) from a file or a folder of per-symbol files.

    ``start``/``end`` are dates or timestamps (naive = UTC); a date-only ``end`` includes
    that whole day. ``clock`` names the source wall clock (``"America/New_York"``,
    ``"EET-7"``, ``"UTC"`` or any IANA zone); MT5 exports need ``server_utc_offset_hours``
    (or ``clock``) because guessing a broker's server clock would shift every bar.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    path = Path(path)
    lo = to_utc(start, "start", whole_day_end=False)
    hi = to_utc(end, "end", whole_day_end=True)  # exclusive bound
    if lo is not None and hi is not None and hi <= lo:
        raise ValueError(f"end {end!r} is not after start {start!r}")

    if path.is_dir():
        if not symbol:
            raise DataError(f"{path}: is a folder, so a symbol is required")
        files = _pick_files(path, symbol, lo, hi)
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such file or folder")
    sym = symbol.upper() if symbol else _symbol_from_name(path.name)

    parts: list[tuple[str, pd.DataFrame]] = []
    for f in files:
        df, lines = _read_file(f, fmt, server_utc_offset_hours, clock)
        validate_bars(df, str(f), lines)
        part = _slice(df, lo, hi)
        if len(part):
            parts.append((f.name, part))
    names = ", ".join(f.name for f in files)
    if not parts:
        raise DataError(
            f"no bars for {sym or path.name} in [{start}, {end}] in {path}"
            + (f" (files: {names})" if path.is_dir() else "")
        )
    df = _concat(parts, path) if len(parts) > 1 else parts[0][1]
    df.index.name = "datetime"
    df.attrs = {"symbol": sym, "source": names}
    validate_bars(df, str(path))
    logger.info("%s from %s: %s", sym or "?", names, find_gaps(df.index).describe())
    return df


# --------------------------------------------------------------------------- helpers


def to_utc(value: Any, name: str, whole_day_end: bool) -> pd.Timestamp | None:
    """Bound as a UTC Timestamp; a date-only ``end`` moves to the next midnight (exclusive)."""
    if value is None:
        return None
    date_only = (isinstance(value, dt.date) and not isinstance(value, dt.datetime)) or (
        isinstance(value, str) and bool(_DATE_ONLY_RE.match(value.strip()))
    )
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}={value!r} is not a date or timestamp") from exc
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    if whole_day_end:
        return (
            ts + pd.Timedelta(days=1) if date_only else ts + pd.Timedelta(nanoseconds=1)
        )
    return ts


def _slice(
    df: pd.DataFrame, lo: pd.Timestamp | None, hi: pd.Timestamp | None
) -> pd.DataFrame:
    """Rows in [lo, hi) of a sorted frame."""
    idx = df.index
    a = 0 if lo is None else int(idx.searchsorted(lo, side="left"))
    b = len(idx) if hi is None else int(idx.searchsorted(hi, side="left"))
    return df.iloc[a:b] if (a, b) != (0, len(idx)) else df


def resolve_symbol(data: Path, symbol: str | None, known: Collection[str], force: bool = False,
                   default: str = "EURUSD") -> str:
    """The symbol a run trades: ``symbol`` if given, else the one a data file's name carries
    (``GBPUSD_M1_sample.csv``); a folder without ``symbol`` means ``default``. A ``symbol`` that contradicts the
    file name is refused (the costs and pip value would be another instrument's) unless ``force``.
    Only a name's known symbol counts as a claim: ``mydata_M1.csv`` says nothing."""
    named = _symbol_from_name(data.name) if data.is_file() else None
    named = named if named in known else None
    if symbol is None:
        if named is not None:
            return named
        if data.is_file():
            raise DataError(f"{data}: its name does not say which instrument it holds (known: "
                            f"{', '.join(sorted(known))}): pass --symbol")
        return default
    symbol = symbol.upper()
    if named is not None and named != symbol and not force:
        raise DataError(f"{data} is named as {named} data but --symbol {symbol} was given: rename the file, drop "
                        "--symbol, or pass --force-symbol to trade it as " + symbol)
    return symbol


def _symbol_from_name(name: str) -> str | None:
    """EURUSD from ``EURUSD_M1_2024.csv.gz`` or ``DAT_ASCII_EURUSD_M1_2017.csv``."""
    m = re.match(
        r"^(?:dat_ascii_|histdata_com_ascii_)?([a-z0-9]{3,12})_", name, re.IGNORECASE
    )
    return m.group(1).upper() if m else None


def _has_suffix(name: str) -> bool:
    low = name.lower()
    return any(low.endswith(s) for s in SUFFIXES)


def _pick_files(
    folder: Path, symbol: str, lo: pd.Timestamp | None, hi: pd.Timestamp | None
) -> list[Path]:
    """Files of ``symbol`` in ``folder``, skipping years outside [lo, hi) when names carry one."""
    if not _SYMBOL_RE.match(symbol):
        raise DataError(f"{folder}: invalid symbol {symbol!r}")
    sym = symbol.lower()
    files = []
    for f in sorted(folder.iterdir()):
        if not f.is_file() or not _has_suffix(f.name):
            continue
        if _symbol_from_name(
            f.name
        ) != symbol.upper() and not f.name.lower().startswith(sym + "_"):
            continue
        files.append(f)
    if not files:
        raise DataError(f"{folder}: no bar files for symbol {symbol.upper()}")
    picked = []
    for f in files:
        m = _YEAR_RE.search(f.name)
        if m and (lo is not None or hi is not None):
            year = int(m.group(1))
            # A year's file may hold a day either side in UTC (source clocks are shifted).
            f_lo = pd.Timestamp(year, 1, 1, tz="UTC") - pd.Timedelta(days=1)
            f_hi = pd.Timestamp(year + 1, 1, 1, tz="UTC") + pd.Timedelta(days=1)
            if (hi is not None and f_lo >= hi) or (lo is not None and f_hi <= lo):
                continue
        picked.append(f)
    if not picked:
        raise DataError(
            f"no bars for {symbol.upper()} in [{lo}, {hi}) in {folder} "
            f"(files: {', '.join(f.name for f in files)})"
        )
    return picked


def _concat(parts: list[tuple[str, pd.DataFrame]], folder: Path) -> pd.DataFrame:
    """Concatenate per-file frames in time order; overlapping files are a duplicate-timestamp error."""
    parts = sorted(parts, key=lambda p: p[1].index[0])
    owner = np.concatenate([np.full(len(f), i) for i, (_, f) in enumerate(parts)])
    df = pd.concat([f for _, f in parts])
    ts = df.index.asi8
    if (np.diff(ts) <= 0).any():
        perm = np.argsort(ts, kind="stable")
        sts = ts[perm]
        dups = np.flatnonzero(sts[1:] == sts[:-1])
        if len(dups):
            k = int(dups[0])
            a, b = parts[owner[perm[k]]][0], parts[owner[perm[k + 1]]][0]
            raise DataError(
                f"{folder}: row {k + 1} at {df.index[perm[k]]}: duplicate timestamp after merging "
                f"files (overlap between {a} and {b})"
            )
        df = df.iloc[perm]
    return df


def _open_text(path: Path) -> io.TextIOBase:
    """Text handle for plain, gzip or single-member zip files."""
    low = path.name.lower()
    if low.endswith(".gz"):
        return io.TextIOWrapper(
            gzip.open(path, "rb"), encoding="ascii", errors="replace"
        )
    if low.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.lower().endswith((".csv", ".txt"))]
            if len(members) != 1:
                raise DataError(f"{path}: expected one csv in the zip, found {members}")
            data = zf.read(members[0])
        return io.StringIO(data.decode("ascii", errors="replace"))
    return open(path, encoding="ascii", errors="replace")


def _detect(first_line: str, path: Path) -> str:
    """Format from the first line of a text file."""
    line = first_line.lstrip("\ufeff").strip()
    if line.lower().startswith("datetime,"):
        return "csv"
    if line.startswith("<DATE>"):
        return "mt5"
    if _HISTDATA_RE.match(line):
        return "histdata"
    raise DataError(f"{path}: unknown bar format (first line {line[:60]!r})")


def _read_file(
    path: Path, fmt: str, offset_hours: float | None, clock: str | None
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """One file as a float64 OHLCV frame on a UTC index (not yet validated), and each row's line number in
    the file (None for parquet, which has no lines)."""
    try:
        if fmt == "parquet" or (
            fmt == "auto" and path.name.lower().endswith(".parquet")
        ):
            df, lines = _read_parquet(path, clock), None
        else:
            with _open_text(path) as fh:
                text = fh.read()
            kind = _detect(text.split("\n", 1)[0], path) if fmt == "auto" else fmt
            buf = io.StringIO(text)
            if kind == "csv":
                df, lines = _read_ours(buf, path)
            elif kind == "histdata":
                df, lines = _read_histdata(buf, path, clock)
            elif kind == "mt5":
                df, lines = _read_mt5(buf, path, offset_hours, clock)
            else:
                raise DataError(f"{path}: format {kind!r} is not a text format")
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    df.index.name = "datetime"
    return df, lines


def _read_lines(buf: io.StringIO, header: bool, **kwargs) -> tuple[pd.DataFrame, np.ndarray]:
    """``pd.read_csv`` keeping each row's line number in the file (1-based); blank lines are skipped but
    counted, so the numbers are the ones an editor shows."""
    raw = pd.read_csv(buf, skip_blank_lines=False, **({} if header else {"header": None}), **kwargs)
    lines = np.arange(len(raw)) + (2 if header else 1)
    blank = raw.isna().all(axis=1).to_numpy()
    if blank.any():
        raw, lines = raw.loc[~blank].reset_index(drop=True), lines[~blank]
    return raw, lines


def _prices(raw: pd.DataFrame, cols: dict[str, str], path: Path) -> pd.DataFrame:
    """float64 OHLCV frame from raw columns; non-numeric cells become NaN and fail validation."""
    missing = [src for src in cols.values() if src not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing} (have {list(raw.columns)})")
    out = {}
    for dst, src in cols.items():
        col = raw[src]
        if col.dtype != np.float64:
            col = pd.to_numeric(col, errors="coerce").astype(np.float64)
        out[dst] = col.to_numpy()
    return pd.DataFrame(out)


def _bad_time(
    path: Path, raw: pd.Series, parsed: pd.Series | pd.DatetimeIndex, what: str, lines: np.ndarray | None
) -> None:
    """DataError on the first unparseable timestamp."""
    nat = np.asarray(pd.isna(parsed))
    if nat.any():
        pos = int(np.argmax(nat))
        raise DataError(f"{path}: {where(pos, lines)} at {raw.iloc[pos]!r}: {what}")


def _read_ours(buf: io.StringIO, path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Shared format: ``datetime,open,high,low,close,volume`` with ISO UTC ``...Z`` stamps."""
    raw, lines = _read_lines(buf, header=True, dtype={"datetime": str})
    if "datetime" not in raw.columns:
        raise DataError(
            f"{path}: missing columns ['datetime'] (have {list(raw.columns)})"
        )
    stamps = raw["datetime"].astype(str).str.strip()
    marked = stamps.str.endswith("Z") | stamps.str.endswith("+00:00")
    if not marked.all():
        pos = int(np.argmax(~marked.to_numpy()))
        raise DataError(
            f"{path}: {where(pos, lines)} at {stamps.iloc[pos]}: timestamp is not marked UTC "
            "(naive or non-UTC offset); expected e.g. 2024-01-01T22:00:00Z"
        )
    when = pd.to_datetime(stamps, format="ISO8601", utc=True, errors="coerce")
    _bad_time(path, stamps, when, "unparseable timestamp", lines)
    df = _prices(raw, {c: c for c in BAR_COLUMNS}, path)
    df.index = pd.DatetimeIndex(when).as_unit("ns")
    return df, lines


def _localise(
    labels: pd.DatetimeIndex, clock: str, path: Path, raw: pd.Series, lines: np.ndarray | None = None
) -> pd.DatetimeIndex:
    """Naive wall-clock labels -> UTC under an explicit clock rule."""
    if clock == EET7_CLOCK:
        local = (labels + pd.Timedelta(hours=7)).tz_localize(
            "Europe/Athens", ambiguous="NaT", nonexistent="NaT"
        )
    elif clock.upper() == "UTC":
        local = labels.tz_localize("UTC")
    else:
        try:
            local = labels.tz_localize(clock, ambiguous="NaT", nonexistent="NaT")
        except Exception as exc:  # unknown zone names raise various errors
            raise ValueError(f"unknown clock {clock!r}") from exc
    _bad_time(
        path, raw, local, f"label is ambiguous or nonexistent under clock {clock}", lines
    )
    return local.tz_convert("UTC").as_unit("ns")


def _read_histdata(buf: io.StringIO, path: Path, clock: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """HistData generic ASCII M1: ``20170102 020000;o;h;l;c;v`` on the source's wall clock."""
    names = ["label", *BAR_COLUMNS]
    raw, lines = _read_lines(buf, header=False, sep=";", names=names, dtype={"label": str})
    dup = raw.duplicated(keep="first").to_numpy()
    if dup.any():
        logger.info(
            "%s: dropped %d exact duplicate rows (source repeats a DST hour)",
            path,
            dup.sum(),
        )
        raw, lines = raw.loc[~dup].reset_index(drop=True), lines[~dup]
    clash = raw["label"].duplicated(keep="first").to_numpy()
    if clash.any():
        pos = int(np.argmax(clash))
        raise DataError(
            f"{path}: {where(pos, lines)} at {raw['label'].iloc[pos]}: duplicate timestamp with different values"
        )
    labels = pd.DatetimeIndex(
        pd.to_datetime(raw["label"], format="%Y%m%d %H%M%S", errors="coerce")
    )
    _bad_time(path, raw["label"], labels, "unparseable timestamp", lines)
    if clock is None:
        year = labels[0].year if len(labels) else 2018
        clock = NY_CLOCK if year <= 2017 else EET7_CLOCK
        logger.info("%s: HistData clock inferred from year %d: %s", path, year, clock)
    else:
        logger.info("%s: HistData clock given: %s", path, clock)
    df = _prices(raw, {c: c for c in BAR_COLUMNS}, path)
    df.index = _localise(labels, clock, path, raw["label"], lines)
    return df, lines


def _read_mt5(
    buf: io.StringIO, path: Path, offset_hours: float | None, clock: str | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """MetaTrader 5 export (tab-separated, ``<DATE> <TIME> ...``) on the broker server clock."""
    if offset_hours is None and clock is None:
        raise DataError(
            f"{path}: MT5 export is on broker server time: give its offset from UTC (run_backtest.py "
            "--data-utc-offset HOURS or --data-clock ZONE; load_bars(server_utc_offset_hours=) or clock=)"
        )
    raw, lines = _read_lines(buf, header=True, sep="\t", dtype={"<DATE>": str, "<TIME>": str})
    missing = [c for c in _MT5_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing} (have {list(raw.columns)})")
    stamp = raw["<DATE>"].str.strip() + " " + raw["<TIME>"].str.strip()
    labels = pd.DatetimeIndex(
        pd.to_datetime(stamp, format="%Y.%m.%d %H:%M:%S", errors="coerce")
    )
    _bad_time(path, stamp, labels, "unparseable timestamp", lines)
    cols = {
        "open": "<OPEN>",
        "high": "<HIGH>",
        "low": "<LOW>",
        "close": "<CLOSE>",
        "volume": "<TICKVOL>",
    }
    df = _prices(raw, cols, path)
    if offset_hours is not None:
        utc = (
            (labels - pd.Timedelta(hours=float(offset_hours)))
            .tz_localize("UTC")
            .as_unit("ns")
        )
    else:
        utc = _localise(labels, str(clock), path, stamp, lines)
    df.index = utc
    return df, lines


def _read_parquet(path: Path, clock: str | None) -> pd.DataFrame:
    """Parquet with a DatetimeIndex or a ``datetime`` column; naive stamps need ``clock``."""
    raw = pd.read_parquet(path)
    if "datetime" in raw.columns:
        raw = raw.set_index("datetime")
    if not isinstance(raw.index, pd.DatetimeIndex):
        raise DataError(f"{path}: needs a DatetimeIndex or a 'datetime' column")
    missing = [c for c in PRICE_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing} (have {list(raw.columns)})")
    if "volume" not in raw.columns:
        raw = raw.assign(volume=0.0)
    df = _prices(raw.reset_index(drop=True), {c: c for c in BAR_COLUMNS}, path)
    idx = raw.index
    if idx.tz is None:
        if clock is None:
            first = f" (first row {idx[0]})" if len(idx) else ""
            raise DataError(
                f"{path}: timestamps are timezone-naive{first}; pass clock='UTC' if they are UTC"
            )
        idx = _localise(idx, clock, path, pd.Series(idx.astype(str)))
    df.index = idx.tz_convert("UTC").as_unit("ns")
    return df
