"""Drawdown rules, the CMDP constraints: one definition for the validator, the analyzer and the envs.

Two modes:

``prop`` (default, FTMO-style): equity (floating P&L, commission and swap included) must stay above
  ``balance at the last day boundary - daily_limit x initial balance`` and never fall below
  ``(1 - total_limit) x initial balance``. The day boundary is midnight Europe/Prague (DST included) by
  default. A floating loss carried past midnight counts against the new day, because the new day's
  reference is the *balance*.
``trailing`` (the original design): daily drawdown from the day's equity peak, total drawdown from the
  running equity peak.

Both are expressed as an equity *floor* in USD. ``DrawdownGuard`` is the small state object that plugs
into ``brokers.sim.ForexSim`` as its guard: before each bar it hands the sim the floor (the sim closes the
position at the floor price, like a stop order, or at the open if a gap jumps past it); after the bar it
measures the drawdowns at the bar's worst price, records soft-zone entries and breaches, and halts new
entries (``TradingState.REDUCING`` until the next day boundary on a daily breach, ``HALTED`` for good on a total
breach). The guard works on any ``brokers.account.AccountView`` (the simulation core or the live MT5 account), and
its state round-trips through ``state_dict`` so a live process keeps its day anchor and halt across a restart.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal
from zoneinfo import ZoneInfo

from brokers.account import TradingState
from configs import load_yaml

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TOL = 1e-9


@dataclass(frozen=True)
class DrawdownRules:
    """Limits as fractions; see the module docstring for the two modes.

    :param daily_limit: daily loss limit (0.05 = 5 %)
    :param total_limit: total loss limit (0.10 = 10 %)
    :param soft_zone: daily drawdown from which the soft zone starts (penalties, warnings)
    :param mode: ``"prop"`` or ``"trailing"``
    :param day_timezone: IANA zone whose midnight (plus ``day_start_hour``) starts a trading day
    :param day_start_hour: hour of the day boundary in that zone
    """

    daily_limit: float = 0.05
    total_limit: float = 0.10
    soft_zone: float = 0.03
    mode: Literal["prop", "trailing"] = "prop"
    day_timezone: str = "Europe/Prague"
    day_start_hour: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("prop", "trailing"):
            raise ValueError(f"unknown drawdown mode {self.mode!r}: use 'prop' or 'trailing'")
        if not (0 < self.soft_zone <= self.daily_limit <= self.total_limit < 1):
            raise ValueError(f"drawdown limits need 0 < soft_zone <= daily_limit <= total_limit < 1, got "
                             f"soft_zone={self.soft_zone}, daily_limit={self.daily_limit}, "
                             f"total_limit={self.total_limit}")
        ZoneInfo(self.day_timezone)  # fails loudly on a bad zone name

    @classmethod
    def from_config(cls, **overrides: object) -> DrawdownRules:
        """Defaults from ``configs/drawdown.yaml``; ``None`` overrides are ignored.

        A daily limit tighter than the configured soft zone (``--daily-limit 0.02`` with a 3 % soft zone)
        scales the soft zone with it, keeping the configured soft_zone / daily_limit ratio, unless
        ``soft_zone`` is given too.
        """
        base = cls(**load_yaml("drawdown"))
        given = {k: v for k, v in overrides.items() if v is not None}
        daily = given.get("daily_limit")
        if "soft_zone" not in given and daily is not None and base.soft_zone > daily:
            given["soft_zone"] = base.soft_zone / base.daily_limit * float(daily)
        return replace(base, **given)

    @property
    def total_soft_zone(self) -> float:
        """Total drawdown from which the soft zone starts: as far from the total limit as the daily one."""
        return self.total_limit - (self.daily_limit - self.soft_zone)

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "daily_limit": self.daily_limit, "total_limit": self.total_limit,
                "soft_zone": self.soft_zone, "day_timezone": self.day_timezone,
                "day_start_hour": self.day_start_hour}


def next_day_boundary(minute: int, rules: DrawdownRules) -> int:
    """First trading-day boundary strictly after ``minute`` (minutes since the epoch, UTC)."""
    tz = ZoneInfo(rules.day_timezone)
    local = (_EPOCH + dt.timedelta(minutes=minute)).astimezone(tz)
    day = local.date()
    while True:
        cand = dt.datetime(day.year, day.month, day.day, rules.day_start_hour, tzinfo=tz)
        if cand > local:
            return int((cand - _EPOCH).total_seconds() // 60)
        day += dt.timedelta(days=1)


def floors(rules: DrawdownRules, initial: float, day_ref: float, peak: float, day_peak: float) -> tuple[float, float]:
    """(daily floor, total floor) in USD: equity below a floor breaches that limit.

    ``day_ref`` is the balance at the last day boundary (prop); ``peak``/``day_peak`` the running and the
    day's equity peaks (trailing).
    """
    if rules.mode == "prop":
        return day_ref - rules.daily_limit * initial, (1.0 - rules.total_limit) * initial
    return day_peak * (1.0 - rules.daily_limit), peak * (1.0 - rules.total_limit)


def drawdowns(rules: DrawdownRules, initial: float, day_ref: float, peak: float, day_peak: float,
              equity: float) -> tuple[float, float]:
    """(daily, total) drawdown of ``equity`` as fractions, >= 0; a limit is breached when one exceeds it."""
    if rules.mode == "prop":
        return max(0.0, (day_ref - equity) / initial), max(0.0, (initial - equity) / initial)
    return max(0.0, (day_peak - equity) / day_peak), max(0.0, (peak - equity) / peak)


@dataclass(frozen=True)
class Breach:
    """A limit crossed: when, which, how far, and whether a price gap jumped past it."""

    minute: int
    kind: Literal["daily", "total"]
    drawdown: float
    limit: float
    gap: bool

    def to_dict(self) -> dict[str, object]:
        t = _EPOCH + dt.timedelta(minutes=self.minute)
        return {"time": t.isoformat(), "kind": self.kind, "drawdown": round(self.drawdown, 6),
                "limit": self.limit, "gap": self.gap}


@dataclass
class DrawdownGuard:
    """Per-account drawdown state; the guard hook of ``ForexSim`` (``before_bar`` / ``after_bar``).

    :param rules: the limits
    :param initial: initial balance in USD
    """

    rules: DrawdownRules
    initial: float
    breaches: list[Breach] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.day_ref = self.peak = self.day_peak = self.initial
        self.daily_dd = self.total_dd = 0.0
        self.max_daily_dd = self.max_total_dd = 0.0
        self.floor = -math.inf
        self.binding = "total"
        self.in_soft_zone = False
        self.soft_zone_entries = 0
        self.halted_for_good = False
        self.breaches = []
        self._next_boundary = -1
        self._breached = False  # a breach is already recorded for this day (for good after a total one)
        self.new_breach: Breach | None = None

    # ----------------------------------------------------------------- hooks
    def before_bar(self, sim, minute: int) -> None:
        """Start a new trading day if a boundary passed, and give the sim this bar's equity floor."""
        if minute >= self._next_boundary:
            if self._next_boundary >= 0:  # the balance/equity at the boundary = at the last close
                self.day_ref = sim.balance
                self.day_peak = sim.equity
                self._breached = self.halted_for_good
            self._next_boundary = next_day_boundary(minute, self.rules)
        daily, total = floors(self.rules, self.initial, self.day_ref, self.peak, self.day_peak)
        self.binding = "total" if total >= daily else "daily"
        self.floor = max(daily, total)
        sim.equity_floor = self.floor

    def floor_at(self, minute: int, balance: float, equity: float) -> float:
        """The floor ``before_bar`` will set for a bar opening at ``minute`` if the account is then at ``balance`` /
        ``equity``, without changing any state: what a live broker's protective stop must sit at before the bar
        comes (the boundary logic is ``before_bar``'s)."""
        new_day = self._next_boundary >= 0 and minute >= self._next_boundary
        day_ref, day_peak = (balance, equity) if new_day else (self.day_ref, self.day_peak)
        return max(floors(self.rules, self.initial, day_ref, self.peak, day_peak))

    def after_bar(self, sim, minute: int) -> None:
        """Measure at the bar's worst price; record soft-zone entries and breaches; halt on a breach."""
        worst = min(sim.worst_equity, sim.equity)
        r = self.rules
        d, t = drawdowns(r, self.initial, self.day_ref, self.peak, self.day_peak, worst)
        self.daily_dd, self.total_dd = d, t
        if d > self.max_daily_dd:
            self.max_daily_dd = d
        if t > self.max_total_dd:
            self.max_total_dd = t
        soft = d >= r.soft_zone or t >= r.total_soft_zone
        if soft and not self.in_soft_zone:
            self.soft_zone_entries += 1
        self.in_soft_zone = soft
        self.new_breach = None
        # a stop that fires is a new breach; equity merely staying below the floor (flat after a gap) is not
        if sim.equity_stop_fired or (worst < self.floor - _TOL * self.initial and not self._breached):
            self._breached = True
            kind = self.binding
            if t > r.total_limit + _TOL:  # a gap past both floors is a total breach, whichever was binding
                kind = "total"
            self.new_breach = Breach(minute, kind, d if kind == "daily" else t,
                                     r.daily_limit if kind == "daily" else r.total_limit, sim.equity_stop_gap)
            self.breaches.append(self.new_breach)
            if kind == "total":
                self.halted_for_good = True
                sim.trading_state = TradingState.HALTED
            elif sim.trading_state is not TradingState.HALTED:
                sim.trading_state = TradingState.REDUCING
                sim.resume_at = max(sim.resume_at, self._next_boundary)
            if sim.lots or sim.pending_lots:  # flatten whatever the equity stop did not
                sim.cancel_pending()
                sim.submit_target(0.0)
        if sim.equity > self.peak:
            self.peak = sim.equity
        if sim.equity > self.day_peak:
            self.day_peak = sim.equity

    @property
    def halted(self) -> bool:
        return self.halted_for_good

    _STATE = ("day_ref", "peak", "day_peak", "daily_dd", "total_dd", "max_daily_dd", "max_total_dd", "floor",
              "binding", "in_soft_zone", "soft_zone_entries", "halted_for_good", "_next_boundary", "_breached")

    def state_dict(self) -> dict[str, object]:
        """Everything the guard carries from bar to bar (JSON-able), so a restarted live process continues the
        same trading day with the same anchor, breaches and halt."""
        return {**{k: getattr(self, k) for k in self._STATE}, "rules": self.rules.to_dict(), "initial": self.initial,
                "breaches": [asdict(b) for b in self.breaches]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state["rules"] != self.rules.to_dict() or state["initial"] != self.initial:
            raise ValueError(f"saved drawdown state is for other rules or another initial balance: {state['rules']}, "
                             f"{state['initial']} vs {self.rules.to_dict()}, {self.initial}")
        for k in self._STATE:
            setattr(self, k, state[k])
        self.breaches = [Breach(**b) for b in state["breaches"]]
        self.new_breach = None

    def summary(self) -> dict[str, object]:
        return {**self.rules.to_dict(), "soft_zone_entries": self.soft_zone_entries,
                "breaches": [b.to_dict() for b in self.breaches], "halted": self.halted_for_good,
                "max_daily_dd": self.max_daily_dd, "max_total_dd": self.max_total_dd}
