"""features.drift: the training ranges, the counts of decisions outside them, and warnings at most once a day."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from features.drift import DriftMonitor, feature_ranges
from features.engine import FEATURE_NAMES

N = len(FEATURE_NAMES)


def _ranges() -> dict:
    """Training features uniform on [0, 1] in every column: quantiles ~0.001 and ~0.999."""
    rng = np.random.default_rng(0)
    return feature_ranges([rng.uniform(0, 1, (50_000, N))], [rng.uniform(0, 1, (5_000, N))])


def test_ranges_are_the_quantiles_and_refuse_other_features() -> None:
    r = _ranges()
    assert r["m1"]["lo"] == pytest.approx([0.001] * N, abs=5e-4) and r["m1"]["hi"] == pytest.approx([0.999] * N,
                                                                                                    abs=5e-4)
    with pytest.raises(ValueError, match="other features"):
        DriftMonitor(r | {"feature_names": ["x"]})


def test_counts_and_margin(caplog: pytest.LogCaptureFixture) -> None:
    mon = DriftMonitor(_ranges(), margin=0.1)  # inside: [~-0.1, ~1.1]
    inside, m1_out, h4_out = np.full(N, 0.5), np.full(N, 0.5), np.full(N, 0.5)
    m1_out[3] = 1.05  # outside the range but inside the margin: not counted
    assert mon.check(0, m1_out, inside) is False
    m1_out[3], h4_out[0] = 1.2, -0.2
    with caplog.at_level(logging.WARNING, logger="features.drift"):
        assert mon.check(1, m1_out, h4_out) is True
        assert mon.check(2, m1_out, inside) is True  # the same feature a minute later: counted, not warned again
        assert mon.check(1 + 1440, m1_out, inside) is True  # a day later: warned again
    s = mon.summary()
    assert (s["decisions_checked"], s["decisions_outside"]) == (4, 3)
    assert s["by_feature"] == {f"m1.{FEATURE_NAMES[3]}": 3, f"h4.{FEATURE_NAMES[0]}": 1}
    warned = [r.getMessage().split(" = ")[0] for r in caplog.records]
    assert warned == [f"drift: m1.{FEATURE_NAMES[3]}", f"drift: h4.{FEATURE_NAMES[0]}", f"drift: m1.{FEATURE_NAMES[3]}"]


def test_check_all_counts_as_check_does_row_by_row() -> None:
    rng = np.random.default_rng(1)
    m1, h4 = rng.normal(0.5, 0.4, (400, N)), rng.normal(0.5, 0.4, (400, N))
    one, many = DriftMonitor(_ranges()), DriftMonitor(_ranges())
    for k in range(len(m1)):
        one.check(k, m1[k], h4[k])
    many.check_all(m1, h4)
    assert one.by_feature == many.by_feature and (one.checks, one.outside) == (many.checks, many.outside)
    assert 0 < one.outside < len(m1)
