"""Drawdown rules, guard, pre-trade validator and the sim's equity stop: fast and pure.

The guard is checked against a slow reference written here from the definitions (peaks and the day's
reference recomputed from scratch at every bar), on random equity paths crossing Prague DST changes.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.account import TradingState
from brokers.instruments import get_instrument
from brokers.sim import ForexSim, Rejection, minute_of, utc_of
from risk.drawdown import DrawdownGuard, DrawdownRules, next_day_boundary
from risk.validator import PreTradeValidator

EURUSD = get_instrument("EURUSD")
USDJPY = get_instrument("USDJPY")
PRAGUE = ZoneInfo("Europe/Prague")
INITIAL = 100_000.0


def m(*args: int) -> int:
    return minute_of(dt.datetime(*args, tzinfo=dt.UTC))


class FakeSim:
    """The attributes and calls DrawdownGuard uses, nothing else."""

    def __init__(self, balance: float = INITIAL) -> None:
        self.balance = self.equity = self.worst_equity = balance
        self.lots = 0.0
        self.pending_lots = 0.0
        self.equity_stop_fired = False
        self.equity_stop_gap = False
        self.trading_state = TradingState.ACTIVE
        self.resume_at = -1
        self.equity_floor = -math.inf
        self.calls: list[tuple] = []

    def cancel_pending(self) -> list[int]:
        self.calls.append(("cancel_pending",))
        return []

    def submit_target(self, lots: float) -> None:
        self.calls.append(("submit_target", lots))


def step(guard: DrawdownGuard, sim: FakeSim, minute: int, balance: float, equity: float,
         worst: float | None = None) -> None:
    """One bar: the guard sees the previous close at ``before_bar``, this bar's values at ``after_bar``."""
    guard.before_bar(sim, minute)
    sim.balance, sim.equity = balance, equity
    sim.worst_equity = equity if worst is None else worst
    guard.after_bar(sim, minute)


# --------------------------------------------------------------------------- day boundary


def trading_day(minute: int, rules: DrawdownRules) -> dt.date:
    """The trading day a minute belongs to: the local date, shifted back by the day start hour."""
    local = utc_of(minute).astimezone(ZoneInfo(rules.day_timezone)).replace(tzinfo=None)
    return (local - dt.timedelta(hours=rules.day_start_hour)).date()


@pytest.mark.parametrize(("now", "boundary"), [
    (m(2024, 7, 8, 10, 0), m(2024, 7, 8, 22, 0)),  # summer (CEST): Prague midnight = 22:00 UTC
    (m(2024, 1, 15, 10, 0), m(2024, 1, 15, 23, 0)),  # winter (CET): 23:00 UTC
    (m(2024, 7, 8, 22, 0), m(2024, 7, 9, 22, 0)),  # strictly after
    (m(2024, 7, 8, 21, 59), m(2024, 7, 8, 22, 0)),
    (m(2024, 3, 30, 12, 0), m(2024, 3, 30, 23, 0)),  # DST starts 31 March: that midnight is still CET
    (m(2024, 3, 31, 12, 0), m(2024, 3, 31, 22, 0)),  # ... the next one CEST
    (m(2024, 10, 26, 12, 0), m(2024, 10, 26, 22, 0)),  # DST ends 27 October: midnight still CEST
    (m(2024, 10, 27, 12, 0), m(2024, 10, 27, 23, 0)),
])
def test_prague_boundary_with_dst(now, boundary):
    assert next_day_boundary(now, DrawdownRules()) == boundary


def test_rules_validation_and_config_overrides():
    with pytest.raises(ValueError):
        DrawdownRules(mode="peak")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DrawdownRules(daily_limit=0.02, soft_zone=0.03)
    r = DrawdownRules.from_config(daily_limit=None, total_limit=0.2)
    assert (r.daily_limit, r.total_limit, r.soft_zone, r.mode) == (0.05, 0.2, 0.03, "prop")
    # a daily limit tighter than the configured soft zone scales the soft zone (was a ValueError)
    tight = DrawdownRules.from_config(daily_limit=0.02, total_limit=0.04)
    assert tight.soft_zone == pytest.approx(0.012) and tight.soft_zone <= tight.daily_limit
    assert DrawdownRules.from_config(daily_limit=0.02, soft_zone=0.01).soft_zone == 0.01


# --------------------------------------------------------------------------- guard vs reference


def reference(rules: DrawdownRules, minutes: list[int], path: list[tuple[float, float, float]]) -> list[dict]:
    """Recompute everything from scratch at every bar, straight from the rule definitions."""
    out = []
    days = [trading_day(t, rules) for t in minutes]
    for i in range(len(path)):
        first = days.index(days[i])  # first bar of this trading day
        prev_bal, prev_eq = (INITIAL, INITIAL) if first == 0 else path[first - 1][:2]
        day_ref = prev_bal  # balance at the boundary = at the last close before it
        closes_before = [p[1] for p in path[:i]]
        peak = max([INITIAL, *closes_before])
        day_peak = max([prev_eq, *[p[1] for p in path[first:i]]])
        if first == 0:
            day_peak = max(day_peak, INITIAL)
        w = min(path[i][2], path[i][1])
        if rules.mode == "prop":
            d_floor, t_floor = day_ref - rules.daily_limit * INITIAL, (1 - rules.total_limit) * INITIAL
            d, t = max(0.0, (day_ref - w) / INITIAL), max(0.0, (INITIAL - w) / INITIAL)
        else:
            d_floor, t_floor = day_peak * (1 - rules.daily_limit), peak * (1 - rules.total_limit)
            d, t = max(0.0, (day_peak - w) / day_peak), max(0.0, (peak - w) / peak)
        floor = max(d_floor, t_floor)
        out.append({"daily": d, "total": t, "floor": floor, "worst": w, "breach": w < floor,
                    "kind": "total" if t_floor >= d_floor or t > rules.total_limit else "daily"})
    return out


STARTS = [m(2024, 3, 29, 18, 0), m(2024, 10, 25, 18, 0), m(2024, 7, 8, 20, 30), m(2024, 1, 5, 21, 0)]
GAPS = st.one_of(st.sampled_from([1, 30, 60, 120, 60 * 24, 60 * 24 * 2]), st.integers(1, 3000))
BAR = st.tuples(GAPS, st.floats(-3000, 3000), st.floats(-8000, 4000), st.floats(0, 4000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["prop", "trailing"]), start=st.sampled_from(STARTS),
       start_hour=st.sampled_from([0, 17]), bars=st.lists(BAR, min_size=1, max_size=40))
def test_guard_matches_slow_reference(mode, start, start_hour, bars):
    rules = DrawdownRules(mode=mode, day_start_hour=start_hour)
    guard, sim = DrawdownGuard(rules, INITIAL), FakeSim()
    minutes, path, t, bal = [], [], start, INITIAL
    for gap, dbal, floating, extra in bars:
        t += gap
        bal = min(150_000.0, max(60_000.0, bal + dbal))
        minutes.append(t)
        path.append((bal, bal + floating, bal + floating - extra))
    ref = reference(rules, minutes, path)
    max_d = max_t = 0.0
    sure, latched, halted, day = True, False, False, None  # one breach a day at most, none after a total
    for t, (b, e, w), r in zip(minutes, path, ref, strict=True):
        before = sim.trading_state
        step(guard, sim, t, b, e, w)
        if trading_day(t, rules) != day:
            day, latched = trading_day(t, rules), halted
        expect = r["breach"] and not latched
        max_d, max_t = max(max_d, r["daily"]), max(max_t, r["total"])
        assert guard.floor == pytest.approx(r["floor"], rel=1e-12)
        if mode == "prop":
            assert guard.floor >= (1 - rules.total_limit) * INITIAL
        assert guard.daily_dd == pytest.approx(r["daily"], rel=1e-9, abs=1e-12)
        assert guard.total_dd == pytest.approx(r["total"], rel=1e-9, abs=1e-12)
        assert guard.max_daily_dd == pytest.approx(max_d, rel=1e-9, abs=1e-12)
        assert guard.max_total_dd == pytest.approx(max_t, rel=1e-9, abs=1e-12)
        if abs(r["worst"] - r["floor"]) < 1e-4 or abs(r["total"] - rules.total_limit) < 1e-7:
            sure = False  # within the guard's tolerance: either answer is right, and what follows depends on it
        if not sure:
            continue
        assert (guard.new_breach is not None) == expect
        if expect:
            latched = True
            halted = halted or guard.new_breach.kind == "total"
            b_ = guard.new_breach
            assert b_.kind == r["kind"] and b_.minute == t and not b_.gap
            assert b_.drawdown == pytest.approx(r["daily"] if b_.kind == "daily" else r["total"], rel=1e-9)
            if b_.kind == "total":
                assert sim.trading_state is TradingState.HALTED and guard.halted
            elif before is not TradingState.HALTED:  # reducing only until exactly the next trading day
                assert sim.trading_state is TradingState.REDUCING
                h = sim.resume_at
                assert trading_day(h, rules) != trading_day(t, rules)
                assert trading_day(h - 1, rules) == trading_day(t, rules)
    assert sim.calls == []  # flat all along: nothing to flatten


def test_prop_floating_loss_carried_past_midnight_counts_for_the_new_day():
    rules = DrawdownRules()
    guard, sim = DrawdownGuard(rules, INITIAL), FakeSim()
    t = m(2024, 7, 8, 21, 58)  # Prague midnight is 22:00 UTC
    step(guard, sim, t, INITIAL, 97_000.0)  # 3 % floating loss at the close before midnight
    assert guard.daily_dd == pytest.approx(0.03) and guard.in_soft_zone and guard.soft_zone_entries == 1
    step(guard, sim, t + 2, INITIAL, 97_000.0)  # new day: reference = balance, not equity
    assert guard.floor == pytest.approx(95_000.0) and guard.daily_dd == pytest.approx(0.03)
    step(guard, sim, t + 3, INITIAL, 95_100.0, 94_900.0)  # only 2.2 % below the day's opening equity
    assert guard.new_breach is not None and guard.new_breach.kind == "daily"
    assert guard.new_breach.drawdown == pytest.approx(0.051)
    assert (sim.trading_state, sim.resume_at) == (TradingState.REDUCING, m(2024, 7, 9, 22, 0)) and not guard.halted
    # a realised profit raises the next day's floor; the total floor stays at 90 % of initial
    step(guard, sim, m(2024, 7, 9, 21, 0), 103_000.0, 103_000.0)
    step(guard, sim, m(2024, 7, 9, 22, 0), 103_000.0, 103_000.0)
    assert guard.floor == pytest.approx(98_000.0) and guard.binding == "daily"
    step(guard, sim, m(2024, 7, 10, 22, 0), 91_000.0, 91_000.0)
    step(guard, sim, m(2024, 7, 11, 22, 0), 91_000.0, 91_000.0)
    assert guard.floor == pytest.approx(90_000.0) and guard.binding == "total"


def test_guard_total_breach_halts_for_good_and_flattens():
    guard, sim = DrawdownGuard(DrawdownRules(), INITIAL), FakeSim()
    sim.lots, sim.pending_lots = 3.0, 1.0
    step(guard, sim, m(2024, 7, 8, 10, 0), 95_000.0, 95_000.0)
    assert guard.breaches == []
    step(guard, sim, m(2024, 7, 9, 10, 0), 95_000.0, 95_000.0)  # new day at 95k: floors 90k / 90k
    assert guard.binding == "total"
    step(guard, sim, m(2024, 7, 9, 10, 1), 95_000.0, 91_000.0, 89_000.0)
    assert guard.new_breach.kind == "total" and guard.new_breach.drawdown == pytest.approx(0.11)
    assert guard.halted and sim.trading_state is TradingState.HALTED
    assert sim.calls == [("cancel_pending",), ("submit_target", 0.0)]
    assert guard.summary()["halted"] is True and len(guard.summary()["breaches"]) == 1


def test_guard_trailing_mode_daily_peak_and_soft_zone():
    rules = DrawdownRules(mode="trailing")
    guard, sim = DrawdownGuard(rules, INITIAL), FakeSim()
    t = m(2024, 1, 15, 12, 0)
    step(guard, sim, t, 110_000.0, 110_000.0)
    step(guard, sim, t + 1, 110_000.0, 106_000.0)
    assert guard.daily_dd == pytest.approx(4_000 / 110_000) and guard.in_soft_zone
    step(guard, sim, t + 2, 110_000.0, 104_400.0)  # 5.09 % below the day's peak
    assert guard.new_breach.kind == "daily"
    assert guard.floor == pytest.approx(110_000 * 0.95)


def test_equity_stop_fired_is_a_breach_with_its_gap_flag():
    guard, sim = DrawdownGuard(DrawdownRules(), INITIAL), FakeSim()
    guard.before_bar(sim, m(2024, 7, 8, 10, 0))
    sim.equity_stop_fired, sim.equity_stop_gap = True, True
    sim.balance = sim.equity = sim.worst_equity = 94_000.0
    guard.after_bar(sim, m(2024, 7, 8, 10, 0))
    b = guard.new_breach
    assert b.kind == "daily" and b.gap and b.drawdown == pytest.approx(0.06) and b.drawdown > b.limit
    assert not guard.halted and (sim.trading_state, sim.resume_at) == (TradingState.REDUCING, m(2024, 7, 8, 22, 0))


def test_gap_past_both_floors_is_a_total_breach():
    guard, sim = DrawdownGuard(DrawdownRules(), INITIAL), FakeSim()
    guard.before_bar(sim, m(2024, 7, 8, 10, 0))
    assert guard.binding == "daily"  # 95k daily floor above the 90k total floor
    sim.equity_stop_fired, sim.equity_stop_gap = True, True
    sim.balance = sim.equity = sim.worst_equity = 85_000.0
    guard.after_bar(sim, m(2024, 7, 8, 10, 0))
    b = guard.new_breach
    assert (b.kind, b.limit, b.gap) == ("total", 0.10, True) and b.drawdown == pytest.approx(0.15)
    assert guard.halted and sim.trading_state is TradingState.HALTED


# --------------------------------------------------------------------------- validator

ATR_EU, PX_EU = 0.0020, 1.08  # EURUSD spread 0.3 pip = 0.00003
ATR_JPY, PX_JPY = 0.50, 150.0  # USDJPY spread 0.4 pip = 0.004
# EURUSD: 100,000 x (2 x 0.0020 + 0.00003) = 403 USD + 2 x 3.5 commission = 410 USD a lot; 5,000 / 410 = 12.19
# USDJPY: 100,000 x (2 x 0.50 + 0.004) = 100,400 JPY / 150 = 669.33 USD + 7 = 676.33 USD a lot; 5,000 / 676.33 = 7.39


def eu_check(v: PreTradeValidator, target: float, current: float = 0.0, atr: float = ATR_EU):
    return v.check(target, current, 100_000.0, 95_000.0, PX_EU, 0.00003, atr)


def test_validator_max_safe_lots_by_hand():
    assert PreTradeValidator(EURUSD).max_safe_lots(100_000.0, 95_000.0, PX_EU, 0.00003, ATR_EU) == 12.19
    assert PreTradeValidator(USDJPY).max_safe_lots(100_000.0, 95_000.0, PX_JPY, 0.004, ATR_JPY) == 7.39
    assert PreTradeValidator(EURUSD).max_safe_lots(94_000.0, 95_000.0, PX_EU, 0.00003, ATR_EU) == 0.0


def test_validator_allow_shrink_block_and_counts():
    v = PreTradeValidator(EURUSD)
    assert eu_check(v, 12.19).outcome == "allow" and eu_check(v, -12.0).lots == -12.0
    s = eu_check(v, 20.0)
    assert (s.outcome, s.lots) == ("shrink", 12.19) and "shrunk" in s.reason
    s = eu_check(v, -20.0, current=5.0)  # shrinking a flip still moves the right way
    assert (s.outcome, s.lots) == ("shrink", -12.19)
    j = PreTradeValidator(USDJPY).check(-9.0, 0.0, 100_000.0, 95_000.0, PX_JPY, 0.004, ATR_JPY)
    assert (j.outcome, j.lots) == ("shrink", -7.39)
    # already above the safe size: adding more is blocked, the position kept
    b = eu_check(v, 15.0, current=13.0)
    assert (b.outcome, b.lots) == ("block", 13.0) and b.reason.startswith("blocked")
    assert (v.blocked, v.shrunk) == (1, 2)


def test_validator_block_mode_and_reductions():
    v = PreTradeValidator(EURUSD, on_excess="block")
    b = eu_check(v, 20.0, current=2.0)
    assert (b.outcome, b.lots) == ("block", 2.0)
    flip = eu_check(v, -20.0, current=5.0)  # a blocked flip closes the old side
    assert (flip.outcome, flip.lots) == ("block", 0.0)
    assert eu_check(v, 12.19).outcome == "allow"
    # reductions are never blocked: no room at all, NaN ATR, or partial close
    for target, current in ((10.0, 30.0), (0.0, 30.0), (-3.0, -30.0), (30.0, 30.0)):
        r = v.check(target, current, 90_000.0, 95_000.0, PX_EU, 0.00003, math.nan)
        assert (r.outcome, r.lots, r.reason) == ("allow", target, None)
    assert (v.blocked, v.shrunk) == (2, 0)
    with pytest.raises(ValueError):
        PreTradeValidator(EURUSD, on_excess="ignore")  # type: ignore[arg-type]


def test_validator_no_room_and_nan_atr_block():
    v = PreTradeValidator(EURUSD)
    r = v.check(1.0, 0.0, 95_001.0, 95_000.0, PX_EU, 0.00003, ATR_EU)  # room for 0.00 lots
    assert (r.outcome, r.lots) == ("block", 0.0)
    for atr in (math.nan, 0.0, -1.0):
        r = eu_check(v, 1.0, atr=atr)
        assert (r.outcome, r.lots) == ("block", 0.0) and "ATR" in r.reason
    r = eu_check(v, -1.0, current=2.0, atr=math.nan)  # a flip without ATR still closes the old side
    assert (r.outcome, r.lots) == ("block", 0.0)
    r = eu_check(v, 3.0, current=2.0, atr=math.nan)  # an add without ATR keeps the position
    assert (r.outcome, r.lots) == ("block", 2.0)
    assert v.blocked == 6 and v.shrunk == 0


# --------------------------------------------------------------------------- equity stop in the sim

T0 = m(2024, 7, 8, 10, 0)  # liquid hour: spread x1


def opened(inst, lots: float, price: float, floor: float) -> ForexSim:
    """A sim holding ``lots`` bought/sold at the open of bar T0+1 (flat bar at ``price``), floor set after."""
    sim = ForexSim(inst)
    sim.on_bar(T0, price, price, price, price)
    assert isinstance(sim.submit(lots), int)
    sim.on_bar(T0 + 1, price, price, price, price)
    assert sim.lots == lots
    sim.equity_floor = floor
    return sim


@pytest.mark.parametrize(("inst", "lots", "price", "bar"), [
    (EURUSD, 10.0, 1.08, lambda p: (p, p, p - 0.0100, p - 0.0050)),  # long: the low crosses
    (EURUSD, -10.0, 1.08, lambda p: (p, p + 0.0100, p, p + 0.0050)),  # short: the high ask crosses
    (USDJPY, 10.0, 150.0, lambda p: (p, p, p - 2.0, p - 1.0)),
    (USDJPY, -10.0, 150.0, lambda p: (p, p + 2.0, p, p + 1.0)),
])
def test_equity_stop_closes_exactly_at_the_floor(inst, lots, price, bar):
    floor = 99_000.0
    sim = opened(inst, lots, price, floor)
    o, h, lo, c = bar(price)
    fills = sim.on_bar(T0 + 2, o, h, lo, c)
    assert [f.reason for f in fills] == ["equity_stop"]
    f = fills[0]
    assert sim.lots == 0.0 and sim.equity_stop_fired and not sim.equity_stop_gap
    assert sim.equity == pytest.approx(floor, abs=1e-6) and sim.balance == pytest.approx(floor, abs=1e-6)
    if lots > 0:
        assert lo <= f.price <= o
    else:
        assert o + sim.spread <= f.price <= h + sim.spread  # bought back at the ask
    # the next bar: nothing left to stop
    assert list(sim.on_bar(T0 + 3, c, c, c, c)) == [] and not sim.equity_stop_fired


@pytest.mark.parametrize(("inst", "lots", "price", "gap_open"), [
    (EURUSD, 10.0, 1.08, 1.0650),
    (EURUSD, -10.0, 1.08, 1.0950),
    (USDJPY, 10.0, 150.0, 147.0),
    (USDJPY, -10.0, 150.0, 153.0),
])
def test_equity_stop_gap_fills_at_the_open(inst, lots, price, gap_open):
    floor = 99_000.0
    sim = opened(inst, lots, price, floor)
    o = gap_open
    fills = sim.on_bar(T0 + 2, o, max(o, o + 0.0001), min(o, o - 0.0001), o)
    f = fills[-1]
    assert f.reason == "equity_stop" and sim.equity_stop_gap and sim.lots == 0.0
    expected_px = o if lots > 0 else o + sim.spread
    assert f.price == pytest.approx(expected_px, abs=1e-12)
    units = lots * inst.contract_size
    entry = price + sim.spread if lots > 0 else price
    pnl = units * (expected_px - entry) * (1.0 if inst.quote_is_account else 1.0 / expected_px)
    assert sim.balance == pytest.approx(INITIAL + pnl - 2 * abs(lots) * inst.commission_per_lot, abs=1e-6)
    assert sim.equity < floor


def test_no_equity_stop_above_the_floor():
    sim = opened(EURUSD, 10.0, 1.08, 99_000.0)
    fills = sim.on_bar(T0 + 2, 1.08, 1.08, 1.0792, 1.0795)  # 99,100 USD after closing costs
    assert list(fills) == [] and sim.lots == 10.0 and not sim.equity_stop_fired


def test_reducing_state_rejects_increases_accepts_reductions():
    sim = opened(EURUSD, 2.0, 1.08, -math.inf)
    sim.trading_state, sim.resume_at = TradingState.REDUCING, T0 + 100
    r = sim.submit(1.0)
    assert isinstance(r, Rejection) and "halted" in r.reason and "2024-07-08 11:40" in r.reason
    assert isinstance(sim.submit(-4.5), Rejection)  # flipping to a bigger short increases |position|
    assert isinstance(sim.submit_target(1.0), int)  # reduce
    assert isinstance(sim.submit_target(0.0), int)  # and close, net of the pending order
    assert sim.pending_lots == -2.0
    sim.on_bar(T0 + 2, 1.08, 1.08, 1.08, 1.08)
    assert sim.lots == 0.0
    assert isinstance(sim.submit(0.5), Rejection) and isinstance(sim.submit(-0.5), Rejection)  # flat: any entry
    sim.trading_state = TradingState.HALTED
    assert "for good" in sim.submit(1.0).reason
    sim.on_bar(T0 + 200, 1.08, 1.08, 1.08, 1.08)
    assert sim.trading_state is TradingState.HALTED  # for good: no bar lifts it
    sim.trading_state, sim.resume_at = TradingState.REDUCING, T0 + 203
    sim.on_bar(T0 + 202, 1.08, 1.08, 1.08, 1.08)
    assert isinstance(sim.submit(1.0), Rejection)
    sim.on_bar(T0 + 203, 1.08, 1.08, 1.08, 1.08)  # the reducing state is over at the first bar from resume_at
    assert sim.trading_state is TradingState.ACTIVE and isinstance(sim.submit(1.0), int)


def test_guard_state_round_trips_for_a_restart():
    """A live process restarted mid-day resumes with the same anchor, breaches and halt as if it had not stopped."""
    rules = DrawdownRules()
    path = [(m(2024, 7, 8, 21, 58), INITIAL, 97_000.0, None), (m(2024, 7, 8, 22, 0), INITIAL, 97_000.0, None),
            (m(2024, 7, 8, 22, 5), INITIAL, 95_100.0, 94_900.0), (m(2024, 7, 9, 9, 0), 94_000.0, 94_000.0, None),
            (m(2024, 7, 9, 22, 0), 94_000.0, 94_000.0, None)]
    whole, sim_a = DrawdownGuard(rules, INITIAL), FakeSim()
    for t, b, e, w in path:
        step(whole, sim_a, t, b, e, w)
    first, sim_b = DrawdownGuard(rules, INITIAL), FakeSim()
    for t, b, e, w in path[:3]:
        step(first, sim_b, t, b, e, w)
    import json

    saved = json.loads(json.dumps(first.state_dict()))
    resumed = DrawdownGuard(rules, INITIAL)
    resumed.load_state_dict(saved)
    for t, b, e, w in path[3:]:
        step(resumed, sim_b, t, b, e, w)
    assert resumed.state_dict() == whole.state_dict() and resumed.breaches == whole.breaches
    assert len(whole.breaches) == 1 and whole.floor == pytest.approx(90_000.0) and whole.binding == "total"
    with pytest.raises(ValueError, match="other rules"):
        DrawdownGuard(DrawdownRules(daily_limit=0.04), INITIAL).load_state_dict(saved)
