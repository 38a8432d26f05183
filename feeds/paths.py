"""Where the real market data lives.

One setting per folder, so tests, tools and the CLI agree: an environment variable wins,
else the read-only ``shared/data`` folder beside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def fx_data_dir() -> Path:
    """M1 bar folder: ``$MTF_DATA_DIR`` or ``../shared/data/fx``."""
    return Path(os.environ.get("MTF_DATA_DIR", _SHARED_DATA / "fx"))


def macro_data_dir() -> Path:
    """FRED macro folder: ``$MTF_MACRO_DIR`` or ``../shared/data/macro``."""
    return Path(os.environ.get("MTF_MACRO_DIR", _SHARED_DATA / "macro"))
