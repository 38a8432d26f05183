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

No-trade band: both mappings take the ``current`` position and keep it when the new target differs from it by
less than ``band`` x ``max_lots`` (default ``REBALANCE_BAND``, 10 %), unless the current position exceeds what is
now allowed (the director's limit or direction). The exit signal has the same band as hysteresis:
in a position it takes an exit confidence above 0.5 + ``band`` to exit, flat it takes one below 0.5 - ``band``
to enter. A continuous policy's output moves a little every minute; without the band each wiggle is an order
paying spread and commission, and churn, not the market, decides the P&L (a policy whose exit confidence sat
near 0.5 entered and left ~470 times in 120k bars and lost 10 % to costs).
"""

from __future__ import annotations

from typing import NamedTuple

from brokers.instruments import Instrument

BIAS_THRESHOLD = 0.3
EXIT_THRESHOLD = 0.5
REBALANCE_BAND = 0.1


def unit_interval(a: float) -> float:
    """[-1, 1] -> [0, 1], clipped."""
    return min(1.0, max(0.0, (a + 1.0) * 0.5))


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
