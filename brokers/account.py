"""The account as strategies, observations, the pre-trade validator and the drawdown guard see it.

One small protocol, implemented by the simulation core (``brokers.sim.ForexSim``, backtests and envs) and by the
MetaTrader 5 live account (``brokers.mt5``), so the same strategy, the same observations and the same drawdown
rules run on both without reaching into either (``self.broker.sim`` was the old way).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from brokers.instruments import Instrument
    from risk.drawdown import DrawdownGuard


class TradingState(IntEnum):
    """What orders an account accepts (a named state, persisted with the drawdown state, never a timestamp
    far in the future). A reduction (towards flat) is always accepted, so a breach can always be flattened."""

    ACTIVE = 0
    """any order"""
    REDUCING = 1
    """only orders that reduce the position, until ``resume_at`` (after a daily breach: the next trading day)"""
    HALTED = 2
    """only orders that reduce the position, for good (after a total breach)"""


class AccountView(Protocol):
    """Read (and, for the guard, steer) one account of one instrument; money in USD, sizes in lots.

    ``equity`` is marked at the last close (a long at the bid, a short at the ask) and ``worst_equity`` at the last
    bar's worst price for the position; ``equity_floor`` is the drawdown guard's floor for the current bar (the
    validator sizes against it); ``equity_stop_fired`` / ``equity_stop_gap`` say whether the floor closed the
    position in the last bar (and whether a gap jumped past it)."""

    instrument: Instrument
    initial_cash: float
    balance: float
    equity: float
    worst_equity: float
    units: int
    lots: float
    bid: float
    spread: float
    equity_floor: float
    equity_stop_fired: bool
    equity_stop_gap: bool
    trading_state: TradingState
    resume_at: int
    guard: DrawdownGuard | None

    @property
    def margin_used(self) -> float: ...

    @property
    def pending_lots(self) -> float: ...

    def submit_target(self, target_lots: float, sl: float | None = None, tp: float | None = None) -> object: ...

    def cancel_pending(self) -> list[int]: ...
