"""From agent actions to a target position: the one documented mapping, shared by strategies and envs.

All actions live in [-1, 1] (what SB3 and TD3 actors emit). Sizes are fractions of ``max_lots``, the
position a full-size action means (``max_lots_for``: ``max_exposure`` x equity of notional).

Single agent: ``a = [position, exit_confidence]``; the target is ``position x max_lots`` unless
``exit_confidence`` (mapped to [0, 1]) exceeds 0.5, which means flat.

Two agents:
* H4 risk director ``[trend_bias, limit]``: ``trend_bias`` in [-1, 1]; ``limit = (a + 1) / 2`` in [0, 1] is the
  largest fraction of ``max_lots`` the M1 agent may hold. ``trend_bias > +0.3`` allows longs only,
  ``< -0.3`` shorts only, in between both directions.
* M1 execution agent ``[entry_size, exit_confidence]``: signed ``entry_size`` in [-1, 1]; it is projected onto
  what the director allows (clipped to +-limit, zeroed against the allowed direction) and is flat when
  ``exit_confidence`` (mapped to [0, 1]) exceeds 0.5.
The design document's ``entry_size x max_position_limit`` would scale by the limit twice; we clip instead,
so ``|target| <= limit x max_lots`` always holds and an attempt to exceed it is reported as a violation.

Timing mode (``joint_target_for(mode="timing")``, an action design that cannot churn): the director decides the
direction (its bias beyond +-``BIAS_THRESHOLD``; in between, flat) and the size (its limit x ``max_lots``); the M1
agent only times entries and exits in that direction (``entry_size`` > +``band`` enters when flat, < -``band`` leaves
when in, or an exit confidence as above). It cannot flip the position or choose its size, a position against a new
direction is closed, and an entry is held at least ``min_hold_bars`` M1 bars unless the director forces it down.

No-trade band: both mappings take the ``current`` position and keep it when the new target differs from it by
less than ``band`` x ``max_lots`` (default ``REBALANCE_BAND``, 10 %), unless the current position exceeds what is
now allowed (the director's limit or direction). The exit signal has the same band as hysteresis:
in a position it takes an exit confidence above 0.5 + ``band`` to exit, flat it takes one below 0.5 - ``band``
to enter. A continuous policy's output moves a little every minute; without the band each wiggle is an order
paying spread and commission, and churn, not the market, decides the P&L (a policy whose exit confidence sat
near 0.5 entered and left ~470 times in 120k bars and lost 10 % to costs).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from brokers.instruments import Instrument

ActionMode = Literal["free", "timing"]

BIAS_THRESHOLD = 0.3
EXIT_THRESHOLD = 0.5
REBALANCE_BAND = 0.1


def unit_interval(a: float) -> float:
    """[-1, 1] -> [0, 1], clipped."""
    return min(1.0, max(0.0, (a + 1.0) * 0.5))


def director_decision(h4_action) -> tuple[float, float]:
    """(trend bias in [-1, 1], limit in [0, 1]) of a director action: the one clamp of envs, strategies and
    benchmarks."""
    return max(-1.0, min(1.0, float(h4_action[0]))), unit_interval(float(h4_action[1]))


def max_lots_for(equity: float, price: float, inst: Instrument, max_exposure: float) -> float:
    """Lots whose notional is ``max_exposure`` x equity (USD), rounded down to the lot step."""
    notional_per_lot = inst.to_account(inst.contract_size * price, price)
    return inst.round_lots(max(0.0, equity) * max_exposure / notional_per_lot)


def banded(target: float, current: float, band_lots: float, cap_lots: float) -> float:
    """``target``, or ``current`` when the move is smaller than ``band_lots`` and ``current`` is allowed
    (``|current| <= cap_lots``; a negative cap forbids any position). Explicit exits are decided before
    (``wants_flat``): a size that merely rounds to zero, or flips sign, inside the band is not one."""
    if abs(current) > cap_lots + 1e-9 or abs(target - current) >= band_lots - 1e-9:
        return target
    return current


def wants_flat(exit_confidence: float, current: float, band: float) -> bool:
    """The exit signal, with hysteresis ``band`` around ``EXIT_THRESHOLD`` (on the [0, 1] confidence)."""
    return unit_interval(exit_confidence) > EXIT_THRESHOLD + (band if current != 0.0 else -band)


def single_target(position: float, exit_confidence: float, max_lots: float, inst: Instrument, *,
                  current: float, band: float = REBALANCE_BAND) -> float:
    if wants_flat(exit_confidence, current, band):
        return 0.0
    target = inst.round_lots(min(1.0, max(-1.0, position)) * max_lots)
    return banded(target, current, band * max_lots, max_lots)


class JointTarget(NamedTuple):
    lots: float
    fraction: float  # signed fraction of max_lots actually targeted, |fraction| <= limit
    limit: float  # the director's limit in [0, 1]
    violation: bool  # the M1 agent asked for more than the director allows (before projection)


def joint_target(h4_action: tuple[float, float], m1_action: tuple[float, float], max_lots: float,
                 inst: Instrument, *, current: float, band: float = REBALANCE_BAND) -> JointTarget:
    bias = min(1.0, max(-1.0, h4_action[0]))
    limit = unit_interval(h4_action[1])
    entry = min(1.0, max(-1.0, m1_action[0]))
    if wants_flat(m1_action[1], current, band):
        return JointTarget(0.0, 0.0, limit, False)
    frac = min(limit, max(-limit, entry))
    if (bias > BIAS_THRESHOLD and frac < 0.0) or (bias < -BIAS_THRESHOLD and frac > 0.0):
        frac = 0.0
    violation = abs(entry - frac) > 1e-9
    lots = inst.round_lots(frac * max_lots)
    against = (bias > BIAS_THRESHOLD and current < 0.0) or (bias < -BIAS_THRESHOLD and current > 0.0)
    kept = banded(lots, current, band * max_lots, -1.0 if against else inst.round_lots(limit * max_lots))
    if kept != lots and max_lots > 0.0:
        lots, frac = kept, kept / max_lots
    return JointTarget(lots, frac, limit, violation)


def timing_target(h4_action: tuple[float, float], m1_action: tuple[float, float], max_lots: float,
                  inst: Instrument, *, current: float, held_bars: int, min_hold_bars: int = 0,
                  band: float = REBALANCE_BAND) -> JointTarget:
    """The timing mode of the module docstring: direction and size from the director, timing from the executor."""
    bias = min(1.0, max(-1.0, h4_action[0]))
    limit = unit_interval(h4_action[1])
    direction = 1.0 if bias > BIAS_THRESHOLD else (-1.0 if bias < -BIAS_THRESHOLD else 0.0)
    size = inst.round_lots(limit * max_lots)
    if direction == 0.0 or size == 0.0 or (current and (current > 0) != (direction > 0)):
        lots = 0.0  # the director wants flat, or the other side: close (a re-entry needs the executor again)
    elif current and held_bars < min_hold_bars:
        lots = direction * min(abs(current), size)  # held: the executor cannot leave yet, the director can shrink it
    else:
        inside = m1_action[0] > -band if current else m1_action[0] > band  # hysteresis around 0
        lots = direction * size if inside and not wants_flat(m1_action[1], current, band) else 0.0
        if lots and current and abs(lots - current) < band * max_lots - 1e-9:
            lots = current  # the no-trade band: a small resize is not worth its costs
    return JointTarget(lots, lots / max_lots if max_lots > 0 else 0.0, limit, False)


def joint_target_for(mode: ActionMode, h4_action: tuple[float, float], m1_action: tuple[float, float],
                     max_lots: float, inst: Instrument, *, current: float, held_bars: int = 0,
                     min_hold_bars: int = 0, band: float = REBALANCE_BAND) -> JointTarget:
    """The one switch between the two MTF-MARL action designs (envs and strategies call it, with the mode and the
    holding time their env config records)."""
    if mode == "free":
        return joint_target(h4_action, m1_action, max_lots, inst, current=current, band=band)
    if mode == "timing":
        return timing_target(h4_action, m1_action, max_lots, inst, current=current, held_bars=held_bars,
                             min_hold_bars=min_hold_bars, band=band)
    raise ValueError(f"unknown action mode {mode!r}: use 'free' or 'timing'")
