"""The four-agent env: PettingZoo Parallel API, determinism, each agent's cadence, the decision rule and brackets."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from pettingzoo.test import parallel_api_test

from agents.four_agent.acting import JointBook
from agents.four_agent.config import RISK_ACTIONS, RISK_PROPOSAL_FIELDS
from features.context import build_context
from feeds.loaders import load_bars
from feeds.macro import MacroTable, load_macro
from risk.consensus import REGIME_CLASSES, decide, guarded_target
from risk.drawdown import DrawdownRules
from training.env_config import EnvConfig
from training.four_agent_env import (
    STATE_DIM,
    STATE_FIELDS,
    FourAgentEnv,
    FourAgentParallelEnv,
    context_matrices,
)


@pytest.fixture(scope="module")
def market(fx_dir, macro_dir):
    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-01-02", end="2024-02-23")
    macro = load_macro(macro_dir)
    ctx = build_context(m1, macro)
    return ctx, context_matrices(ctx, MacroTable.from_frame(macro))


def _random_actions(env: FourAgentEnv, rng: np.random.Generator) -> dict:
    due, kw = env.due(), {}
    if "regime" in due:
        kw["regime"] = rng.dirichlet(np.ones(len(REGIME_CLASSES)))
    if "structure" in due:  # a confident director, so that the account trades
        kw["structure"] = np.r_[rng.uniform(-1, 1), rng.uniform(0.3, 1.0), rng.uniform(0.4, 1.0)]
    if "tactical" in due:
        kw["tactical"] = int(rng.choice(np.flatnonzero(env.action_mask())))
    return kw


def _episode(env: FourAgentEnv, seed: int, steps: int = 4000) -> tuple[list, list]:
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    infos, states = [], []
    for _ in range(steps):
        p = env.act(**_random_actions(env, rng))
        states.append(env.state())
        risk = int(rng.choice([0, 0, 0, 1, 2, 3])) if p.risk_due else None
        r, term, trunc, info = env.step(risk)
        infos.append((r, info))
        if term or trunc:
            break
    return infos, states


def test_parallel_api(market) -> None:
    ctx, mm = market
    env = FourAgentParallelEnv(ctx, mm, EnvConfig(episode_bars=300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(env, num_cycles=400)
    assert env.observation_space("regime")["matrix"].shape == (96, 19)
    assert env.observation_space("structure")["matrix"].shape == (48, 8)
    assert env.observation_space("tactical")["matrix"].shape == (60, 7)
    assert env.observation_space("risk")["proposal"].shape == (len(RISK_PROPOSAL_FIELDS),)
    assert env.state().shape == (STATE_DIM,) == (len(STATE_FIELDS),) and env.state_space.contains(env.state())


def test_same_seed_same_episode(market) -> None:
    ctx, mm = market
    a = _episode(FourAgentEnv(ctx, mm, EnvConfig(episode_bars=3000)), seed=7)
    b = _episode(FourAgentEnv(ctx, mm, EnvConfig(episode_bars=3000)), seed=7)
    c = _episode(FourAgentEnv(ctx, mm, EnvConfig(episode_bars=3000)), seed=8)
    assert [x[0] for x in a[0]] == [x[0] for x in b[0]]
    assert [x[1] for x in a[0]] == [x[1] for x in b[0]]
    np.testing.assert_array_equal(np.array(a[1]), np.array(b[1]))
    assert a[0][0][1]["bar"] != c[0][0][1]["bar"] or [x[0] for x in a[0]] != [x[0] for x in c[0]]
    fills = sum(info["fills"] for _, info in a[0])
    assert fills > 20 and any(info["risk_due"] for _, info in a[0])


def test_each_agent_acts_at_its_own_bars(market) -> None:
    ctx, mm = market
    env = FourAgentEnv(ctx, mm, EnvConfig(episode_bars=3000, random_start=False))
    infos, _ = _episode(env, seed=0)
    bars = np.array([info["bar"] for _, info in infos])
    acted = [set(info["acted"]) for _, info in infos]
    first = np.r_[True, np.zeros(len(bars) - 1, bool)]
    assert bars[0] == env.ctx.first_ready >= mm.first_ready  # episodes start where every matrix is ready
    np.testing.assert_array_equal([("regime" in a) for a in acted], mm.new_m30[bars] | first)
    np.testing.assert_array_equal([("structure" in a) for a in acted], mm.new_m30[bars] | first)
    np.testing.assert_array_equal([("tactical" in a) for a in acted], mm.new_m5[bars] | mm.new_m30[bars] | first)
    # Risk: where the consensus proposes a change or a position is open (the position at the decision = before it)
    before = np.r_[0.0, [info["position"] for _, info in infos[:-1]]]
    risk = np.array([("risk" in a) for a in acted])
    proposes = np.array([info["proposed_lots"] for _, info in infos]) != np.round(before, 2)
    np.testing.assert_array_equal(risk, proposes | (before != 0))
    assert 0 < risk.sum() < len(risk) and sum("tactical" in a for a in acted) == pytest.approx(len(bars) / 5, rel=0.1)


def test_final_target_is_the_consensus_then_the_hard_rules(market) -> None:
    """The env trades ``guarded_target(decide(...))`` exactly, with the aggregator's brackets as broker levels;
    the learned Risk agent can only shrink the proposal and the validator only the decision."""
    ctx, mm = market
    tight = DrawdownRules(daily_limit=0.01, total_limit=0.03, soft_zone=0.005)
    env = FourAgentEnv(ctx, mm, EnvConfig(episode_bars=6000, random_start=False, rules=tight, max_exposure=20.0,
                                          terminate_on_breach=False))
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    brackets = outcomes = 0
    seen = set()
    for _ in range(6000):
        p = env.act(**_random_actions(env, rng))
        risk = int(rng.integers(len(RISK_ACTIONS))) if p.risk_due else 0
        book, acct = env.book, env.acct
        state = book.account_state(acct.sim, acct.obs.max_lots, acct.atr[env.i])
        d = decide(book.actions(risk), state, env.inst, book.consensus)
        # the guard's verdict, computed on a validator copy so the env's counters are untouched
        v = guarded_target(d, type(acct.validator)(env.inst), acct.sim, acct.atr[env.i])
        _, term, trunc, info = env.step(risk if p.risk_due else None)
        assert info["decision_lots"] == d.lots and info["target_lots"] == v.lots
        assert abs(d.lots) <= abs(p.lots) + 1e-9 and d.lots * p.lots >= 0
        assert abs(v.lots) <= abs(d.lots) + 1e-9 and v.lots * d.lots >= 0
        seen.add(info["validator"])
        sim = acct.sim
        if info["fills"] and sim.lots and info["target_lots"] == sim.lots and d.stop_loss is not None:
            assert (sim.sl, sim.tp) == (d.stop_loss, d.take_profit)  # real broker levels
            brackets += 1
        outcomes += v.outcome != "allow"
        if term or trunc:
            break
    assert brackets > 10 and outcomes > 0 and {"allow"} < seen


def test_book_masks_and_proposal_slots() -> None:
    from brokers.instruments import get_instrument

    book = JointBook(get_instrument("EURUSD"))
    assert book.due(False, False) == ("regime", "structure", "tactical")  # the first bar: everyone
    book.set_regime(np.array([0.7, 0.1, 0.1, 0.1]))
    book.set_structure(np.array([0.9, 0.5, 0.8]))
    assert book.due(False, False) == () and book.due(True, False) == ("tactical",)
    assert book.due(True, True) == ("regime", "structure", "tactical")
    assert book.tactical_mask(0.0).tolist() == [True, True, False, True, False]  # flat: no exit, no reduce
    assert book.tactical_mask(1.0).all()
    book.set_tactical(0)
    from agents.four_agent.acting import Proposal

    f = book.risk_features(Proposal(2.0, 4.0, "enter", 0.0, True), max_lots=8.0)
    names = dict(zip(RISK_PROPOSAL_FIELDS, f.tolist(), strict=True))
    assert names["regime_trending"] == pytest.approx(0.7) and names["tactical_enter_long"] == 1.0
    assert names["proposed_position"] == 0.25 and names["current_position"] == 0.0
    assert names["structure_bias"] == pytest.approx(0.9)
    book.end_bar()
    assert book.actions().tactical == "hold"
    with pytest.raises(ValueError):
        book.set_tactical(7)


def test_state_slots_are_named(market) -> None:
    ctx, mm = market
    env = FourAgentEnv(ctx, mm, EnvConfig(episode_bars=100, random_start=False))
    env.reset(seed=0)
    env.act(regime=np.array([0.1, 0.2, 0.3, 0.4]), structure=np.array([0.5, 0.6, 0.7]), tactical=3)
    s = dict(zip(STATE_FIELDS, env.state().tolist(), strict=True))
    assert s["regime_p_transition"] == pytest.approx(0.4) and s["structure_size"] == pytest.approx(0.6)
    assert s["last_tactical_hold"] == 1.0 and s["since_tactical"] == 0.0
    assert isinstance(ctx.index, pd.DatetimeIndex) and len(STATE_FIELDS) == len(set(STATE_FIELDS))
