"""Training envs: API checks, determinism, H4 cadence, and THE parity contract with the Backtrader backtest."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from pettingzoo.test import parallel_api_test
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from agents.common.observations import H4_OBS_DIM, M1_OBS_DIM
from features.context import build_context
from feeds.loaders import load_bars
from feeds.macro import load_macro
from feeds.resample import completed_index, htf_bars
from risk.drawdown import DrawdownRules
from strategies.backtest import BacktestConfig, run_backtest
from strategies.replay import ReplayActions
from training.env import OBS_DIM, ForexEnv
from training.env_config import EnvConfig
from training.hier_env import HierarchicalForexEnv, HierarchicalParallelEnv

# tight limits so a month of random trading meets soft zones, blocks, breaches and halts
TIGHT = DrawdownRules(daily_limit=0.01, total_limit=0.03, soft_zone=0.005)


@pytest.fixture(scope="module")
def contexts(fx_dir, macro_dir) -> dict[str, tuple[pd.DataFrame, object]]:
    macro = load_macro(macro_dir)
    out = {}
    for sym, start, end in (("EURUSD", "2024-02-01", "2024-04-12"), ("USDJPY", "2017-02-01", "2017-04-12")):
        m1 = load_bars(fx_dir, symbol=sym, start=start, end=end)
        out[sym] = (m1, build_context(m1, macro))
    return out


def test_check_env_gymnasium_and_sb3(contexts) -> None:
    _, ctx = contexts["EURUSD"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(ForexEnv(ctx, EnvConfig(episode_bars=500)), skip_render_check=True)
        sb3_check_env(ForexEnv(ctx, EnvConfig(episode_bars=500)))
    assert ForexEnv(ctx).observation_space.shape == (OBS_DIM,) == (24,)


def test_pettingzoo_parallel_api(contexts) -> None:
    _, ctx = contexts["USDJPY"]
    env = HierarchicalParallelEnv(ctx, EnvConfig(symbol="USDJPY", episode_bars=300))
    parallel_api_test(env, num_cycles=400)
    assert env.observation_space("h4").shape == (H4_OBS_DIM,) == (22,)
    assert env.observation_space("m1").shape == (M1_OBS_DIM,) == (23,)


def _episode(env: ForexEnv, seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    rows, rewards = [obs], []
    for _ in range(n):
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        rows.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return np.array(rows), np.array(rewards)


def test_same_seed_same_episode(contexts) -> None:
    _, ctx = contexts["EURUSD"]
    a = _episode(ForexEnv(ctx, EnvConfig()), seed=7)
    b = _episode(ForexEnv(ctx, EnvConfig()), seed=7)
    c = _episode(ForexEnv(ctx, EnvConfig()), seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_truncation_at_window_end_and_termination_on_breach(contexts) -> None:
    _, ctx = contexts["EURUSD"]
    env = ForexEnv(ctx, EnvConfig(episode_bars=50, random_start=False, max_exposure=0.5))
    env.reset(seed=0)
    steps = 0
    while True:
        _, _, term, trunc, _ = env.step(np.array([0.0, -1.0], np.float32))
        steps += 1
        if term or trunc:
            break
    assert trunc and not term and steps == 50
    env = ForexEnv(ctx, EnvConfig(rules=TIGHT, max_exposure=30.0, random_start=False, episode_bars=20_000))
    env.reset(seed=0)
    for k in range(20_000):
        _, r, term, trunc, info = env.step(np.array([1.0 if (k // 60) % 2 else -1.0, -1.0], np.float32))
        if term or trunc:
            break
    assert term and not trunc and "breach" in info and r <= -1000.0


def test_h4_director_acts_only_on_completed_h4_bars(contexts) -> None:
    _, ctx = contexts["EURUSD"]
    env = HierarchicalForexEnv(ctx, EnvConfig(episode_bars=3000, random_start=False))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    decisions, violations, limits = [], 0, []
    start = env.i
    while True:
        i = env.i
        _, _, term, trunc, info = env.step(rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2))
        decisions.append((i, info["h4_decision"]))
        violations += info["m1_constraint_violation"]
        assert abs(info["target_fraction"]) <= info["h4_limit"] + 1e-12
        limits.append(info["h4_limit"])
        if term or trunc:
            break
    idx = np.array([d[0] for d in decisions])
    made = np.array([d[1] for d in decisions])
    expected = np.r_[True, ctx.h4_pos[idx[1:]] != ctx.h4_pos[idx[1:] - 1]]
    np.testing.assert_array_equal(made, expected)
    assert 10 <= made.sum() <= 3000 // 240 + 2 and idx[0] == start
    assert violations > 0  # random M1 actions often ask for more than the director allows
    lim = np.array(limits)
    assert np.all(lim[1:][~made[1:]] == lim[:-1][~made[1:]])  # the director's limit holds between decisions


def test_a_slower_executor_decides_only_on_completed_m5_bars_and_orders_only_then(contexts) -> None:
    """exec_minutes=5: the executor's action is adopted (and an order sent) only at bars where an M5 bar completed
    (checked against the vectorised resampler), the director's decisions are among them, and every fill but the
    drawdown rules' follows a decision bar."""
    m1, ctx = contexts["EURUSD"]
    env = HierarchicalForexEnv(ctx, EnvConfig(episode_bars=6000, random_start=False, exec_minutes=5))
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    made, h4_made, fills_after = [], [], []
    bar = env.acct.bar

    def recording_bar(j: int) -> list:  # fills at bar j's open were decided on bar j - 1
        fills = bar(j)
        fills_after.extend((j - 1, f.reason) for f in fills)
        return fills

    env.acct.bar = recording_bar
    while True:
        i = env.i
        _, _, term, trunc, info = env.step(rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2))
        made.append((i, info["m1_decision"]))
        h4_made.append(info["h4_decision"])
        if term or trunc:
            break
    idx = np.array([m[0] for m in made])
    got = np.array([m[1] for m in made])
    p5 = completed_index(len(m1), htf_bars(m1, 5))
    h4 = np.array(h4_made)
    np.testing.assert_array_equal(got, np.r_[True, p5[idx[1:]] != p5[idx[1:] - 1]] | h4)
    assert 1000 <= got.sum() <= 6000 // 5 + 10 and (h4 & (p5[idx] == p5[idx - 1])).sum() >= 1  # a weekend's
    decided = set(idx[got].tolist())
    traded = [(i, r) for i, r in fills_after if r == "market"]
    assert len(traded) > 50 and all(i in decided for i, _ in traded)
    with pytest.raises(ValueError, match="divisor of 240"):
        EnvConfig(exec_minutes=7)


@pytest.mark.parametrize("symbol", ["EURUSD", "USDJPY"])
def test_parity_env_vs_backtrader(contexts, symbol: str) -> None:
    """Same actions on the same bars: identical fills, costs and equity through the env and Backtrader."""
    m1, ctx = contexts[symbol]
    cfg = EnvConfig(symbol=symbol, rules=TIGHT, episode_bars=len(m1), random_start=False, max_exposure=12.0,
                    terminate_on_breach=False)
    env = ForexEnv(ctx, cfg)
    _, info = env.reset(seed=0)
    start = info["bar"]
    assert len(m1) - start >= 20 * 1440  # at least a month of trading days after the warm-up
    rng = np.random.default_rng(3)
    actions = np.full((len(m1), 2), np.nan)
    env_equity = {}
    a = np.array([0.0, -1.0])
    while True:
        if env.i % 720 == 0:
            a = rng.uniform(-1.0, 1.0, 2)
        actions[env.i] = a
        _, _, term, trunc, _ = env.step(a)
        env_equity[env.i] = env.acct.sim.equity
        if term or trunc:
            break
    res = run_backtest(ReplayActions, m1, BacktestConfig(symbol=symbol, rules=TIGHT,
                                                         strategy_params={"actions": actions, "max_exposure": 12.0}))
    sim = env.acct.sim
    bars = np.array(sorted(env_equity))
    np.testing.assert_allclose(res.equity[bars], [env_equity[b] for b in bars], rtol=1e-9)
    env_fills = [(f.minute, f.lots, f.price, f.reason) for f in sim_fills(env)]
    bt_fills = [(f.minute, f.lots, f.price, f.reason) for f in res.fills]
    assert env_fills == bt_fills
    for k, v in res.costs.items():
        assert v == pytest.approx({"spread": sim.costs_spread, "commission": sim.costs_commission,
                                   "swap": sim.costs_swap}[k], rel=1e-9)
    cmdp = res.cmdp
    events = cmdp["soft_zone_entries"] + cmdp["blocked_actions"] + cmdp["shrunk_actions"] + len(cmdp["breaches"])
    assert events > 0 and len(cmdp["breaches"]) > 0, cmdp
    assert [b.to_dict() for b in env.acct.guard.breaches] == cmdp["breaches"]


def sim_fills(env: ForexEnv) -> list:
    return env.fill_log


def test_reward_is_pnl_over_the_market_volatility_of_a_full_position(contexts) -> None:
    """The reward's unit is one minute's typical P&L of a full-size position, fixed by the market (H4 ATR known
    at the bar's close), so holding nothing earns exactly 0 and a held position earns its P&L in that unit;
    a daily breach adds the daily penalty and ends the episode."""
    from training.account import Account

    _, ctx = contexts["EURUSD"]
    cfg = EnvConfig(symbol="EURUSD", max_exposure=2.0, reward_clip=1e9, soft_penalty=0.0,
                    rules=DrawdownRules(daily_limit=0.0005, total_limit=0.05, soft_zone=0.0002))
    acct = Account(ctx, cfg)
    i = ctx.first_ready
    acct.bar(i)
    assert acct.reward(i) == (0.0, False)  # flat: no P&L, whatever the market does
    against = -2.0 if ctx.close[i + 400] > ctx.close[i] else 2.0  # the test may look ahead: lose on purpose
    acct.sim.submit_target(against)
    rewards = []
    for j in range(i + 1, i + 400):
        eq0 = acct.sim.equity
        acct.bar(j)
        r, breached = acct.reward(j)
        unit = cfg.max_exposure * cfg.cash * (acct.atr[j] / ctx.close[j]) / np.sqrt(cfg.vol_minutes)
        if breached:
            assert acct.guard.breaches[-1].kind == "daily"
            assert r == pytest.approx((acct.sim.equity - eq0) / unit + cfg.daily_breach_penalty)
            break
        assert r == pytest.approx((acct.sim.equity - eq0) / unit)
        rewards.append(r)
    assert breached and len(rewards) > 10 and any(r != 0 for r in rewards)
    assert acct.reward_parts["breach_penalty"] == cfg.daily_breach_penalty


def test_differential_sharpe_by_hand_and_as_the_sharpe_ratios_derivative() -> None:
    """Moody and Saffell's D: by hand for one step, and the property that defines it: the Sharpe ratio of the moving
    averages moves by eta x D per bar to first order (checked independently from A and B, on a path whose variance
    stays above the floor)."""
    from training.rewards import DifferentialSharpe

    d = DifferentialSharpe(eta=0.5, var_floor=1e-9)
    assert d.step(2.0) == pytest.approx((1.0 * 2.0 - 0.0) / 1.0**1.5)  # A=0, B=1: D = r
    assert (d.a, d.b) == (1.0, 2.5)
    assert d.step(0.0) == pytest.approx((2.5 * -1.0 - 0.5 * 1.0 * -2.5) / 1.5**1.5)
    eta = 1e-4
    d = DifferentialSharpe(eta=eta, var_floor=1e-9)
    rng = np.random.default_rng(0)
    for r in rng.normal(0.3, 1.0, 2000):
        s0 = d.sharpe()
        got = d.step(float(r))
        assert (d.sharpe() - s0) / eta == pytest.approx(got, rel=2e-3, abs=2e-3)
    floored = DifferentialSharpe(eta=1e-2)  # long flat: B decays, the floor keeps the first trade's D bounded
    for _ in range(5000):
        floored.step(0.0)
    assert floored.b < 1e-9 and floored.step(1.0) == pytest.approx(1.0 / np.sqrt(floored.var_floor), rel=1e-6)
    with pytest.raises(ValueError, match="reward must be"):
        EnvConfig(reward="sharpe")


def test_the_dsr_reward_feeds_the_normalised_pnl_through_the_differential_sharpe(contexts) -> None:
    from training.account import Account
    from training.rewards import DifferentialSharpe

    _, ctx = contexts["EURUSD"]
    base = dict(symbol="EURUSD", max_exposure=2.0, reward_clip=1e9, soft_penalty=0.0)
    plain, dsr = Account(ctx, EnvConfig(**base)), Account(ctx, EnvConfig(**base, reward="dsr"))
    ref = DifferentialSharpe(1.0 / 1440)
    i = ctx.first_ready
    for acct in (plain, dsr):
        acct.bar(i)
        acct.sim.submit_target(1.0)
    n_checked = 0
    for j in range(i + 1, i + 300):
        plain.bar(j)
        dsr.bar(j)
        r_plain, _ = plain.reward(j)
        r_dsr, _ = dsr.reward(j)
        assert r_dsr == pytest.approx(ref.step(r_plain), rel=1e-9, abs=1e-12)
        n_checked += r_plain != 0.0
    assert n_checked > 200
