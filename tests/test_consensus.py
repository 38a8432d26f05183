"""The four-agent decision aggregator (risk.consensus): one test per branch of the rule, hand-computed, and
properties: the Risk agent never loosens a decision, sizes are lot-step multiples, brackets sit on the right side."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest import approx

from brokers.account import TradingState
from brokers.instruments import get_instrument
from brokers.sim import ForexSim
from risk.consensus import (
    REGIME_CLASSES,
    RISK_ACTIONS,
    TACTICAL_ACTIONS,
    AccountState,
    AgentActions,
    ConsensusConfig,
    decide,
    guarded_target,
)
from risk.validator import PreTradeValidator

EURUSD, USDJPY, XAUUSD = (get_instrument(s) for s in ("EURUSD", "USDJPY", "XAUUSD"))
PRICE, SPREAD, ATR = 1.10000, 0.00003, 0.00200
T0 = int(pd.Timestamp("2024-01-02 10:00", tz="UTC").value // 60_000_000_000)


def acts(tactical: str = "enter_long", bias: float = 0.8, size: float = 0.5, sconf: float = 0.9,
         regime: str = "trending", rconf: float = 0.9, risk: str = "allow") -> AgentActions:
    return AgentActions(regime, rconf, bias, size, sconf, tactical, risk)  # type: ignore[arg-type]


def acct(current: float = 0.0, max_lots: float = 10.0, atr: float = ATR) -> AccountState:
    return AccountState(current_lots=current, max_lots=max_lots, equity=100_000.0, price=PRICE, spread=SPREAD,
                        atr=atr)


# --------------------------------------------------------------------------- branches, hand-computed
def test_enter_long_from_flat_full_decision() -> None:
    d = decide(acts(), acct(), EURUSD)
    # cap = size 0.5 x trending 1.0 x 10 lots
    assert (d.lots, d.direction, d.branch, d.max_exposure, d.proposed_lots) == (5.0, 1, "enter", 5.0, 5.0)
    assert d.confidence == approx(0.9 * 0.9)
    assert d.leverage == approx(5 * 100_000 * 1.1 / 100_000)  # 5.5x
    # a long's brackets are bid levels: 2 ATR below, 3 ATR above the bid
    assert (d.stop_loss, d.take_profit) == (1.09600, 1.10600)
    # bought at the ask 1.10003, stopped at 1.09600: 40.3 pips x 5 lots x 10 USD, plus 2 x 3.5 USD x 5 lots
    assert d.risk_at_stop == approx(500_000 * 0.00403 + 35.0)


def test_enter_short_brackets_are_ask_levels() -> None:
    d = decide(acts("enter_short", bias=-0.8), acct(), EURUSD)
    assert (d.lots, d.direction, d.branch) == (-5.0, -1, "enter")
    assert (d.stop_loss, d.take_profit) == (1.10403, 1.09403)  # ask 1.10003 + 2 ATR, - 3 ATR
    assert d.risk_at_stop == approx(500_000 * 0.00403 + 35.0)  # sold at the bid, bought back at 1.10403


@pytest.mark.parametrize(("regime", "rconf", "cap"), [
    ("trending", 0.9, 5.0), ("ranging", 0.9, 2.5), ("transition", 0.9, 2.5), ("volatile", 0.9, 0.0),
    ("trending", 0.3, 2.5),  # below min_regime_confidence a regime counts as transition
    ("volatile", 0.3, 2.5),  # ... and an unsure "volatile" vetoes nothing
])
def test_regime_scales_the_cap(regime: str, rconf: float, cap: float) -> None:
    d = decide(acts(regime=regime, rconf=rconf), acct(), EURUSD)
    assert d.max_exposure == cap and d.lots == cap
    assert d.branch == ("enter" if cap else "entry_refused")


def test_volatile_veto_closes_a_short_on_enter_long_but_opens_nothing() -> None:
    d = decide(acts(regime="volatile", bias=0.0), acct(current=-2.0), EURUSD)
    assert (d.lots, d.branch, d.stop_loss, d.take_profit, d.risk_at_stop) == (0.0, "entry_refused", None, None, 0.0)


def test_low_structure_confidence_refuses_entries_and_drops_the_bias() -> None:
    d = decide(acts(bias=-0.9, sconf=0.4), acct(current=1.0), EURUSD)
    assert (d.lots, d.branch) == (1.0, "entry_refused")  # not closed against an unconfident bias either
    assert decide(acts("hold", bias=-0.9, sconf=0.4), acct(current=1.0), EURUSD).lots == 1.0


def test_bias_sets_the_allowed_side() -> None:
    refused = decide(acts("enter_long", bias=-0.5), acct(), EURUSD)
    assert (refused.lots, refused.branch) == (0.0, "entry_refused")
    neutral = decide(acts("enter_short", bias=0.2), acct(), EURUSD)  # |bias| <= 0.3: both sides
    assert (neutral.lots, neutral.branch) == (-5.0, "enter")


def test_a_position_against_a_confident_bias_is_closed() -> None:
    d = decide(acts("hold", bias=-0.5), acct(current=2.0), EURUSD)
    assert (d.lots, d.branch) == (0.0, "against_bias")


def test_flip() -> None:
    d = decide(acts("enter_long"), acct(current=-2.0), EURUSD)
    assert (d.lots, d.branch, d.proposed_lots) == (5.0, "flip", 5.0)


@pytest.mark.parametrize(("current", "lots"), [
    (6.0, 6.0),  # already above the cap: an entry never shrinks it
    (4.5, 4.5),  # a 0.5-lot top-up is below the 10 % band (1 lot): skipped
    (3.0, 5.0),  # a 2-lot top-up is worth it
])
def test_enter_on_the_same_side(current: float, lots: float) -> None:
    d = decide(acts("enter_long"), acct(current=current), EURUSD)
    assert (d.lots, d.branch) == (lots, "enter")


@pytest.mark.parametrize(("tactical", "current", "lots"), [
    ("exit", 3.0, 0.0), ("exit", -3.0, 0.0),
    ("reduce", 3.0, 1.5), ("reduce", -3.0, -1.5), ("reduce", 0.03, 0.01), ("reduce", 0.01, 0.0),  # towards zero
    ("hold", 2.0, 2.0), ("hold", 0.0, 0.0),
])
def test_exit_reduce_hold(tactical: str, current: float, lots: float) -> None:
    d = decide(acts(tactical, bias=0.0), acct(current=current), EURUSD)
    assert (d.lots, d.branch) == (lots, tactical)


@pytest.mark.parametrize(("tactical", "current", "risk", "lots"), [
    ("enter_long", 0.0, "modify_size", 2.5),  # halves the proposed 5 lots
    ("hold", 3.0, "modify_size", 1.5),  # on a hold it halves the position
    ("enter_long", 2.0, "force_exit", 0.0),
    ("enter_long", 0.0, "block", 0.0),  # no opening
    ("enter_long", 2.0, "block", 2.0),  # no increase: the position is kept
    ("reduce", 3.0, "block", 1.5),  # a reduction passes a block
    ("exit", 3.0, "block", 0.0),
    ("enter_long", -2.0, "block", 0.0),  # a blocked flip still closes the old side
    ("enter_long", 0.0, "allow", 5.0),
])
def test_risk_agent_effects(tactical: str, current: float, risk: str, lots: float) -> None:
    d = decide(acts(tactical, risk=risk), acct(current=current), EURUSD)
    assert d.lots == lots and d.risk_action == risk
    assert d.proposed_lots == decide(acts(tactical), acct(current=current), EURUSD).lots


def test_brackets_keep_a_point_from_the_price_and_round_away_from_it() -> None:
    d = decide(acts(), acct(atr=1e-7), EURUSD)  # 2 ATR is a fifth of a point
    assert (d.stop_loss, d.take_profit) == (1.09999, 1.10001)
    s = decide(acts("enter_short", bias=-0.8), acct(atr=0.0012345), EURUSD)
    # ask 1.10003 + 0.002469 = 1.102499 -> up to 1.10250; 1.10003 - 0.0037035 = 1.0963265 -> down to 1.09632
    assert (s.stop_loss, s.take_profit) == (1.10250, 1.09632)


def test_bad_inputs_fail_loudly() -> None:
    with pytest.raises(ValueError, match="bias"):
        acts(bias=1.5)
    with pytest.raises(ValueError, match="tactical action"):
        acts("buy")
    with pytest.raises(ValueError, match="risk action"):
        acts(risk="veto")
    with pytest.raises(ValueError, match="ATR"):
        acct(atr=0.0)
    with pytest.raises(ValueError, match="regime_scale"):
        ConsensusConfig(regime_scale={"trending": 1.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        decide(acts(), acct(), EURUSD).lots = 1.0  # type: ignore[misc]


def test_composition_with_drawdown_state_and_validator() -> None:
    """After the agents: the drawdown state, then the pre-trade validator; the sim receives what survives."""
    sim = ForexSim(EURUSD)
    sim.on_bar(T0, PRICE, PRICE, PRICE, PRICE)
    sim.equity_floor = sim.equity - 1_000.0  # 1,000 USD of room to the floor
    validator = PreTradeValidator(EURUSD)
    d = decide(acts(), AccountState(sim.lots, 10.0, sim.equity, sim.bid, sim.spread, ATR), EURUSD)
    assert d.lots == 5.0
    v = guarded_target(d, validator, sim, ATR)
    # worst case per lot: 100,000 x (2 ATR + spread) + 2 x 3.5 USD = 410 USD -> 2.43 lots are safe
    assert (v.outcome, v.lots) == ("shrink", 2.43)
    sim.trading_state = TradingState.REDUCING  # after a daily breach: only reductions
    v = guarded_target(d, validator, sim, ATR)
    assert (v.outcome, v.lots) == ("block", 0.0) and "REDUCING" in v.reason
    exit_ = decide(acts("exit"), AccountState(0.0, 10.0, sim.equity, sim.bid, sim.spread, ATR), EURUSD)
    assert guarded_target(exit_, validator, sim, ATR).outcome == "allow"


# --------------------------------------------------------------------------- properties
instruments = st.sampled_from([(EURUSD, 1.1), (USDJPY, 150.0), (XAUUSD, 2000.0)])


@st.composite
def cases(draw):
    inst, level = draw(instruments)
    price = round(level * draw(st.floats(0.5, 1.5)), inst.digits)
    step = inst.lot_step
    current = round(draw(st.integers(-2000, 2000)) * step, 8)
    max_lots = round(draw(st.integers(0, 2000)) * step, 8)
    spread = draw(st.floats(0.0, 0.001)) * price
    atr = draw(st.floats(1e-6, 0.02)) * price
    a = AgentActions(draw(st.sampled_from(REGIME_CLASSES)), draw(st.floats(0, 1)), draw(st.floats(-1, 1)),
                     draw(st.floats(0, 1)), draw(st.floats(0, 1)), draw(st.sampled_from(TACTICAL_ACTIONS)))
    return inst, a, AccountState(current, max_lots, 100_000.0, price, spread, atr)


def _is_step_multiple(lots: float, inst) -> bool:
    units = abs(lots) * inst.contract_size
    return abs(units - round(units)) < 1e-6 and round(units) % inst.step_units == 0


@settings(max_examples=400, deadline=None)
@given(cases())
def test_risk_agent_never_loosens_and_outputs_are_valid(case) -> None:
    inst, a, acc = case
    free = decide(a, acc, inst)
    for risk in RISK_ACTIONS:
        d = decide(dataclasses.replace(a, risk=risk), acc, inst)
        assert abs(d.lots) <= abs(free.lots) + 1e-12, (risk, d, free)
        assert d.direction in (0, free.direction), (risk, d, free)  # no side it did not propose
        assert d.proposed_lots == free.lots
        assert _is_step_multiple(d.lots, inst) and _is_step_multiple(d.max_exposure, inst)
        assert abs(d.lots) <= max(abs(acc.current_lots), d.max_exposure) + 1e-9  # only the cap grows a position
        ask = acc.price + acc.spread
        if d.lots > 0:
            assert d.stop_loss < acc.price < d.take_profit
        elif d.lots < 0:
            assert d.take_profit < ask < d.stop_loss
        else:
            assert d.stop_loss is None and d.take_profit is None
