"""MTF-MARL agents: checkpoints, exact resume, the trainer CLI, learnability, strategy == env."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from agents.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.common.networks import NumpyActor
from agents.common.observations import H4_OBS_DIM, M1, M1_BIAS_SLOT, M1_LIMIT_SLOT, M1_OBS_DIM, STATE_DIM
from agents.mtf_marl.buffer import Batch, JointReplayBuffer
from agents.mtf_marl.checkpoint import load_mtf_marl_actors as load_actors
from agents.mtf_marl.learner import MTFMARL, MTFMARLConfig
from features.context import HISTORY_DAYS, build_context
from features.engine import DEFAULT_SPEC
from feeds.loaders import load_bars
from feeds.macro import load_macro
from feeds.paths import REPO_ROOT
from feeds.resample import completed_index, htf_bars
from strategies.backtest import BacktestConfig, run_backtest
from strategies.mtf_marl import MtfMarl
from training.env_config import EnvConfig
from training.hier_env import HierarchicalForexEnv
from training.train_mtf_marl import Args, main

SMALL = dict(train_start="2024-01-01", train_end="2024-02-29", val_start="2024-03-01", val_end="2024-03-31",
             learning_starts=600, update_every=2, batch_size=64, episode_bars=400, max_exposure=2.0,
             eval_bars=1500, buffer_size=5000, tensorboard=False, progress=False)


def _learner() -> MTFMARL:
    return MTFMARL(STATE_DIM, H4_OBS_DIM, M1_OBS_DIM, (M1_LIMIT_SLOT, M1_BIAS_SLOT))


def test_numpy_actor_matches_torch() -> None:
    torch.manual_seed(0)
    lr = _learner()
    x = np.random.default_rng(0).normal(size=(5, M1_OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        ref = lr.m1(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(NumpyActor(lr.m1)(x), ref, atol=1e-6)


def test_buffer_balanced_sampling_covers_h4_bins() -> None:
    buf = JointReplayBuffer(1000, STATE_DIM, H4_OBS_DIM, M1_OBS_DIM)
    z = np.zeros
    for k in range(1000):  # 990 transitions in one H4 bin, 10 in another
        a_h4 = np.array([0.9, 0.9] if k % 100 == 0 else [-0.9, -0.9], np.float32)
        buf.add(z(STATE_DIM), z(H4_OBS_DIM), z(M1_OBS_DIM), a_h4, z(2), 0.0, z(STATE_DIM), z(H4_OBS_DIM),
                z(M1_OBS_DIM), False, False)
    rng = np.random.default_rng(0)
    copy = pickle.loads(pickle.dumps(buf))  # the field views must point into the copy's own array
    copy.fields["a_h4"][0] = 9.0
    a_h4 = buf.fields["a_h4"]
    assert copy.data[0, STATE_DIM + H4_OBS_DIM + M1_OBS_DIM] == 9.0 and a_h4[0, 0] != 9.0
    plain = a_h4[buf.sample_indices(2000, rng)][:, 0]
    balanced = a_h4[buf.sample_indices(2000, rng, balanced_h4=True)][:, 0]
    assert (plain > 0).mean() < 0.05 and 0.4 < (balanced > 0).mean() < 0.6


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    lr = _learner()
    man = {"algorithm": "mtf_marl", "feature_spec": DEFAULT_SPEC.to_dict()}
    save_checkpoint(tmp_path / "ck", {n: m.state_dict() for n, m in lr.modules(full=True).items()}, man)
    tensors, got = load_checkpoint(tmp_path / "ck", DEFAULT_SPEC.to_dict(), "mtf_marl")
    other = _learner()
    for n, m in other.modules(full=True).items():
        m.load_state_dict(tensors[n])
    x = torch.randn(3, H4_OBS_DIM)
    assert torch.equal(other.h4(x), lr.h4(x)) and "versions" in got
    with pytest.raises(CheckpointError, match="another feature spec"):
        load_checkpoint(tmp_path / "ck", replace(DEFAULT_SPEC, rsi_period=21).to_dict(), "mtf_marl")
    with pytest.raises(CheckpointError, match="not 'td3'"):
        load_checkpoint(tmp_path / "ck", None, "td3")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fx_dir) -> Path:
    out = tmp_path_factory.mktemp("mtf") / "run"
    main(Args(**SMALL, total_steps=2000, eval_every=1000, checkpoint_every=1000, seed=3, out=str(out)))
    return out


def test_trainer_writes_checkpoints_and_summary(trained: Path) -> None:
    s = json.loads((trained / "train_summary.json").read_text())
    assert s["steps"] == 2000 and s["updates"] == (2000 - 600) // 2 + 1
    assert s["final_validation"]["m1_constraint_violations"] == 0
    for sub in ("best", "last"):
        assert (trained / sub / "weights.pt").is_file() and (trained / sub / "manifest.json").is_file()
    best = json.loads((trained / "best" / "manifest.json").read_text())
    assert best["feature_spec"] == DEFAULT_SPEC.to_dict() and best["symbol"] == "EURUSD"
    assert best["history_days"] == HISTORY_DAYS  # validation decided from the period's first bar
    assert (trained / "best" / "weights.pt").stat().st_size < 1_000_000


@pytest.mark.parametrize("h4_credit", ["per_step", "smdp"])
def test_resume_is_exact(tmp_path: Path, fx_dir, h4_credit: str) -> None:
    kw = dict(SMALL, eval_every=10**9, checkpoint_every=800, seed=5, h4_credit=h4_credit)
    full = main(Args(**kw, total_steps=1600, out=str(tmp_path / "full")))
    main(Args(**kw, total_steps=800, out=str(tmp_path / "a")))
    resumed = main(Args(**kw, total_steps=1600, out=str(tmp_path / "b"), resume=str(tmp_path / "a" / "last")))
    assert full["updates"] == resumed["updates"]
    ta, _ = load_checkpoint(tmp_path / "full" / "last")
    tb, _ = load_checkpoint(tmp_path / "b" / "last")
    for name in ("h4_actor", "m1_actor", "critic"):
        for k, v in ta[name].items():
            assert torch.equal(v, tb[name][k]), f"{name}.{k} differs after resume"


def test_trainer_cli_smoke(tmp_path: Path, fx_dir) -> None:
    args = ["--total-steps", "900", "--eval-every", "900", "--out", str(tmp_path / "cli")]
    for k, v in SMALL.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            args.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            args += [flag, str(v)]
    p = subprocess.run([sys.executable, "-m", "training.train_mtf_marl", *args], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "cli" / "best" / "manifest.json").is_file()


def _env_targets(ckpt: Path, ctx) -> tuple[list, dict[int, float]]:
    """The checkpoint's decisions through the training env: (minute, target fraction, limit) where either changed,
    and the equity after each bar."""
    h4, m1_actor, man = load_actors(ckpt)
    cfg = replace(EnvConfig.from_dict(man["env_config"]), random_start=False, terminate_on_breach=False,
                  episode_bars=10**9)
    env = HierarchicalForexEnv(ctx, cfg)
    (o_h4, _), _ = env.reset(seed=0)
    env_targets, env_equity, a_h4, a_m1 = [], {}, None, None
    while env.i < len(ctx) - 1:
        if env.h4_decision_due():
            a_h4 = h4(o_h4)
        if env.m1_decision_due():
            a_m1 = m1_actor(env.m1_obs(a_h4))
        i = env.i
        (o_h4, _), _, _, _, info = env.step(a_h4, a_m1)
        if info["m1_decision"] and (not env_targets or env_targets[-1][1:] != (info["target_fraction"],
                                                                               info["h4_limit"])):
            env_targets.append((int(ctx.minutes[i]), info["target_fraction"], info["h4_limit"]))  # changes only
        env_equity[env.i] = env.acct.sim.equity
    return env_targets, env_equity


def test_strategy_and_env_take_the_same_actions(trained: Path, fx_dir, macro_dir) -> None:
    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-01-01", end="2024-02-13")
    ctx = build_context(m1, load_macro(macro_dir))
    env_targets, env_equity = _env_targets(trained / "best", ctx)
    res = run_backtest(MtfMarl, m1, BacktestConfig(symbol="EURUSD", strategy_params={"checkpoint": trained / "best"}))
    bt_targets = res.strategy_obj.entries
    assert len(bt_targets) == len(env_targets) > 50
    assert bt_targets == env_targets
    bars = np.array(sorted(env_equity))
    np.testing.assert_allclose(res.equity[bars], [env_equity[b] for b in bars], rtol=1e-9)
    assert res.strategy_obj.coordination()["m1_constraint_violations"] == 0
    # the live path: features computed bar by bar in the strategy (features.incremental), the same actions
    live = run_backtest(MtfMarl, m1, BacktestConfig(symbol="EURUSD", precompute_features=False,
                                                    strategy_params={"checkpoint": trained / "best"}))
    last = int(ctx.minutes[-1])  # live has no last bar to keep free: it also decides there (an order that cannot fill)
    assert [e for e in live.strategy_obj.entries if e[0] != last] == bt_targets
    assert [d for d in live.strategy_obj.decisions if d[0] != last] == res.strategy_obj.decisions
    assert live.fills == res.fills
    np.testing.assert_array_equal(live.equity, res.equity)


def test_a_slower_execution_cadence_acts_the_same_in_the_strategy_and_the_env(trained: Path, tmp_path: Path,
                                                                             fx_dir, macro_dir) -> None:
    """A checkpoint trained with ``exec_minutes=5`` (here: the trained one's manifest saying so, with hand-set
    weights that trade: the director allows both directions at full size, the executor goes long or short with the
    sign of its 15-minute momentum) decides on completed M5 bars in Backtrader as in the env: the same decisions,
    fills and equity."""
    tensors, man = load_checkpoint(trained / "best")
    for sd in (tensors["h4_actor"], tensors["m1_actor"]):
        for v in sd.values():
            v.zero_()
    tensors["h4_actor"]["net.4.bias"][:] = torch.tensor([0.0, 3.0])  # bias 0 (both directions), limit ~1
    m1w = tensors["m1_actor"]
    mom = M1["momentum"]
    m1w["net.0.weight"][0, mom], m1w["net.0.weight"][1, mom] = 1.0, -1.0  # ReLU: momentum's positive, negative part
    m1w["net.2.weight"][0, 0] = m1w["net.2.weight"][1, 1] = 1.0
    m1w["net.4.weight"][0, :2] = torch.tensor([50.0, -50.0])  # entry = tanh(50 x momentum)
    m1w["net.4.bias"][1] = -3.0  # exit confidence ~0
    man["env_config"]["exec_minutes"] = 5
    ckpt = save_checkpoint(tmp_path / "m5", {k: tensors[k] for k in ("h4_actor", "m1_actor", "critic")}, man)
    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-01-01", end="2024-02-06")
    ctx = build_context(m1, load_macro(macro_dir))
    env_targets, env_equity = _env_targets(ckpt, ctx)
    res = run_backtest(MtfMarl, m1, BacktestConfig(symbol="EURUSD", strategy_params={"checkpoint": ckpt}))
    assert res.strategy_obj.entries == env_targets and len(env_targets) > 10
    p5 = completed_index(len(m1), htf_bars(m1, 5))
    rows = np.searchsorted(ctx.minutes, [m for m, _, _ in env_targets[1:]])
    assert np.all((p5[rows] != p5[rows - 1]) | (ctx.h4_pos[rows] != ctx.h4_pos[rows - 1]))  # M5 or H4 completed
    bars = np.array(sorted(env_equity))
    np.testing.assert_allclose(res.equity[bars], [env_equity[b] for b in bars], rtol=1e-9)
    assert len(res.fills) > 20
    live = run_backtest(MtfMarl, m1, BacktestConfig(symbol="EURUSD", precompute_features=False,
                                                    strategy_params={"checkpoint": ckpt}))  # the live path
    assert live.fills == res.fills


def _trend(days: int = 45, pips_per_min: float = 1.0) -> pd.DataFrame:
    """A known price path: a steady weekday uptrend with small noise (synthetic, to pin learnability only)."""
    idx = pd.date_range("2024-01-01", periods=days * 1440, freq="1min", tz="UTC", name="datetime")
    idx = idx[idx.day_of_week < 5]
    rng = np.random.default_rng(0)
    close = 1.1 + np.cumsum(pips_per_min * 1e-4 + rng.normal(0, 0.2e-4, len(idx)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + 0.1e-4
    low = np.minimum(open_, close) - 0.1e-4
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": 0.0}, index=idx)


@pytest.mark.parametrize("h4_credit", ["per_step", "smdp"])
def test_agents_learn_a_simple_trend(tmp_path: Path, h4_credit: str) -> None:
    """Trained by the real trainer on a steady uptrend, the pair must beat staying flat on a later stretch of
    it, with either H4 credit assignment (learnability, not evidence of edge)."""
    path = tmp_path / "EURUSD_M1_2024.csv"
    _trend(days=90).to_csv(path, date_format="%Y-%m-%dT%H:%M:%SZ")
    args = Args(data=str(path), train_start="2024-01-01", train_end="2024-02-15", val_start="2024-02-16",
                val_end="2024-03-30", total_steps=8000, learning_starts=2000, batch_size=128, episode_bars=1000,
                max_exposure=2.0, eval_every=2000, eval_bars=5000, h4_credit=h4_credit, expl_noise=0.3,
                tensorboard=False, progress=False, seed=1, out=str(tmp_path / "run"))
    # seed 1: per_step beats flat from 4k steps, smdp from 4k; with seed 0 smdp needs ~12k (the director has
    # one option transition per 240 steps to learn from)
    summary = main(args)
    val = summary["history"][-1]  # the final policy, not one picked among the evaluations
    assert val["total_return"] > 0.01, summary["history"]  # flat would be exactly 0
    assert val["m1_constraint_violations"] == 0


def test_h4_changes_counts_moves_beyond_the_threshold() -> None:
    from agents.mtf_marl.learner import h4_changes

    assert h4_changes([(0.5, 0.0), (0.55, 0.0), (0.8, 0.0), (0.8, -0.5), (0.8, -0.45)]) == 2
    assert h4_changes([]) == 0 and h4_changes([(1.0, 1.0)]) == 0


def test_ablation_evaluates_selected_and_final_policies_out_of_sample(trained: Path, fx_dir) -> None:
    from training.ablation import buy_and_hold, evaluate_on_test
    from training.data import period_contexts

    ctx = period_contexts("EURUSD", "2024-03-01", "2024-04-15", fx_dir)
    res = evaluate_on_test("mtf_marl_shared", trained, ctx)
    assert set(res) == {"best", "last"} and (trained / "test_eval.json").is_file()
    assert all(r["bars"] > 10_000 and r["m1_constraint_violations"] == 0 for r in res.values())
    assert evaluate_on_test("mtf_marl_shared", trained, ctx) == res  # cached
    c = ctx[0]
    bh = buy_and_hold(ctx)
    assert bh["total_return"] == pytest.approx(c.close[-1] / c.close[c.first_ready] - 1, rel=1e-9)


def test_separate_buffers_is_the_per_step_ablation_only() -> None:
    from training.train_mtf_marl import learner_config

    assert learner_config(Args(h4_credit="smdp")).h4_credit == "smdp"
    with pytest.raises(ValueError, match="per-step ablation"):
        learner_config(Args(buffer="separate", h4_credit="smdp"))
    with pytest.raises(ValueError, match="smdp"):
        learner_config(Args(h4_credit="options"))  # type: ignore[arg-type]


def _saved_fields(saved: dict) -> dict[str, np.ndarray]:
    """A checkpointed replay buffer's rows, by field."""
    buf = JointReplayBuffer(max(1, int(saved["size"])), STATE_DIM, H4_OBS_DIM, M1_OBS_DIM)
    buf.load_state_dict({k: v.numpy() if torch.is_tensor(v) else v for k, v in saved.items()})
    return {k: v[:len(buf)] for k, v in buf.fields.items()}


def test_smdp_option_transitions_sum_the_m1_rewards_between_decisions(tmp_path: Path, fx_dir) -> None:
    args = Args(**SMALL, total_steps=1500, eval_every=10**9, seed=2, h4_credit="smdp", out=str(tmp_path / "run"))
    main(args)
    tensors, man = load_checkpoint(tmp_path / "run" / "last")
    gamma = man["learner_config"]["gamma"]
    m1, h4 = _saved_fields(tensors["buffer"]), _saved_fields(tensors["h4_buffer"])
    assert (m1["steps"] == 1).all() and len(m1["r"]) == 1500
    start = 0  # options tile the M1 steps in order: each starts where the previous one ended
    for k in range(len(h4["r"])):
        t = int(np.flatnonzero((m1["s"] == h4["s"][k]).all(axis=1) & (m1["a_h4"] == h4["a_h4"][k]).all(axis=1))[0])
        n = int(h4["steps"][k, 0])
        assert t == start
        start = t + n
        assert 1 <= n <= 240  # at most one H4 bar of M1 bars
        np.testing.assert_allclose(h4["r"][k, 0], (gamma ** np.arange(n) * m1["r"][t:t + n, 0]).sum(), rtol=1e-5)
        np.testing.assert_array_equal(h4["s2"][k], m1["s2"][t + n - 1])
        assert (m1["a_h4"][t:t + n] == h4["a_h4"][k]).all()  # the director's action held over the option
        assert h4["h4_due_2"][k, 0] == m1["h4_due_2"][t + n - 1, 0]
    assert 0 <= len(m1["r"]) - start < 240  # only the option the run stopped inside is not stored


def test_smdp_trainer_waits_for_the_first_option(tmp_path: Path, fx_dir) -> None:
    """Updates that start before any option has ended skip instead of sampling an empty option buffer."""
    args = Args(**(SMALL | {"learning_starts": 2}), total_steps=300, eval_every=10**9, seed=1, h4_credit="smdp",
                out=str(tmp_path / "run"))
    assert main(args)["updates"] > 0


def _batch(n: int, rng: np.random.Generator, **fixed: float) -> Batch:
    def t(*shape: int) -> torch.Tensor:
        return torch.from_numpy(rng.normal(size=(n, *shape)).astype(np.float32))
    cols = {"s": t(STATE_DIM), "o_h4": t(H4_OBS_DIM), "o_m1": t(M1_OBS_DIM), "a_h4": t(2).clamp(-1, 1),
            "a_m1": t(2).clamp(-1, 1), "r": t(1), "s2": t(STATE_DIM), "o_h4_2": t(H4_OBS_DIM), "o_m1_2": t(M1_OBS_DIM)}
    cols |= {k: torch.full((n, 1), v) for k, v in fixed.items()}
    return Batch(**cols)


def test_critic_target_discounts_by_steps_masks_breaches_and_holds_the_director() -> None:
    torch.manual_seed(0)
    lr = MTFMARL(STATE_DIM, H4_OBS_DIM, M1_OBS_DIM, (M1_LIMIT_SLOT, M1_BIAS_SLOT),
                 MTFMARLConfig(target_noise=0.0))  # no smoothing noise: the target is a function of the batch
    rng = np.random.default_rng(0)
    b = _batch(8, rng, done=0.0, h4_due_2=0.0, steps=1.0, m1_due_2=1.0)
    y1 = lr._target(b)
    g = lr.cfg.gamma
    y3 = lr._target(replace(b, steps=torch.full((8, 1), 3.0)))  # an option of 3 M1 steps to the same state
    torch.testing.assert_close(y3 - b.r, g**2 * (y1 - b.r))
    torch.testing.assert_close(lr._target(replace(b, done=torch.ones(8, 1))), b.r)  # a breach: no bootstrap
    other_h4_obs = replace(b, o_h4_2=b.o_h4_2 + 1.0)
    torch.testing.assert_close(lr._target(other_h4_obs), y1)  # director not due: its held action is used
    due = replace(b, h4_due_2=torch.ones(8, 1))
    assert not torch.allclose(lr._target(replace(due, o_h4_2=due.o_h4_2 + 1.0)), lr._target(due))
    held = replace(b, m1_due_2=torch.zeros(8, 1))  # a slower executor cadence: not due, its held action is used
    torch.testing.assert_close(lr._target(replace(held, o_m1_2=held.o_m1_2 + 1.0)), lr._target(held))
    q1, q2 = lr.critic_t(b.s2, b.a_h4, b.a_m1)
    torch.testing.assert_close(lr._target(held), b.r + g * torch.min(q1, q2))
    assert not torch.allclose(lr._target(replace(b, o_m1_2=b.o_m1_2 + 1.0)), y1)  # due: the target actor's action


def test_validation_score_needs_activity_to_beat_flat() -> None:
    from training.evaluate import MIN_ACTIVE_DAYS, validation_score

    one_trade = {"sharpe": 0.94, "breaches": 0, "active_days": 1}
    active = {"sharpe": 0.4, "breaches": 0, "active_days": MIN_ACTIVE_DAYS}
    assert validation_score(one_trade) == 0.0 and validation_score(active) == 0.4
    assert validation_score(one_trade | {"sharpe": -1.0}) == -1.0  # losses count however rarely it trades
    assert validation_score(active | {"breaches": 1}) == pytest.approx(-4.6)


def test_more_training_data_from_other_instruments_keeps_each_ones_costs(tmp_path: Path, fx_dir) -> None:
    from training.train_mtf_marl import Trainer

    kw = dict(SMALL, train_start="2017-01-01", train_end="2017-01-31", val_start="2017-02-01", val_end="2017-02-14",
              data=str(fx_dir))
    alone = Trainer(Args(**kw))
    both = Trainer(Args(**kw, extra_symbols=("usdjpy", "XAUUSD")))
    syms = [e.acct.inst.symbol for e in both.envs]
    assert syms[:len(alone.envs)] == ["EURUSD"] * len(alone.envs) and {"USDJPY", "XAUUSD"} <= set(syms)
    for e in both.envs:  # each env trades its own instrument (configs/instruments.yaml): pip 0.0001, 0.01, 0.1
        assert e.acct.inst.pip_size == {"EURUSD": 1e-4, "USDJPY": 1e-2, "XAUUSD": 0.1}[e.acct.inst.symbol]
        price = float(e.ctx.close[e.ctx.first_ready])  # and its own bars (2017 price levels)
        assert {"EURUSD": 0.9 < price < 1.3, "USDJPY": 100 < price < 125,
                "XAUUSD": 1100 < price < 1400}[e.acct.inst.symbol]
    lengths = np.array([len(c) - c.first_ready for c in both.train_ctx], float)
    np.testing.assert_allclose(both.env_p, lengths / lengths.sum())
    assert len(both.env_p) == len(both.envs) and both.env_p[len(alone.envs):].sum() > 0.5  # 2 of 3 instruments
    # validation and the drift ranges stay on the training symbol
    assert [c.index[0] for c in both.val_ctx] == [c.index[0] for c in alone.val_ctx] and both.ranges == alone.ranges
    with pytest.raises(ValueError, match="repeats the training symbol"):
        Trainer(Args(**kw, extra_symbols=("EURUSD",)))
