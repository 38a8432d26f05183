"""Shared fixtures: real-data access that fails (not skips) on CI when data are missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feeds.paths import fx_data_dir, macro_data_dir


def _require(path: Path) -> Path:
    if path.exists():
        return path
    msg = f"real data not found at {path} (set MTF_DATA_DIR / MTF_MACRO_DIR)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def fx_dir() -> Path:
    return _require(fx_data_dir())


@pytest.fixture(scope="session")
def macro_dir() -> Path:
    return _require(macro_data_dir())
