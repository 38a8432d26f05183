"""ForexSim: hand-computed trades, costs, swap, brackets, stop-out, and hypothesis invariants."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.instruments import UnknownSymbolError, get_instrument
from brokers.sim import Fill, ForexSim, Rejection, minute_of

EURUSD = get_instrument("EURUSD")
USDJPY = get_instrument("USDJPY")
XAUUSD = get_instrument("XAUUSD")
approx = pytest.approx


def m(*args: int) -> int:
    """Sim minute of a UTC wall time."""
    return minute_of(dt.datetime(*args, tzinfo=dt.UTC))


# A Monday in July 2024 (US summer time) at 10:00 UTC: liquid hours, spread x1.
T0 = m(2024, 7, 8, 10, 0)


def flat_bar(sim: ForexSim, minute: int, price: float) -> tuple[Fill, ...] | list[Fill]:
    return sim.on_bar(minute, price, price, price, price)


# --------------------------------------------------------------------------- hand-computed trades


def test_eurusd_round_trip_exact():
    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.08000)
    oid = sim.submit(1.0)
    assert isinstance(oid, int) and sim.lots == 0.0  # nothing fills on the submitting bar
    (buy,) = sim.on_bar(T0 + 1, 1.08100, 1.08150, 1.08050, 1.08120)
    assert buy.order_id == oid and buy.reason == "market"
    assert buy.price == approx(1.08103, rel=1e-12)  # next open + 0.3 pip
    assert buy.commission == 3.5
    assert buy.spread_cost == approx(100_000 * 0.00003, rel=1e-12)
    assert sim.lots == 1.0 and sim.avg_price == buy.price
    assert sim.equity == approx(100_000 - 3.5 + 100_000 * (1.08120 - 1.08103), rel=1e-12)
    sim.submit(-1.0)
    (sell,) = sim.on_bar(T0 + 2, 1.08200, 1.08250, 1.08180, 1.08210)
    assert sell.price == 1.08200  # a long sells at the bid
    assert sell.realised_pnl == approx(100_000 * (1.08200 - 1.08103), rel=1e-12)
    assert sell.spread_cost == 0.0  # closing opens nothing
    assert sim.costs_commission == 7.0
    assert sim.lots == 0.0 and sim.avg_price == 0.0
    assert sim.balance == approx(100_000 + 97.0 - 7.0, rel=1e-12)
    assert sim.equity == sim.balance == sim.worst_equity
    assert sim.costs_spread == approx(3.0, rel=1e-12) and sim.costs_swap == 0.0


def test_usdjpy_round_trip_converts_at_exit_rate():
    sim = ForexSim(USDJPY)
    flat_bar(sim, T0, 110.000)
    sim.submit(1.0)
    (buy,) = flat_bar(sim, T0 + 1, 110.000)
    assert buy.price == approx(110.004, rel=1e-12)  # 0.4 pip of 0.01
    assert buy.spread_cost == approx(100_000 * 0.004 / 110.004, rel=1e-12)
    sim.submit(-1.0)
    (sell,) = flat_bar(sim, T0 + 2, 111.000)
    expected = 100_000 * (111.000 - 110.004) / 111.000
    assert sell.realised_pnl == approx(expected, rel=1e-12)
    assert sim.balance == approx(100_000 + expected - 7.0, rel=1e-12)


def test_usdjpy_short_round_trip():
    sim = ForexSim(USDJPY)
    flat_bar(sim, T0, 110.000)
    sim.submit(-2.0)
    (sell,) = flat_bar(sim, T0 + 1, 110.000)
    assert sell.price == 110.000  # a short sells at the bid
    sim.submit(2.0)
    (buy,) = flat_bar(sim, T0 + 2, 109.000)
    assert buy.price == approx(109.004, rel=1e-12)  # and buys back at the ask
    assert buy.realised_pnl == approx(-2 * 100_000 * (109.004 - 110.000) / 109.004, rel=1e-12)
    assert sim.costs_commission == 14.0


def test_xauusd_lot_is_100_oz():
    sim = ForexSim(XAUUSD)
    flat_bar(sim, T0, 1250.00)
    sim.submit(1.0)
    (buy,) = flat_bar(sim, T0 + 1, 1250.00)
    assert buy.price == approx(1250.25, rel=1e-12)  # 2.5 pips of 0.1
    sim.submit(-1.0)
    (sell,) = flat_bar(sim, T0 + 2, 1260.00)
    assert sell.realised_pnl == approx(100 * (1260.00 - 1250.25), rel=1e-12)
    assert sim.balance == approx(100_000 + 975.0 - 7.0, rel=1e-12)
    assert sim.margin_rate == 0.05  # gold's regulatory floor beats 1:30


@pytest.mark.parametrize(("hour", "mult"), [(20, 1.0), (21, 3.0), (22, 3.0), (23, 1.5), (0, 1.0)])
def test_spread_widens_around_rollover(hour, mult):
    sim = ForexSim(EURUSD)
    start = m(2024, 7, 8, hour, 0) - 1
    flat_bar(sim, start, 1.10000)
    sim.submit(1.0)
    (buy,) = flat_bar(sim, start + 1, 1.10000)
    assert buy.price == approx(1.10000 + 0.00003 * mult, rel=1e-12)
    assert sim.spread == approx(0.00003 * mult, rel=1e-12)


def test_spread_is_attributed_where_it_is_paid():
    """A short pays the spread when it buys back at the ask, not when it sells at the bid: opened at 21:30 UTC
    (spread x3 = 0.9 pip) and closed at 10:00 (0.3 pip) with the bid unchanged, it paid 0.3 pip x 10 USD."""
    sim = ForexSim(EURUSD)
    flat_bar(sim, m(2024, 7, 8, 21, 29), 1.10000)
    sim.submit(-1.0)
    (sell,) = flat_bar(sim, m(2024, 7, 8, 21, 30), 1.10000)
    assert sell.price == 1.10000 and sell.spread_cost == 0.0
    sim.submit(1.0)
    (buy,) = flat_bar(sim, m(2024, 7, 9, 10, 0), 1.10000)
    assert buy.price == approx(1.10003, rel=1e-12)
    assert buy.spread_cost == approx(3.0, rel=1e-9) == approx(-buy.realised_pnl, rel=1e-9)
    assert sim.costs_spread == approx(3.0, rel=1e-9)
    # a long pays it on the way in, at that bar's spread: 0.9 pip at 21:30
    sim = ForexSim(EURUSD)
    flat_bar(sim, m(2024, 7, 8, 21, 29), 1.10000)
    sim.submit(1.0)
    (buy,) = flat_bar(sim, m(2024, 7, 8, 21, 30), 1.10000)
    assert buy.spread_cost == approx(9.0, rel=1e-9)
    sim.submit(-1.0)
    (sell,) = flat_bar(sim, m(2024, 7, 9, 10, 0), 1.10000)
    assert sell.spread_cost == 0.0 and sim.costs_spread == approx(9.0, rel=1e-9)


def test_flip_from_short_to_long_pays_the_spread_on_every_bought_unit():
    sim = ForexSim(USDJPY)
    flat_bar(sim, T0, 110.000)
    sim.submit(-1.0)
    flat_bar(sim, T0 + 1, 110.000)
    sim.submit(3.0)  # buys back 1 lot and opens 2
    (flip,) = flat_bar(sim, T0 + 2, 110.000)
    assert flip.spread_cost == approx(3 * 100_000 * 0.004 / 110.004, rel=1e-12)
    assert (flip.closed_lots, flip.opened_lots, flip.units) == (1.0, 2.0, 300_000)


def test_fills_that_return_to_flat_leave_exactly_zero():
    """-4.44 + 3.90 + 0.54 lots is 3.9e-11 in floats; the core keeps units, so flat is exactly 0."""
    assert -4.44 + 3.90 + 0.54 != 0.0
    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.1)
    for k, lots in enumerate((-4.44, 3.90, 0.54)):
        sim.submit(lots)
        (fill,) = flat_bar(sim, T0 + 1 + k, 1.1)
        assert fill.units == round(lots * 100_000) and isinstance(fill.units, int)
    assert sim.units == 0 and sim.lots == 0.0 and sim.avg_price == 0.0
    assert (fill.opened_lots, fill.closed_lots) == (0.0, 0.54)


# --------------------------------------------------------------------------- swap


def _hold_long_across(first: int, after: int) -> ForexSim:
    """1 lot EURUSD long filled at ``first + 1``, then one bar at ``after``."""
    sim = ForexSim(EURUSD)
    flat_bar(sim, first, 1.10000)
    sim.submit(1.0)
    flat_bar(sim, first + 1, 1.10000)
    assert sim.costs_swap == 0.0
    flat_bar(sim, after, 1.10000)
    return sim


NIGHT = 0.75 * 10.0  # -0.75 pip x 10 USD per pip per lot


@pytest.mark.parametrize(
    ("first", "rollover", "nights"),
    [
        (m(2024, 7, 10, 20, 0), m(2024, 7, 10, 21, 0), 3),  # Wednesday, summer: 17:00 NY = 21:00 UTC
        (m(2024, 7, 9, 20, 0), m(2024, 7, 9, 21, 0), 1),  # Tuesday
        (m(2024, 1, 10, 21, 0), m(2024, 1, 10, 22, 0), 3),  # Wednesday, winter: 17:00 NY = 22:00 UTC
        (m(2024, 1, 9, 21, 0), m(2024, 1, 9, 22, 0), 1),  # Tuesday, winter
    ],
)
def test_swap_at_new_york_rollover(first, rollover, nights):
    before = _hold_long_across(first, rollover - 1)  # bar just before the rollover: nothing yet
    assert before.costs_swap == 0.0
    sim = _hold_long_across(first, rollover)  # the bar opening at the rollover pays it
    assert sim.costs_swap == approx(nights * NIGHT, rel=1e-12)
    assert sim.balance == approx(100_000 - 3.5 - nights * NIGHT, rel=1e-12)


def test_swap_dst_one_hour_off_is_not_a_rollover():
    # 21:00 UTC in January is 16:00 New York: no rollover yet.
    sim = _hold_long_across(m(2024, 1, 10, 20, 0), m(2024, 1, 10, 21, 30))
    assert sim.costs_swap == 0.0


def test_swap_over_weekend_gap_counts_friday_once():
    # Friday 20:00 UTC (summer) to Sunday 21:05 UTC: only Friday's rollover is crossed, one night.
    sim = _hold_long_across(m(2024, 7, 12, 20, 0), m(2024, 7, 14, 21, 5))
    assert sim.costs_swap == approx(NIGHT, rel=1e-12)


def test_swap_short_earns_carry_and_flat_pays_nothing():
    sim = ForexSim(EURUSD)
    first = m(2024, 7, 9, 20, 0)
    flat_bar(sim, first, 1.10000)
    sim.submit(-1.0)
    flat_bar(sim, first + 1, 1.10000)
    flat_bar(sim, m(2024, 7, 9, 21, 0), 1.10000)
    assert sim.costs_swap == approx(-0.25 * 10.0, rel=1e-12)  # swap_short_pips = +0.25: earned
    flat = ForexSim(EURUSD)
    flat_bar(flat, first, 1.1)
    flat_bar(flat, m(2024, 7, 11, 21, 0), 1.1)
    assert flat.costs_swap == 0.0 and flat.balance == 100_000


# --------------------------------------------------------------------------- fills, brackets, stop-out


def test_order_fills_at_next_open_not_submitting_bar():
    sim = ForexSim(EURUSD)
    sim.on_bar(T0, 1.10000, 1.10100, 1.09900, 1.10050)
    sim.submit(1.0)
    assert sim.lots == 0.0 and sim.pending_lots == 1.0
    (fill,) = sim.on_bar(T0 + 7, 1.09500, 1.09600, 1.09400, 1.09550)  # gapped open: filled there
    assert fill.price == approx(1.09503, rel=1e-12) and fill.minute == T0 + 7


def test_bar_hitting_both_levels_takes_the_stop_loss():
    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.10000)
    sim.submit(1.0, sl=1.09900, tp=1.10100)
    fills = sim.on_bar(T0 + 1, 1.10000, 1.10200, 1.09800, 1.10000)
    assert [f.reason for f in fills] == ["market", "stop_loss"]
    assert fills[1].price == 1.09900
    assert fills[1].realised_pnl == approx(100_000 * (1.09900 - 1.10003), rel=1e-12)
    assert sim.lots == 0.0 and sim.sl is None and sim.tp is None


def test_take_profit_and_gap_through_stop():
    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.10000)
    sim.submit(1.0, sl=1.09900, tp=1.10100)
    assert sim.on_bar(T0 + 1, 1.10000, 1.10050, 1.09950, 1.10000)[0].reason == "market"
    (tp,) = sim.on_bar(T0 + 2, 1.10000, 1.10150, 1.09950, 1.10100)
    assert tp.reason == "take_profit" and tp.price == 1.10100

    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.10000)
    sim.submit(1.0, sl=1.09900)
    sim.on_bar(T0 + 1, 1.10000, 1.10050, 1.09950, 1.10000)
    (sl,) = sim.on_bar(T0 + 60, 1.09700, 1.09800, 1.09600, 1.09750)  # opens beyond the stop
    assert sl.reason == "stop_loss" and sl.price == 1.09700  # filled at the gapped open, not at 1.099


def test_short_stop_uses_the_ask():
    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.10000)
    sim.submit(-1.0, sl=1.10100)
    sim.on_bar(T0 + 1, 1.10000, 1.10050, 1.09950, 1.10000)
    # bid high 1.10096 -> ask high 1.10099: below the stop, untouched
    assert sim.on_bar(T0 + 2, 1.10000, 1.10096, 1.09950, 1.10000) == ()
    assert sim.lots == -1.0
    # bid high 1.10098 -> ask high 1.10101: the stop is hit though the bid never reached it
    (sl,) = sim.on_bar(T0 + 3, 1.10000, 1.10098, 1.09950, 1.10000)
    assert sl.reason == "stop_loss" and sl.price == 1.10100 and sl.lots == 1.0
    assert sl.realised_pnl == approx(-100_000 * (1.10100 - 1.10000), rel=1e-12)
    # a short marked at the ask: worst price is the ask high
    sim2 = ForexSim(EURUSD)
    flat_bar(sim2, T0, 1.10000)
    sim2.submit(-1.0)
    sim2.on_bar(T0 + 1, 1.10000, 1.10020, 1.09950, 1.10010)
    assert sim2.equity == approx(sim2.balance - 100_000 * (1.10013 - 1.10000), rel=1e-12)
    assert sim2.worst_equity == approx(sim2.balance - 100_000 * (1.10023 - 1.10000), rel=1e-12)


def test_short_take_profit_uses_the_ask():
    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.10000)
    sim.submit(-1.0, tp=1.09900)
    sim.on_bar(T0 + 1, 1.10000, 1.10050, 1.09950, 1.10000)
    assert sim.on_bar(T0 + 2, 1.10000, 1.10000, 1.09899, 1.09950) == ()  # ask low 1.09902 > tp
    (tp,) = sim.on_bar(T0 + 3, 1.10000, 1.10000, 1.09896, 1.09950)  # ask low 1.09899
    assert tp.reason == "take_profit" and tp.price == 1.09900


def _stop_out_threshold(sim: ForexSim) -> float:
    """Bid low at which a long's equity equals stop_out_level x margin (EURUSD)."""
    c, rate = 100_000 * sim.lots, sim.margin_rate
    return (c * sim.avg_price - sim.balance) / (c * (1 - sim.stop_out_level * rate))


def test_stop_out_at_half_margin_level_at_the_worst_price():
    sim = ForexSim(EURUSD, cash=4_000.0)
    flat_bar(sim, T0, 1.10000)
    sim.submit(1.0)  # margin 3,667 USD on 4,000
    flat_bar(sim, T0 + 1, 1.10000)
    level = _stop_out_threshold(sim)
    assert 1.075 < level < 1.085
    above = round(level + 0.00002, 5)
    assert sim.on_bar(T0 + 2, 1.09000, 1.09100, above, 1.09000) == ()
    assert sim.worst_equity > 0.5 * sim.margin_for(1.0, above)
    assert sim.stop_outs == 0
    below = round(level - 0.00002, 5)
    balance = sim.balance
    (out,) = sim.on_bar(T0 + 3, 1.09000, 1.09100, below, 1.09000)
    assert out.reason == "stop_out" and out.price == below and out.lots == -1.0
    assert out.realised_pnl == approx(100_000 * (below - 1.10003), rel=1e-12)
    assert sim.lots == 0.0 and sim.stop_outs == 1
    assert sim.balance == approx(balance + out.realised_pnl - 3.5, rel=1e-12)
    assert sim.equity == sim.balance  # marked flat at the close, no recovery to 1.09


def test_stop_out_fires_exactly_at_the_stop_out_level():
    """"At or below": a worst-price margin level exactly equal to ``stop_out_level`` liquidates."""
    sim = ForexSim(EURUSD, cash=4_000.0)
    flat_bar(sim, T0, 1.10000)
    sim.submit(1.0)
    flat_bar(sim, T0 + 1, 1.10000)
    low = 1.08000
    worst = sim.balance + sim.unrealised_at(low)
    margin = sim.margin_for(sim.lots, low)
    level = worst / margin
    while level * margin != worst:  # the level whose product with the margin is exactly the worst equity
        level = math.nextafter(level, math.inf if level * margin < worst else -math.inf)
    sim.stop_out_level = level
    (out,) = sim.on_bar(T0 + 2, 1.09000, 1.09100, low, 1.09000)
    assert out.reason == "stop_out" and out.price == low and sim.stop_outs == 1
    sim2 = ForexSim(EURUSD, cash=4_000.0, stop_out_level=math.nextafter(level, 0.0))  # just below: no stop-out
    flat_bar(sim2, T0, 1.10000)
    sim2.submit(1.0)
    flat_bar(sim2, T0 + 1, 1.10000)
    assert sim2.on_bar(T0 + 2, 1.09000, 1.09100, low, 1.09000) == () and sim2.stop_outs == 0


def test_margin_rejections():
    sim = ForexSim(EURUSD)
    rej = sim.submit(1.0)  # before any bar there is no price: margin is checked at the fill
    assert isinstance(rej, int)
    sim.cancel_pending()
    flat_bar(sim, T0, 1.10000)
    big = sim.submit(40.0)  # 40 lots at 1.1 need 146,667 USD of margin on 100,000
    assert isinstance(big, Rejection) and "margin" in big.reason
    assert sim.pending_lots == 0.0 and sim.rejections[-1] is big
    assert isinstance(sim.submit(20.0), int)
    rej2 = sim.submit(10.0)  # pending orders count towards the margin
    assert isinstance(rej2, Rejection) and "margin" in rej2.reason


def test_margin_rejected_at_fill_leaves_position_unchanged():
    sim = ForexSim(EURUSD, cash=4_000.0)
    flat_bar(sim, T0, 1.10000)
    assert isinstance(sim.submit(1.0), int)  # 3,667 USD needed: fine at 1.10
    fills = flat_bar(sim, T0 + 1, 1.30000)  # a 2,000-pip gap: 4,333 USD needed at the open
    assert list(fills) == [] and sim.lots == 0.0
    assert "margin at fill" in sim.rejections[-1].reason
    assert sim.balance == 4_000.0 and sim.costs_commission == 0.0


@pytest.mark.parametrize(
    ("lots", "words"),
    [(0.015, "lot step"), (0.001, "lot step"), (0.0, "zero"), (51.0, "maximum"), (-0.333, "lot step")],
)
def test_bad_sizes_are_rejected_not_resized(lots, words):
    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.1)
    rej = sim.submit(lots)
    assert isinstance(rej, Rejection) and words in rej.reason and rej.lots == lots
    assert sim.pending_lots == 0.0
    assert flat_bar(sim, T0 + 1, 1.1) == () and sim.lots == 0.0


def test_below_min_lot_is_rejected():
    inst = dataclasses.replace(EURUSD, min_lot=0.1)
    sim = ForexSim(inst)
    rej = sim.submit(0.05)
    assert isinstance(rej, Rejection) and "minimum" in rej.reason
    assert isinstance(sim.submit(0.1), int)


def test_unknown_symbol_lists_known_ones():
    with pytest.raises(UnknownSymbolError) as err:
        get_instrument("EURXYZ")
    text = str(err.value)
    assert "EURXYZ" in text and all(s in text for s in ("EURUSD", "USDJPY", "XAUUSD"))
    assert isinstance(err.value, KeyError)
    assert get_instrument("eurusd") is not None  # case-insensitive


@pytest.mark.parametrize(
    "bar",
    [
        (math.nan, 1.1, 1.0, 1.05),
        (1.05, math.nan, 1.0, 1.05),
        (1.05, 1.1, math.nan, 1.05),
        (1.05, 1.1, 1.0, math.nan),
        (1.05, 1.0, 1.1, 1.05),  # high < low
        (1.2, 1.1, 1.0, 1.05),  # open above high
        (1.05, 1.1, 1.0, 0.9),  # close below low
        (0.0, 0.0, 0.0, 0.0),
        (-1.0, -1.0, -1.0, -1.0),
    ],
)
def test_bad_bar_raises(bar):
    sim = ForexSim(EURUSD)
    with pytest.raises(ValueError, match="bad bar"):
        sim.on_bar(T0, *bar)


def test_time_must_move_forward():
    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.1)
    with pytest.raises(ValueError, match="forward"):
        flat_bar(sim, T0, 1.1)


def test_flip_and_partial_close_accounting():
    sim = ForexSim(EURUSD)
    flat_bar(sim, T0, 1.10000)
    sim.submit(2.0, sl=1.0, tp=2.0)
    flat_bar(sim, T0 + 1, 1.10000)
    sim.submit(-0.5)
    (part,) = flat_bar(sim, T0 + 2, 1.10100)
    assert part.closed_lots == -0.5 and part.opened_lots == 0.0
    assert part.realised_pnl == approx(50_000 * (1.10100 - 1.10003), rel=1e-12)
    assert sim.lots == 1.5 and sim.avg_price == approx(1.10003, rel=1e-12) and sim.sl == 1.0
    sim.submit(-2.5)
    (flip,) = flat_bar(sim, T0 + 3, 1.10200)
    assert flip.closed_lots == -1.5 and flip.opened_lots == approx(-1.0, rel=1e-12)
    assert flip.realised_pnl == approx(150_000 * (1.10200 - 1.10003), rel=1e-12)
    assert sim.lots == -1.0 and sim.avg_price == 1.10200
    assert sim.sl is None and sim.tp is None  # old levels do not survive a flip
    assert sim.costs_commission == approx(3.5 * 5, rel=1e-12)


# --------------------------------------------------------------------------- hypothesis invariants

START = {"EURUSD": 1.10, "USDJPY": 110.0, "XAUUSD": 1250.0}

step_st = st.tuples(
    st.integers(min_value=1, max_value=1800),  # minutes to the next bar (crosses rollovers, weekends)
    st.floats(min_value=-0.004, max_value=0.004),  # relative move open -> close
    st.floats(min_value=0.0, max_value=0.002),  # wick above
    st.floats(min_value=0.0, max_value=0.002),  # wick below
    st.booleans(),  # gap at the open
    st.floats(min_value=-0.003, max_value=0.003),  # gap size
    st.one_of(
        st.none(),
        st.none(),
        st.integers(min_value=-300, max_value=300).map(lambda k: ("steps", k)),  # k x lot step
        st.sampled_from([("off", 0.015), ("off", -0.0071), ("off", 0.001), ("big", 45.0), ("big", -45.0)]),
        st.just(("close", 0)),
    ),
    st.one_of(st.none(), st.tuples(st.floats(0.0005, 0.01), st.floats(0.0005, 0.01))),  # sl/tp distance
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(symbol=st.sampled_from(sorted(START)), start_day=st.integers(0, 400), steps=st.lists(step_st, max_size=60))
def test_invariants_hold_on_random_paths(symbol, start_day, steps):
    inst = get_instrument(symbol)
    sim = ForexSim(inst)
    minute = m(2023, 1, 2, 0, 0) + start_day * 1440 + 7
    price = START[symbol]
    prev = None  # (close, spread, lots, unrealised, costs_swap) of the previous bar
    costs = (0.0, 0.0)

    for gap_min, move, up, down, gapped, gap, action, bracket in steps:
        # ---- the bar
        o = round(price * (1 + gap) if gapped else price, inst.digits)
        c = round(o * (1 + move), inst.digits)
        h = round(max(o, c) * (1 + up), inst.digits)
        lo = round(min(o, c) * (1 - down), inst.digits)
        lots_before, pending_before = sim.lots, list(sim._pending)
        fills = sim.on_bar(minute, o, h, lo, c)
        price = c

        # position changes only by fills: rejected-at-fill orders leave it alone
        assert sim.lots == approx(lots_before + sum(f.lots for f in fills), abs=1e-9)
        assert {f.order_id for f in fills if f.reason == "market"} <= {p[0] for p in pending_before}
        # closing at a fill price equal to the previous mark realises exactly what was shown
        if prev and fills and fills[0].reason == "market" and fills[0].closed_lots == -prev[2] != 0.0:
            p_close, p_spread, _, p_unreal, p_swap = prev
            if o == p_close and sim.spread == p_spread and sim.costs_swap == p_swap:
                assert fills[0].realised_pnl == approx(p_unreal, rel=1e-9, abs=1e-9)

        # ---- invariants after the bar
        mark = sim.mark_price(c, sim.spread)
        assert sim.equity == approx(sim.balance + sim.unrealised_at(mark), rel=1e-9, abs=1e-9)
        assert sim.balance == approx(
            sim.initial_cash + sim.realised_pnl - sim.costs_commission - sim.costs_swap, rel=1e-9, abs=1e-9
        )
        assert sim.costs_spread >= costs[0] >= 0.0 and sim.costs_commission >= costs[1] >= 0.0
        costs = (sim.costs_spread, sim.costs_commission)
        if sim.lots:
            assert sim.worst_equity <= sim.equity + 1e-9
        else:
            assert sim.worst_equity == sim.equity == sim.balance and sim.avg_price == 0.0
        prev = (c, sim.spread, sim.lots, sim.equity - sim.balance, sim.costs_swap)

        # ---- an order for the next bar
        if action is not None:
            kind, k = action
            if kind == "steps":
                lots = round(k * inst.lot_step, 8)
            elif kind == "close":
                lots = -sim.lots - sim.pending_lots
            else:
                lots = k
            sl = tp = None
            if bracket is not None and lots:
                sign = 1 if sim.lots + sim.pending_lots + lots > 0 else -1
                sl, tp = c * (1 - sign * bracket[0]), c * (1 + sign * bracket[1])
            target = sim.lots + sim.pending_lots + lots
            pos, pend, n_rej = sim.lots, sim.pending_lots, len(sim.rejections)
            res = sim.submit(lots, sl=sl, tp=tp)
            if isinstance(res, Rejection):
                assert res.reason and sim.lots == pos and sim.pending_lots == pend
                assert len(sim.rejections) == n_rej + 1
            else:
                assert sim.pending_lots == approx(pend + lots, abs=1e-9)
            must_reject = (
                kind == "off"
                or lots == 0.0
                or (abs(target) > abs(pos) + 1e-9 and sim.margin_for(target, c) > sim.equity)
            )
            if must_reject:
                assert isinstance(res, Rejection) and res.reason
            if kind == "big" and abs(pos + pend) < 5:
                assert isinstance(res, Rejection) and "margin" in res.reason
        minute += gap_min
