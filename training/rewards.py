"""The differential Sharpe ratio (Moody and Saffell, "Learning to trade via direct reinforcement", 2001): a reward
whose running sum follows the Sharpe ratio of the rewards it is fed.

With exponential moving averages ``A`` (mean) and ``B`` (second moment) of the per-bar returns ``r`` at rate ``eta``,
the Sharpe ratio ``S = A / sqrt(B - A^2)`` moves, to first order in ``eta``, by ``eta * D`` per bar, with

    D = (B_prev * dA - A_prev * dB / 2) / (B_prev - A_prev^2) ** 1.5,   dA = r - A_prev,   dB = r^2 - B_prev.

Choices (``training.env_config.EnvConfig.reward = "dsr"``): the returns are the env's normalised P&L (P&L over one
minute's typical P&L of a full-size position, the default reward's unit), ``A`` and ``B`` start at 0 and 1 (a
full-size position's variance) each episode, and the variance is floored at ``var_floor`` (0.1, about a 30 %-size
position's; the Sharpe ratio does not care about size, so smaller positions are not rewarded less; where the floor
binds, D is the derivative of the floored ratio, ``dA / sqrt(var_floor)``): without the floor a long flat spell
drives ``B`` to 0 and the first minute of the next trade to the clip, the failure
``training.account.Account.reward`` describes for a reward scaled by the agent's own volatility.
"""

from __future__ import annotations


class DifferentialSharpe:
    """:param eta: EMA rate per bar (1 / 1440: about a day of M1 bars)
    :param var_floor: lower bound of ``B - A^2`` (0.1: the variance of a position of about 30 % of full size)"""

    def __init__(self, eta: float = 1.0 / 1440, var_floor: float = 0.1) -> None:
        if not (0.0 < eta < 1.0 and var_floor > 0.0):
            raise ValueError(f"eta must be in (0, 1) and var_floor > 0, got {eta}, {var_floor}")
        self.eta, self.var_floor = eta, var_floor
        self.reset()

    def reset(self) -> None:
        self.a, self.b = 0.0, 1.0

    def sharpe(self) -> float:
        """The Sharpe ratio of the moving averages (floored variance)."""
        return self.a / max(self.b - self.a * self.a, self.var_floor) ** 0.5

    def step(self, r: float) -> float:
        """D for return ``r``, then the averages updated with it."""
        a, b = self.a, self.b
        da, db = r - a, r * r - b
        var = b - a * a
        if var > self.var_floor:
            d = (b * da - 0.5 * a * db) / var**1.5
        else:  # the floored Sharpe ratio a / sqrt(var_floor) moves by eta * da / sqrt(var_floor)
            d = da / self.var_floor**0.5
        self.a, self.b = a + self.eta * da, b + self.eta * db
        return d
