"""The one action -> target mapping: projection onto the director's limit and the no-trade band."""

from __future__ import annotations

import pytest

from brokers.instruments import get_instrument
from risk.actions import REBALANCE_BAND, banded, joint_target, joint_target_for, single_target, timing_target

EURUSD = get_instrument("EURUSD")
LONG_ONLY, SHORT_ONLY, BOTH = 0.9, -0.9, 0.0
FULL_LIMIT, HALF_LIMIT = 1.0, 0.0  # H4 limit action: (a + 1) / 2 of max_lots


def test_band_keeps_small_moves() -> None:
    assert banded(1.05, 1.0, band_lots=0.1, cap_lots=2.0) == 1.0  # wiggle: keep
    assert banded(1.10, 1.0, band_lots=0.1, cap_lots=2.0) == 1.10  # a move of the band itself trades
    assert banded(0.0, 0.05, band_lots=0.1, cap_lots=2.0) == 0.05  # a size rounding to 0 is not an exit
    assert banded(-0.02, 0.05, band_lots=0.1, cap_lots=2.0) == 0.05  # nor a sign flip inside the band
    assert banded(0.0, 0.05, band_lots=0.1, cap_lots=-1.0) == 0.0  # a position the director forbids
    assert banded(0.95, 1.0, band_lots=0.1, cap_lots=0.9) == 0.95  # current above the cap: must trade
    assert banded(0.05, 0.0, band_lots=0.1, cap_lots=2.0) == 0.0  # too small an entry from flat: stay flat


def test_single_target_band_is_a_fraction_of_max_lots() -> None:
    max_lots = 10.0
    assert single_target(0.52, -1.0, max_lots, EURUSD, current=5.0) == 5.0
    assert single_target(0.62, -1.0, max_lots, EURUSD, current=5.0) == 6.2
    assert single_target(0.52, 1.0, max_lots, EURUSD, current=5.0) == 0.0  # exit confidence 1: always exits
    assert single_target(0.52, -1.0, max_lots, EURUSD, current=5.0, band=0.0) == 5.2
    assert REBALANCE_BAND == 0.1


def test_exit_signal_has_hysteresis() -> None:
    max_lots = 10.0
    conf = 2 * 0.55 - 1  # exit confidence 0.55 on [0, 1]: between 0.5 - band and 0.5 + band
    assert single_target(0.5, conf, max_lots, EURUSD, current=5.0) == 5.0  # in a position: hold
    assert single_target(0.5, conf, max_lots, EURUSD, current=0.0) == 0.0  # flat: stay flat
    conf = 2 * 0.45 - 1
    assert single_target(0.5, conf, max_lots, EURUSD, current=0.0) == 0.0  # still inside the band
    assert single_target(0.5, 2 * 0.35 - 1, max_lots, EURUSD, current=0.0) == 5.0  # enter
    assert single_target(0.5, 2 * 0.65 - 1, max_lots, EURUSD, current=5.0) == 0.0  # exit
    assert joint_target((BOTH, FULL_LIMIT), (0.5, 2 * 0.55 - 1), max_lots, EURUSD, current=5.0).lots == 5.0
    assert joint_target((BOTH, FULL_LIMIT), (0.5, 2 * 0.65 - 1), max_lots, EURUSD, current=5.0).lots == 0.0
    # the same on the short side
    assert single_target(-0.5, 2 * 0.55 - 1, max_lots, EURUSD, current=-5.0) == -5.0
    assert single_target(-0.5, 2 * 0.65 - 1, max_lots, EURUSD, current=-5.0) == 0.0
    assert single_target(-0.5, 2 * 0.45 - 1, max_lots, EURUSD, current=0.0) == 0.0
    assert single_target(-0.5, 2 * 0.35 - 1, max_lots, EURUSD, current=0.0) == -5.0


@pytest.mark.parametrize(("h4", "m1", "current", "lots", "violation"), [
    ((BOTH, FULL_LIMIT), (0.55, -1.0), 5.0, 5.0, False),  # inside the band: keep 5 lots
    ((BOTH, HALF_LIMIT), (0.8, -1.0), 5.0, 5.0, True),  # clipped to the 0.5 limit = current: keep
    ((BOTH, HALF_LIMIT), (0.8, -1.0), 5.5, 5.0, True),  # current above the new limit: cut to it
    ((SHORT_ONLY, FULL_LIMIT), (0.05, -1.0), 0.3, 0.0, True),  # long against a short-only bias: flat
    ((LONG_ONLY, FULL_LIMIT), (0.02, -1.0), -0.5, 0.2, False),  # short against a long-only bias: not kept
])
def test_joint_target_band_respects_the_director(h4, m1, current, lots, violation) -> None:
    jt = joint_target(h4, m1, 10.0, EURUSD, current=current)
    assert jt.lots == pytest.approx(lots)
    assert abs(jt.fraction) <= jt.limit + 1e-12
    assert jt.violation is violation


# --------------------------------------------------------------------------- timing mode (the director sizes)
LONG, SHORT, NEUTRAL = (0.9, 0.6), (-0.9, 0.6), (0.0, 0.6)  # bias, limit action: limit (0.6 + 1) / 2 = 0.8
SIZE = 8.0  # 0.8 x 10 max lots


def _timing(h4, m1, current=0.0, held=0, hold=0):
    return timing_target(h4, m1, 10.0, EURUSD, current=current, held_bars=held, min_hold_bars=hold)


def test_timing_mode_takes_direction_and_size_from_the_director() -> None:
    assert _timing(LONG, (0.5, -1.0)).lots == SIZE  # the executor says "in": the director's size, its side
    assert _timing(SHORT, (0.5, -1.0)).lots == -SIZE  # the executor's sign means "in", not a side
    assert _timing(NEUTRAL, (1.0, -1.0)).lots == 0.0  # no direction: flat
    assert _timing(LONG, (0.05, -1.0)).lots == 0.0  # flat, a weak "in" below the band does not enter
    assert _timing(LONG, (-0.05, -1.0), current=SIZE).lots == SIZE  # in, a weak "out" above -band does not leave
    assert _timing(LONG, (-0.5, -1.0), current=SIZE).lots == 0.0  # a clear "out" leaves
    assert _timing(LONG, (0.9, 0.9), current=SIZE).lots == 0.0  # the exit confidence leaves too


def test_timing_mode_cannot_flip_and_holds_its_entries() -> None:
    assert _timing(SHORT, (0.9, -1.0), current=SIZE).lots == 0.0  # the director turned: close, no flip
    assert _timing(LONG, (-0.9, 0.9), current=SIZE, held=3, hold=10).lots == SIZE  # held: cannot leave yet
    assert _timing(LONG, (-0.9, 0.9), current=SIZE, held=10, hold=10).lots == 0.0  # held long enough
    assert _timing((0.9, -0.2), (0.9, -1.0), current=SIZE, held=3, hold=10).lots == 4.0  # the director shrinks it
    assert _timing(NEUTRAL, (0.9, -1.0), current=SIZE, held=3, hold=10).lots == 0.0  # or closes it
    assert _timing((0.9, 0.7), (0.9, -1.0), current=SIZE).lots == SIZE  # 8.5 lots is inside the no-trade band
    assert joint_target_for("timing", LONG, (0.5, -1.0), 10.0, EURUSD, current=0.0).lots == SIZE
    assert joint_target_for("free", LONG, (0.5, -1.0), 10.0, EURUSD, current=0.0).lots == 5.0  # free: 0.5 x 10
    with pytest.raises(ValueError, match="unknown action mode"):
        joint_target_for("bold", LONG, (0.5, -1.0), 10.0, EURUSD, current=0.0)
