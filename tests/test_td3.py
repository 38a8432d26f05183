"""TD3 baseline: CLI smoke run, checkpoint refusals, and the same actions through the env and the backtest."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import TD3

from agents.common.checkpoint import CheckpointError, save_checkpoint
from agents.td3.checkpoint import load_td3_actor as load_actor
from features.context import build_context
from features.engine import DEFAULT_SPEC
from feeds.loaders import load_bars
from feeds.macro import load_macro
from feeds.paths import REPO_ROOT
from risk.actions import single_target
from strategies import get_strategy
from strategies.backtest import BacktestConfig, run_backtest
from strategies.td3 import Td3Agent
from training.env import ForexEnv
from training.env_config import EnvConfig
from training.train_td3 import Args, actor_tensors, manifest

SMOKE = ["--total-steps", "3000", "--learning-starts", "1000", "--eval-every", "1500", "--eval-bars", "2000",
         "--batch-size", "64", "--buffer-size", "5000", "--episode-bars", "400", "--max-exposure", "2.0",
         "--train-start", "2024-01-01", "--train-end", "2024-02-29",
         "--val-start", "2024-03-01", "--val-end", "2024-03-31", "--no-tensorboard"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fx_dir) -> Path:
    out = tmp_path_factory.mktemp("td3") / "run"
    p = subprocess.run([sys.executable, "-m", "training.train_td3", *SMOKE, "--out", str(out)], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def test_cli_smoke_writes_checkpoints_and_summary(trained: Path) -> None:
    s = json.loads((trained / "train_summary.json").read_text())
    assert s["steps"] == 3000 and [h["step"] for h in s["history"]] == [1500, 3000]
    for k in ("sharpe", "total_return", "max_daily_dd", "max_total_dd", "breaches", "score", "step", "updates"):
        assert k in s["final_validation"]
    assert s["final_validation"]["bars"] == 2000 and s["final_validation"]["updates"] > 0
    for sub in ("best", "last"):
        assert (trained / sub / "weights.pt").is_file() and (trained / sub / "manifest.json").is_file()
    actor, man = load_actor(trained / "best")
    assert man["algorithm"] == "td3" and man["feature_spec"] == DEFAULT_SPEC.to_dict()
    assert man["net_arch"] == [64, 64] and man["env_config"]["max_exposure"] == 2.0 and "validation" in man
    assert actor(np.zeros(24, np.float32)).shape == (2,)
    assert get_strategy("td3") is Td3Agent


class LoggedTd3(Td3Agent):
    """Records every target (lots) the agent asks for, with its bar."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[tuple[int, float]] = []

    def trade_to(self, target: float, i: int):
        self.targets.append((i, target))
        return super().trade_to(target, i)


def _checkpoint(path: Path, ctx, max_exposure: float = 5.0) -> TD3:
    """An untrained SB3 TD3 actor, nudged so it trades (exit confidence low), saved as train_td3 saves it."""
    model = TD3("MlpPolicy", ForexEnv(ctx), policy_kwargs={"net_arch": [64, 64]}, seed=1, device="cpu")
    with torch.no_grad():
        model.policy.actor.mu[-2].bias[1] = -3.0
    save_checkpoint(path, actor_tensors(model), manifest(Args(max_exposure=max_exposure), 0))
    return model


def test_strategy_and_env_take_the_same_actions(tmp_path: Path, fx_dir, macro_dir) -> None:
    m1 = load_bars(fx_dir, symbol="EURUSD", start="2024-01-01", end="2024-02-13")
    ctx = build_context(m1, load_macro(macro_dir))
    model = _checkpoint(tmp_path / "ck", ctx)
    actor, man = load_actor(tmp_path / "ck")
    obs = np.random.default_rng(0).uniform(-3, 3, (50, 24)).astype(np.float32)
    np.testing.assert_allclose(actor(obs), model.predict(obs, deterministic=True)[0], atol=1e-5)

    cfg = EnvConfig(max_exposure=man["env_config"]["max_exposure"], random_start=False,
                    terminate_on_breach=False, episode_bars=10**9)
    env = ForexEnv(ctx, cfg)
    obs, _ = env.reset(seed=0)
    env_targets, env_equity = [], {}
    while env.i < len(ctx) - 1:
        a = actor(obs)
        env_targets.append((env.i, single_target(float(a[0]), float(a[1]), env.acct.obs.max_lots, env.inst,
                                                          current=env.acct.sim.lots)))
        obs, _, _, _, info = env.step(a)
        env_equity[env.i] = info["equity"]
    res = run_backtest(LoggedTd3, m1, BacktestConfig(symbol="EURUSD", strategy_params={"checkpoint": tmp_path / "ck"}))
    bt_targets = res.strategy_obj.targets
    assert len(bt_targets) == len(env_targets) > 10_000
    assert bt_targets == env_targets
    lots = np.array([t for _, t in env_targets])
    assert (lots != 0).mean() > 0.5 and len(np.unique(lots)) > 20  # the actor really trades
    bars = np.array(sorted(env_equity))
    np.testing.assert_allclose(res.equity[bars], [env_equity[b] for b in bars], rtol=1e-9)
    assert len(res.fills) > 100
    # the live path: features computed bar by bar in the strategy (features.incremental), the same actions
    live = run_backtest(LoggedTd3, m1, BacktestConfig(symbol="EURUSD", precompute_features=False,
                                                      strategy_params={"checkpoint": tmp_path / "ck"}))
    last = len(m1) - 1  # live has no last bar to keep free: it also decides there (an order that cannot fill)
    assert [t for t in live.strategy_obj.targets if t[0] != last] == bt_targets and live.fills == res.fills
    np.testing.assert_array_equal(live.equity, res.equity)


def test_mismatched_checkpoint_is_refused(tmp_path: Path) -> None:
    model = TD3("MlpPolicy", "Pendulum-v1", device="cpu")  # any weights: refused before they are read
    other = replace(DEFAULT_SPEC, rsi_period=21).to_dict()
    save_checkpoint(tmp_path / "spec", actor_tensors(model), manifest(Args(), 0) | {"feature_spec": other})
    with pytest.raises(CheckpointError, match="another feature spec.*rsi_period: checkpoint 21 vs now 14"):
        load_actor(tmp_path / "spec")
    save_checkpoint(tmp_path / "obs", actor_tensors(model), manifest(Args(), 0) | {"obs": {"state": 23}})
    with pytest.raises(CheckpointError, match="23 values"):
        load_actor(tmp_path / "obs")
    save_checkpoint(tmp_path / "algo", actor_tensors(model), manifest(Args(), 0) | {"algorithm": "mtf_marl"})
    with pytest.raises(CheckpointError, match="not 'td3'"):
        load_actor(tmp_path / "algo")
