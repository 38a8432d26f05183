"""Pre-trade validator: refuse a target position whose worst case would breach the drawdown rules.

Worst case = the equity now, minus a move of ``atr_mult`` x ATR against the whole new position, minus the
spread and commission of reaching it, all in USD with the instrument's real pip value (USDJPY converts at
the current rate). The largest safe size is ``(equity - floor) / loss_per_lot``. A target within it is
allowed; beyond it the target is shrunk to the largest safe size (``on_excess="shrink"``, the default) or
the change is blocked: the position is kept, or closed if the target was the other side
(``"block"``, also when even the minimum lot is unsafe).
Reducing a position is never blocked. Small, pure, returns a reason instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from brokers.instruments import Instrument


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Literal["allow", "shrink", "block"]
    lots: float  # the target to trade towards
    reason: str | None


class PreTradeValidator:
    """Counts what it did, for the CMDP report.

    :param inst: the instrument (pip value, lot step, costs)
    :param atr_mult: ATR multiples of adverse move assumed (2 in the design)
    :param on_excess: ``"shrink"`` or ``"block"``
    """

    def __init__(self, inst: Instrument, atr_mult: float = 2.0, on_excess: Literal["shrink", "block"] = "shrink"):
        if on_excess not in ("shrink", "block"):
            raise ValueError("on_excess must be 'shrink' or 'block'")
        self.inst = inst
        self.atr_mult = atr_mult
        self.on_excess = on_excess
        self.blocked = 0
        self.shrunk = 0

    def max_safe_lots(self, equity: float, floor: float, price: float, spread: float, atr: float) -> float:
        inst = self.inst
        move = inst.contract_size * (self.atr_mult * atr + spread)
        per_lot = inst.to_account(move, price) + 2 * inst.commission_per_lot
        return inst.round_lots(max(0.0, equity - floor) / per_lot)

    def check(self, target: float, current: float, equity: float, floor: float, price: float, spread: float,
              atr: float) -> Verdict:
        """Verdict on moving from ``current`` to ``target`` lots with the equity floor ``floor`` (USD)."""
        if target == current or (target * current >= 0 and abs(target) <= abs(current)):
            return Verdict("allow", target, None)  # no change, or a reduction
        if not atr > 0.0:
            self.blocked += 1
            keep = 0.0 if target * current < 0 else current  # a blocked flip still closes the old side
            return Verdict("block", keep, f"no valid ATR ({atr}) to size the worst case")
        safe = self.max_safe_lots(equity, floor, price, spread, atr)
        if abs(target) <= safe:
            return Verdict("allow", target, None)
        why = (f"{abs(target)} lots could lose {self.atr_mult:g} ATR to the drawdown floor "
               f"({equity - floor:,.0f} USD of room, {safe} lots safe)")
        sign = 1.0 if target > 0 else -1.0
        if self.on_excess == "shrink" and safe >= self.inst.min_lot and safe * sign != current:
            if current * sign < 0 or safe > abs(current):  # shrinking still moves the right way
                self.shrunk += 1
                return Verdict("shrink", sign * safe, "shrunk: " + why)
        self.blocked += 1
        keep = 0.0 if current * sign < 0 else current  # a blocked flip still closes the old side
        return Verdict("block", keep, "blocked: " + why)


def validated_target(validator: PreTradeValidator | None, sim, target: float, atr: float) -> Verdict:
    """The validator's verdict on moving ``sim`` (a ``ForexSim``) to ``target`` lots under its equity floor.

    The one call the backtest strategies and the envs share, so both size identically.
    """
    if validator is None:
        return Verdict("allow", target, None)
    return validator.check(target, sim.lots, sim.equity, sim.equity_floor, sim.bid, sim.spread, atr)
