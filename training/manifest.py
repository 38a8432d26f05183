"""What every checkpoint's manifest records about the run that made it: data, config, features, seed, step."""

from __future__ import annotations

from dataclasses import asdict

from features.context import H4_SPEC, HISTORY_DAYS
from features.engine import DEFAULT_SPEC
from features.market import DEFAULT_MARKET_SPEC
from training.args import TrainArgs


def run_manifest(args: TrainArgs, algorithm: str, step: int, ranges: dict | None = None) -> dict:
    """The manifest entries every trainer writes; ``ranges``: the training data's feature ranges (drift monitoring
    in backtests and live)."""
    cfg = args.env_config()
    return {"algorithm": algorithm, "feature_spec": DEFAULT_SPEC.to_dict(), "h4_feature_spec": H4_SPEC.to_dict(),
            "symbol": args.symbol, "train_period": [args.train_start, args.train_end],
            "val_period": [args.val_start, args.val_end], "history_days": HISTORY_DAYS, "args": asdict(args),
            "env_config": {k: v for k, v in asdict(cfg).items() if k != "rules"} | {"rules": cfg.rules.to_dict()},
            "seed": args.seed, "step": step} | ({"feature_ranges": ranges} if ranges else {}) \
        | ({"market_spec": DEFAULT_MARKET_SPEC.to_dict()} if cfg.market_features else {})
