"""Model-drift monitoring: is the market the agents now see still the one they were trained on?

A checkpoint's manifest records, per feature of the one engine (16 on M1 bars, 16 on H4 bars), the 0.1 % and 99.9 %
quantiles over its training period (``feature_ranges``). Live (or in any run), ``DriftMonitor.check`` counts the
decisions whose features fall outside those ranges by more than ``margin`` of their width and logs a warning, at
most once a day of bar time per feature, naming the feature and the value. A policy fed inputs it has never seen acts on
extrapolation; the warning is the cue to stop or retrain, not a guarantee of anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from features.engine import FEATURE_NAMES

log = logging.getLogger(__name__)
QUANTILES = (0.001, 0.999)


def feature_ranges(m1_features: Sequence[np.ndarray], h4_features: Sequence[np.ndarray]) -> dict[str, dict]:
    """The manifest entry: per timeframe, the low and high quantiles of every feature over the rows given (the
    training contexts' bars after their warm-up)."""
    out = {}
    for name, parts in (("m1", m1_features), ("h4", h4_features)):
        x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
        lo, hi = np.quantile(x, QUANTILES, axis=0)
        out[name] = {"lo": [round(float(v), 6) for v in lo], "hi": [round(float(v), 6) for v in hi]}
    out["quantiles"] = list(QUANTILES)
    out["feature_names"] = list(FEATURE_NAMES)
    return out


WARN_EVERY_MINUTES = 1440
"""a feature found outside is warned about at most once a day (of bar time): a live log stays readable"""


class DriftMonitor:
    """:param ranges: a manifest's ``feature_ranges`` entry
    :param margin: how far outside the range counts, as a fraction of its width"""

    def __init__(self, ranges: dict, margin: float = 0.1) -> None:
        if list(ranges.get("feature_names", [])) != list(FEATURE_NAMES):
            raise ValueError("the checkpoint's feature ranges are for other features")
        self._lo, self._hi = {}, {}
        for tf in ("m1", "h4"):
            lo, hi = np.asarray(ranges[tf]["lo"]), np.asarray(ranges[tf]["hi"])
            pad = margin * np.maximum(hi - lo, 1e-9)
            self._lo[tf], self._hi[tf] = lo - pad, hi + pad
        self.checks = 0
        self.outside = 0  # decisions with at least one feature outside
        self.by_feature: dict[str, int] = {}
        self._warned: dict[str, int] = {}  # feature -> minute of its last warning

    def check(self, minute: int, m1: np.ndarray, h4: np.ndarray) -> bool:
        """Count this decision's inputs; True if any is outside the training range."""
        self.checks += 1
        found = False
        for tf, x in (("m1", m1), ("h4", h4)):
            bad = np.flatnonzero((x < self._lo[tf]) | (x > self._hi[tf]))
            for j in bad:
                key = f"{tf}.{FEATURE_NAMES[j]}"
                self.by_feature[key] = self.by_feature.get(key, 0) + 1
                if minute - self._warned.get(key, -10**9) >= WARN_EVERY_MINUTES:
                    self._warned[key] = minute
                    log.warning("drift: %s = %.3f is outside its training range [%.3f, %.3f] (%d decisions so far; "
                                "next warning for it in a day at the earliest)", key, float(x[j]),
                                float(self._lo[tf][j]), float(self._hi[tf][j]), self.by_feature[key])
            found = found or len(bad) > 0
        self.outside += found
        return found

    def check_all(self, m1: np.ndarray, h4: np.ndarray) -> None:
        """``check`` over many decisions at once (a backtest's, at the end): the counts, and one warning per
        feature found outside."""
        flags = np.zeros(len(m1), bool)
        for tf, x in (("m1", np.asarray(m1)), ("h4", np.asarray(h4))):
            bad = (x < self._lo[tf]) | (x > self._hi[tf])
            flags |= bad.any(axis=1)
            for j in np.flatnonzero(bad.any(axis=0)):
                key = f"{tf}.{FEATURE_NAMES[j]}"
                self.by_feature[key] = self.by_feature.get(key, 0) + int(bad[:, j].sum())
                log.warning("drift: %s was outside its training range [%.3f, %.3f] on %d of %d decisions", key,
                            float(self._lo[tf][j]), float(self._hi[tf][j]), int(bad[:, j].sum()), len(x))
        self.checks += len(m1)
        self.outside += int(flags.sum())

    def summary(self) -> dict[str, object]:
        return {"decisions_checked": self.checks, "decisions_outside": self.outside,
                "share_outside": self.outside / self.checks if self.checks else 0.0,
                "by_feature": dict(sorted(self.by_feature.items(), key=lambda kv: -kv[1])[:10])}
