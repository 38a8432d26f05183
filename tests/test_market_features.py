"""The market block (features/market.py): causal (prefix == whole series), values by hand and by an independent
computation on real bars, and a checkpoint that reads it acting the same in the training env and in Backtrader."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from agents.common.checkpoint import CheckpointError, save_checkpoint
from agents.common.networks import Actor
from agents.common.observations import M1_BIAS_SLOT, M1_LIMIT_SLOT, M1_OBS_DIM, STATE_DIM, ObservationBuilder
from agents.mtf_marl.checkpoint import load_mtf_marl_actors, mtf_marl_manifest
from brokers.instruments import get_instrument
from features.context import build_context
from features.market import MARKET_NAMES, N_MARKET, market_block, raw_market_arrays, swap_differential
from features.matrices import macro_changes
from feeds.calendar import trading_days
from feeds.loaders import load_bars
from feeds.macro import MacroTable, load_macro
from risk.drawdown import DrawdownRules
from strategies.backtest import BacktestConfig, run_backtest
from strategies.mtf_marl import MtfMarl
from training.env_config import EnvConfig
from training.hier_env import HierarchicalForexEnv
from training.train_mtf_marl import Args, manifest

K = {name: j for j, name in enumerate(MARKET_NAMES)}


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    return pd.DatetimeIndex(index).as_unit("ns").asi8


def _raw(m1: pd.DataFrame, macro, carry: float = 0.0) -> np.ndarray:
    return raw_market_arrays(_ns(m1.index), m1["high"].to_numpy(), m1["low"].to_numpy(), m1["close"].to_numpy(),
                             macro, carry)


@pytest.fixture(scope="module")
def eurusd(fx_dir, macro_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_bars(fx_dir, symbol="EURUSD", start="2024-01-01", end="2024-02-16"), load_macro(macro_dir)


def test_every_row_is_known_at_its_bar_close(eurusd) -> None:
    """Causality: the block over a prefix of the bars equals the same rows over the whole series (so no row reads a
    later bar), at cuts inside the first day, the first week, and later."""
    m1, macro = eurusd
    table = MacroTable.from_frame(macro)
    full = _raw(m1, table)
    assert np.isfinite(full[-1]).all()
    for cut in (500, 7_300, 15_000, 24_001, len(m1) - 1):
        np.testing.assert_array_equal(_raw(m1.iloc[:cut], table), full[:cut], err_msg=f"prefix of {cut} bars")


def test_levels_returns_and_volatility_match_an_independent_computation(eurusd) -> None:
    """The previous trading day's and week's high/low from a pandas groupby, returns and volatility ratios from
    explicit windows at sampled bars."""
    m1, macro = eurusd
    raw = _raw(m1, None)
    day = trading_days(m1.index)
    g = m1.groupby(day).agg(high=("high", "max"), low=("low", "min"))
    g = g.shift(1)
    g.iloc[1] = np.nan  # the first day may be partial (the data begin mid-day): it is nobody's previous day
    prev = g.reindex(day)
    rng = (prev["high"] - prev["low"]).to_numpy()
    close = m1["close"].to_numpy()
    ok = np.isfinite(rng)
    np.testing.assert_allclose(raw[ok, K["prev_day_high"]], ((close - prev["high"].to_numpy()) / rng)[ok], atol=1e-12)
    np.testing.assert_allclose(raw[ok, K["prev_day_low"]], ((close - prev["low"].to_numpy()) / rng)[ok], atol=1e-12)
    assert np.isnan(raw[~ok, K["prev_day_high"]]).all() and (~ok).sum() > 1440  # the first two days have none
    monday = day - pd.to_timedelta(day.day_of_week, unit="D")
    w = m1.groupby(monday).agg(high=("high", "max"), low=("low", "min")).shift(1)
    w.iloc[1] = np.nan
    pw = w.reindex(monday)
    wr = (pw["high"] - pw["low"]).to_numpy()
    okw = np.isfinite(wr)
    np.testing.assert_allclose(raw[okw, K["prev_week_high"]], ((close - pw["high"].to_numpy()) / wr)[okw], atol=1e-12)
    np.testing.assert_allclose(raw[okw, K["prev_week_low"]], ((close - pw["low"].to_numpy()) / wr)[okw], atol=1e-12)
    logc = np.log(close)
    r1 = np.diff(logc)  # r1[j] is bar j+1's one-bar return
    for i in (7_300, 12_345, len(m1) - 1):
        sd = {n: np.std(r1[i - n:i]) for n in (60, 1440, 7200)}  # the n returns ending at bar i
        for name, k in (("ret_h1", 60), ("ret_h4", 240), ("ret_d1", 1440)):
            assert raw[i, K[name]] == pytest.approx((logc[i] - logc[i - k]) / (sd[1440] * np.sqrt(k)), rel=1e-9)
        assert raw[i, K["vol_h1_d1"]] == pytest.approx(np.log(sd[60] / sd[1440]), rel=1e-9)
        assert raw[i, K["vol_d1_w1"]] == pytest.approx(np.log(sd[1440] / sd[7200]), rel=1e-9)
    assert np.isnan(raw[7198, K["vol_d1_w1"]]) and np.isfinite(raw[7200, K["vol_d1_w1"]])
    np.testing.assert_array_equal(_raw(m1, MacroTable.from_frame(macro))[:, K["vix_change"]:],
                                  macro_changes(_ns(m1.index), MacroTable.from_frame(macro)))


def test_clock_sessions_rollover_and_carry_by_hand() -> None:
    # bar open times (UTC); the block reads each bar's close, a minute later
    opens = pd.DatetimeIndex(["2024-01-08 07:59", "2024-07-01 06:59", "2024-07-01 20:28", "2024-07-01 20:29",
                              "2024-07-01 21:29", "2024-07-01 21:30", "2024-07-01 23:59", "2024-07-02 08:59"],
                             tz="UTC")
    c = np.full(len(opens), 1.1)
    raw = raw_market_arrays(_ns(opens), c, c, c, None, swap_differential(get_instrument("EURUSD")))
    col = {name: raw[:, K[name]].tolist() for name in MARKET_NAMES}
    # Monday 08:00 UTC: a third of the day, 1/21 of the week
    assert (col["tod_sin"][0], col["tod_cos"][0]) == pytest.approx((np.sin(2 * np.pi / 3), np.cos(2 * np.pi / 3)))
    assert col["dow_sin"][0] == pytest.approx(np.sin(2 * np.pi / 21))
    assert col["tod_cos"][6] == pytest.approx(1.0)  # closes at midnight
    # 08:00 UTC in January is 08:00 London and 17:00 Tokyo; 07:00 UTC in July is 08:00 London (summer time)
    assert col["london"][:2] == [1.0, 1.0] and col["asia"][:2] == [1.0, 1.0] and col["new_york"][:2] == [0.0, 0.0]
    # 20:59 UTC in July = 16:59 New York (still open); 21:00 its close; Tokyo opens at 00:00 UTC, closes at 09:00
    assert col["new_york"][2:6] == [1.0, 1.0, 0.0, 0.0] and col["asia"][6:] == [1.0, 0.0]
    # the rollover is 21:00 UTC in July: closes at 20:29 (31 min before) and 21:31 are outside, 20:30 and 21:30 in
    assert col["rollover"][2:6] == [0.0, 1.0, 1.0, 0.0]
    # EURUSD swaps: long -0.75, short +0.25 pips a night: (-0.75 - 0.25) / 2 = -0.5 pips a night, over its 0.3-pip
    # spread; the same at every price
    assert col["carry"] == [pytest.approx(-0.5 / 0.3)] * len(opens)
    jpy = raw_market_arrays(_ns(opens), 150 + c, 150 + c, 150 + c, None, swap_differential(get_instrument("USDJPY")))
    assert jpy[0, K["carry"]] == pytest.approx(0.5 * (0.35 + 0.95) / 0.4)  # long USDJPY earns


def test_bad_bars_are_refused() -> None:
    t = _ns(pd.date_range("2024-01-08", periods=3, freq="1min", tz="UTC"))
    c = np.array([1.1, np.nan, 1.1])
    with pytest.raises(ValueError, match="NaN"):
        raw_market_arrays(t, c, c, c, None, 0.0)
    with pytest.raises(ValueError, match="increasing"):
        raw_market_arrays(t[::-1], np.ones(3), np.ones(3), np.ones(3), None, 0.0)


def test_context_and_observations_carry_the_block_after_the_slots_they_had(eurusd) -> None:
    m1, macro = eurusd
    inst = get_instrument("EURUSD")
    ctx = build_context(m1, macro, market=inst)
    plain = build_context(m1, macro)
    block, ready = market_block(m1, macro, swap_differential(inst))
    assert ctx.market.shape == (len(m1), N_MARKET) and ctx.first_ready == max(plain.first_ready, ready) > ready - 1
    np.testing.assert_array_equal(ctx.market, block)
    cfg = EnvConfig(market_features=True)
    env = HierarchicalForexEnv(ctx, cfg)
    (o_h4, o_m1), _ = env.reset(seed=0)
    i = env.i
    assert o_m1.shape == (M1_OBS_DIM + N_MARKET,) == env.m1_observation_space.shape
    np.testing.assert_array_equal(o_m1[M1_OBS_DIM:], ctx.market[i])
    np.testing.assert_array_equal(o_h4[-N_MARKET:], ctx.market[i])
    np.testing.assert_array_equal(env.shared_state()[STATE_DIM:], ctx.market[i])
    base = ObservationBuilder(plain, inst, cfg.cash, DrawdownRules(), cfg.max_exposure)
    base.after_bar(i, env.acct.sim)
    np.testing.assert_array_equal(o_m1[:M1_OBS_DIM], base.m1(i, env.acct.sim, 0.0, 0.0))  # the slots did not move
    assert (M1_LIMIT_SLOT, M1_BIAS_SLOT) == (M1_OBS_DIM - 2, M1_OBS_DIM - 1)
    with pytest.raises(ValueError, match="market"):
        HierarchicalForexEnv(plain, cfg)  # a config that wants the block, a context without it
    with pytest.raises(ValueError, match="market"):
        HierarchicalForexEnv(ctx, EnvConfig())


def _london_checkpoint(path: Path) -> Path:
    """Hand-set weights that read the market block: the director allows both directions at full size, the executor
    is long in the London session and short outside it."""
    args = Args(market_features=True)
    man = manifest(args, 0)
    hidden = tuple(man["learner_config"]["hidden"])
    h4, m1 = Actor(man["obs"]["h4"], 2, hidden), Actor(man["obs"]["m1"], 2, hidden)
    with torch.no_grad():
        for p in (*h4.parameters(), *m1.parameters()):
            p.zero_()
        h4.net[4].bias[:] = torch.tensor([0.0, 3.0])  # bias 0, limit ~1
        london = M1_OBS_DIM + K["london"]
        m1.net[0].weight[0, london], m1.net[0].weight[1, london], m1.net[0].bias[1] = 1.0, -1.0, 1.0
        m1.net[2].weight[0, 0] = m1.net[2].weight[1, 1] = 1.0
        m1.net[4].weight[0, :2] = torch.tensor([3.0, -3.0])  # entry tanh(+-3)
        m1.net[4].bias[1] = -3.0  # exit confidence ~0
    return save_checkpoint(path, {"h4_actor": h4.state_dict(), "m1_actor": m1.state_dict()}, man)


def test_a_checkpoint_reading_the_block_acts_the_same_in_the_env_and_in_backtrader(eurusd, tmp_path: Path) -> None:
    m1, macro = eurusd
    ckpt = _london_checkpoint(tmp_path / "london")
    h4, m1_actor, man = load_mtf_marl_actors(ckpt)
    ctx = build_context(m1, macro, market=get_instrument("EURUSD"))
    cfg = replace(EnvConfig.from_dict(man["env_config"]), random_start=False, terminate_on_breach=False,
                  episode_bars=10**9)
    env = HierarchicalForexEnv(ctx, cfg)
    (o_h4, _), _ = env.reset(seed=0)
    targets, equity, a_h4 = [], {}, None
    while env.i < len(ctx) - 1:
        if env.h4_decision_due():
            a_h4 = h4(o_h4)
        i = env.i
        (o_h4, _), _, _, _, info = env.step(a_h4, m1_actor(env.m1_obs(a_h4)))
        if not targets or targets[-1][1:] != (info["target_fraction"], info["h4_limit"]):
            targets.append((int(ctx.minutes[i]), info["target_fraction"], info["h4_limit"]))
        equity[env.i] = env.acct.sim.equity
    res = run_backtest(MtfMarl, m1, BacktestConfig(symbol="EURUSD", strategy_params={"checkpoint": ckpt}))
    assert res.strategy_obj.entries == targets
    signs = [np.sign(f) for _, f, _ in targets if f]
    flips = sum(a != b for a, b in zip(signs, signs[1:], strict=False))
    # into and out of London on the ~14 trading days after the H4 warm-up (from 29 January), less the four that end
    # halted at the 5 % daily limit (full size, flipped twice a day)
    assert flips >= 20 and len(res.cmdp["breaches"]) == 4
    bars = np.array(sorted(equity))
    np.testing.assert_allclose(res.equity[bars], [equity[b] for b in bars], rtol=1e-9)
    # the live path (features.incremental, bar by bar in the strategy): the same decisions and fills
    live = run_backtest(MtfMarl, m1, BacktestConfig(symbol="EURUSD", precompute_features=False,
                                                    strategy_params={"checkpoint": ckpt}))
    last = int(ctx.minutes[-1])  # live also decides on the last bar (an order that cannot fill)
    assert [e for e in live.strategy_obj.entries if e[0] != last] == res.strategy_obj.entries
    assert live.fills == res.fills
    np.testing.assert_array_equal(live.equity, res.equity)


def test_the_incremental_driver_computes_the_block_as_the_whole_series_does(eurusd) -> None:
    from features.incremental import IncrementalContext

    m1, macro = eurusd
    inst = get_instrument("EURUSD")
    ctx = build_context(m1, macro, market=inst)
    inc = IncrementalContext(macro, market=inst)
    t = _ns(m1.index)
    o, h, lo, c = (m1[k].to_numpy() for k in ("open", "high", "low", "close"))
    inc.extend(t[:20_000], o[:20_000], h[:20_000], lo[:20_000], c[:20_000])  # a backfill, then bar by bar
    for i in range(20_000, len(m1)):
        inc.append(int(t[i]), o[i], h[i], lo[i], c[i])
        if i % 97 == 0 or i == len(m1) - 1:
            assert np.abs(inc.market[i] - ctx.market[i]).max() <= 1e-6, i
    assert inc.first_ready == ctx.first_ready
    assert IncrementalContext(macro).market is None


def test_the_block_is_ready_from_the_third_fx_week_in_both_drivers(eurusd) -> None:
    """Data that begin mid-week (the FX Tuesday 2 January 2024, from Monday 22:00 UTC): the first week is partial,
    so the block is defined from the first bar of the third week; the incremental driver's readiness rule says the
    same bar (the H4 warm-up, which ends later, is not what decides here)."""
    from features.incremental import IncrementalContext

    m1, macro = eurusd
    inst = get_instrument("EURUSD")
    block, ready = market_block(m1, macro, swap_differential(inst))
    week = (trading_days(m1.index).asi8 // 86_400_000_000_000 + 3) // 7
    third = int(np.flatnonzero(np.diff(week))[1]) + 1
    assert trading_days(m1.index)[0].day_of_week == 1 and ready == max(third, 7_200) == third  # begins on a Tuesday
    assert (block[:ready, K["prev_week_high"]] == 0).all() and block[ready, K["prev_week_high"]] != 0
    inc = IncrementalContext(macro, market=inst)
    t = _ns(m1.index)
    first = None
    for i in range(ready + 5):
        inc.append(int(t[i]), *(float(m1[k].iloc[i]) for k in ("open", "high", "low", "close")))
        if first is None and inc._market_ready(i):
            first = i
    assert first == ready


def test_a_checkpoint_of_another_market_block_is_refused(tmp_path: Path) -> None:
    ckpt = _london_checkpoint(tmp_path / "london")
    mp = ckpt / "manifest.json"
    import json

    man = json.loads(mp.read_text())
    man["market_spec"]["return_bars"] = [30, 240, 1440]
    mp.write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="market block"):
        mtf_marl_manifest(ckpt)


def test_action_sensitivity_finds_the_one_input_a_policy_reads(eurusd, tmp_path: Path) -> None:
    """reports.feature_importance on the hand-set London policy: all of the executor's sensitivity is on ``london``,
    none of the director's (its output is a constant)."""
    from reports.feature_importance import fold_table, sensitivity

    m1, macro = eurusd
    h4, m1_actor, _ = load_mtf_marl_actors(_london_checkpoint(tmp_path / "london"))
    ctx = build_context(m1, macro, market=get_instrument("EURUSD"))
    env = HierarchicalForexEnv(ctx, EnvConfig(market_features=True, random_start=False, episode_bars=10**9))
    (o_h4, _), _ = env.reset(seed=0)
    rows = range(env.i, len(ctx) - 1, 7)
    x = np.array([env.acct.obs.m1(i, env.acct.sim, 1.0, 0.0) for i in rows], np.float64)
    rng = np.random.default_rng(0)
    from agents.common.observations import obs_names

    s = sensitivity(m1_actor, x, rng, obs_names(True)["m1"])
    london = M1_OBS_DIM + K["london"]
    assert s[london, 0] > 0.5 and s[london, 1] == pytest.approx(0.0, abs=1e-12)  # the exit output ignores it too
    assert np.delete(s, london, axis=0).max() == 0.0
    assert sensitivity(h4, np.repeat(o_h4[None].astype(np.float64), 50, axis=0), rng).max() == 0.0
    # a time of day is permuted as a point on the circle: an actor reading its cosine only is credited on both slots
    tod = M1_OBS_DIM + K["tod_cos"]

    def reads_cos(obs: np.ndarray) -> np.ndarray:
        return np.tanh(np.c_[obs[:, tod], np.zeros(len(obs))])

    st = sensitivity(reads_cos, x, rng, obs_names(True)["m1"])
    assert st[tod, 0] > 0.1 and st[M1_OBS_DIM + K["tod_sin"], 0] == st[tod, 0]

    names = obs_names(True)
    res = {"fold": "f", "validation": {"active_days": 3}, "h4": dict.fromkeys(names["h4"], 0.0),
           "m1": dict(zip(names["m1"], s.sum(axis=1).tolist(), strict=True))}
    row = fold_table([res])[3]
    assert row.startswith("| f | m1 | 1 | 1 of 1 | 100% | london 100%")
    res["m1"] = dict(zip(names["m1"], st.sum(axis=1).tolist(), strict=True))  # the pair counts once, by its name
    assert fold_table([res])[3].startswith("| f | m1 | 1 | 1 of 1 | 100% | time_of_day 100%")


def test_the_trainers_without_the_block_refuse_the_flag(tmp_path: Path) -> None:
    from training import train_four_agent, train_td3, walk_forward

    with pytest.raises(ValueError, match="mtf_marl only"):
        train_td3.main(train_td3.Args(market_features=True, out=str(tmp_path / "td3")))
    with pytest.raises(ValueError, match="mtf_marl only"):
        train_four_agent.Trainer(train_four_agent.Args(market_features=True))
    with pytest.raises(ValueError, match="--market-features is built for mtf_marl only"):
        walk_forward.main(walk_forward.Args(trainers=("mtf_marl", "td3"), market_features=True))


def test_the_ic_report_looks_exactly_horizon_minutes_ahead_and_fits_on_the_past_only(fx_dir) -> None:
    from reports.feature_ic import INPUTS, ic, ridge_forecast, year_points

    pts = year_points("EURUSD", 2024, 60, str(fx_dir))
    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-01-01", end="2024-12-31")
    close = m1["close"]
    for k in (0, 1000, len(pts["fwd"]) - 1):
        t = pd.Timestamp(int(pts["minute"][k]), unit="m", tz="UTC")
        assert t.minute == 59 and pts["close"][k] == close[t]  # the bar that closes the hour
        assert np.exp(pts["fwd"][k]) * pts["close"][k] == pytest.approx(close[t + pd.Timedelta(minutes=60)], rel=1e-12)
    assert pts["x"].shape == (len(pts["fwd"]), len(INPUTS))
    rng = np.random.default_rng(0)  # a known linear relation: the forecast fit on one half finds it on the other
    x = rng.normal(size=(4000, 3))
    y = 0.3 * x[:, 0] - 0.2 * x[:, 2] + rng.normal(size=4000)
    half = {"x": x[:2000], "fwd": y[:2000]}
    f = ridge_forecast([half], {"x": x[2000:], "fwd": y[2000:]})
    seg = np.zeros(2000, int)
    assert ic(f, y[2000:], seg) > ic(x[2000:, 0], y[2000:], seg) > 0.2
