"""YAML defaults shipped with the package (instruments and costs, drawdown rules, strategies)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def load_yaml(name: str) -> dict[str, Any]:
    """Load ``configs/<name>.yaml``; cached, so callers must not mutate the result."""
    text = resources.files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)
