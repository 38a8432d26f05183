"""Add the training period's feature ranges (drift monitoring, ``features.drift``) to existing checkpoints.

    python -m training.feature_ranges checkpoints/mtf_marl_eurusd checkpoints/td3_eurusd

Trainers write them themselves; this is for checkpoints made before they did. The ranges come from the manifest's
own ``train_period`` and ``symbol`` on the data found here (``$MTF_DATA_DIR`` or ../shared/data/fx), with the same
feature history the trainer used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agents.common.checkpoint import MANIFEST, read_manifest
from training.data import context_feature_ranges, period_contexts


def add_ranges(path: Path) -> dict:
    man = read_manifest(path)
    start, end = man["train_period"]
    ranges = context_feature_ranges(period_contexts(man["symbol"], start, end))
    man["feature_ranges"] = ranges
    (Path(path) / MANIFEST).write_text(json.dumps(man, indent=2, default=str) + "\n")
    return ranges


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+")
    for path in p.parse_args(argv).checkpoints:
        add_ranges(path)
        print(f"{path}: feature ranges added")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
