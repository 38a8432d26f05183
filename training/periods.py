"""Which (symbol, year) periods the data hold, and the walk-forward folds over them.

Data files are named ``SYMBOL_M1_YEAR`` (``EURUSD_M1_2024.csv.gz``, as in ``../shared/data/fx``); a period is one
calendar year of one symbol. Used by the evaluation grid (``reports.evaluate``) and the walk-forward
(``training.walk_forward``), so both see the same years."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DATA_FILE = re.compile(r"^([A-Z0-9]{3,12})_M1_(\d{4})\.(?:csv|csv\.gz|parquet)$", re.IGNORECASE)


def find_periods(paths: list[Path], symbols: list[str] | None = None,
                 years: list[int] | None = None) -> list[tuple[str, int, Path]]:
    """(symbol, year, path to load it from) of every ``SYMBOL_M1_YEAR`` file in ``paths`` (files or folders),
    filtered by ``symbols`` and ``years``, sorted by symbol then year. The path is the folder the file is in (so
    the weeks before a year come from the previous year's file) or the file itself when a file was given."""
    found: dict[tuple[str, int], Path] = {}
    for p in paths:
        p = Path(p).resolve()
        if not p.exists():
            raise FileNotFoundError(f"--data {p}: no such file or folder")
        for f in (sorted(p.iterdir()) if p.is_dir() else [p]):
            m = DATA_FILE.match(f.name)
            if m:
                found.setdefault((m.group(1).upper(), int(m.group(2))), p)
    want = {s.upper() for s in symbols or ()}
    keep = {k: p for k, p in found.items() if (not want or k[0] in want) and (not years or k[1] in years)}
    if not keep:
        raise FileNotFoundError(f"no SYMBOL_M1_YEAR data files in {', '.join(map(str, paths))}"
                                + (f" for symbols {sorted(want)}" if want else "")
                                + (f" years {years}" if years else ""))
    return [(s, y, keep[s, y]) for s, y in sorted(keep)]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: train on ``train_years``, select on ``val_year``, test on ``test_year``."""

    test_year: int
    val_year: int
    train_years: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"test{self.test_year}"

    @property
    def adjacent(self) -> bool:
        """Whether the validation year is the calendar year right before the test year."""
        return self.val_year == self.test_year - 1


def walk_forward_folds(years: list[int], first_test_year: int = 2020,
                       test_years: list[int] | None = None) -> list[Fold]:
    """A fold for every data year from ``first_test_year`` on (or in ``test_years``) with at least two data years
    before it: the last of them selects (the year before the test year, or the last one the data hold when that
    year is missing), the earlier ones train."""
    years = sorted(set(years))
    folds = []
    for y in years:
        if y < first_test_year or (test_years and y not in test_years):
            continue
        before = [x for x in years if x < y]
        if len(before) >= 2:
            folds.append(Fold(y, before[-1], tuple(before[:-1])))
    if not folds:
        raise ValueError(f"no walk-forward fold in data years {years} from {first_test_year}"
                         + (f" for test years {test_years}" if test_years else ""))
    return folds
