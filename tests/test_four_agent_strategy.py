"""The ``four_agent`` strategy: registry and feeds, the same actions as the env for the same checkpoint and bars
(precomputed matrices and the incremental path), the constraint checks, its outputs, spec refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.common.checkpoint import CheckpointError, save_checkpoint
from agents.four_agent.acting import Controller
from agents.four_agent.checkpoint import load_four_agent
from agents.four_agent.config import preset
from features.context import build_context
from feeds.loaders import load_bars
from feeds.macro import MacroTable, load_macro
from reports.output import write_outputs
from strategies import STRATEGIES
from strategies.backtest import BacktestConfig, run_backtest
from strategies.four_agent import FourAgent
from training.env_config import EnvConfig
from training.four_agent_env import FourAgentEnv, context_matrices, run_policy
from training.train_four_agent import Args, build_networks, manifest


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained checkpoint (pretrained Regime, fresh others) with its heads nudged so that it trades: a
    confident, sized director and entries favoured; the contract under test is the same path, not the policy."""
    args = Args()
    torch.manual_seed(0)
    nets, source = build_networks(args)
    with torch.no_grad():
        nets.structure.actor.bias[:] = torch.tensor([0.0, 3.0, 3.0, 0.0, 0.0, 0.0])
        nets.tactical.actor.bias[:] = torch.tensor([1.0, 1.0, 0.0, 0.5, 0.0])
    path = tmp_path_factory.mktemp("four_agent") / "ck"
    return save_checkpoint(path, {"networks": nets.state_dict()}, manifest(args, 0, preset("small"), source))


@pytest.fixture(scope="module")
def bars(fx_dir):
    return load_bars(fx_dir, symbol="EURUSD", start="2024-01-02", end="2024-02-07")


def test_registered_with_its_feeds() -> None:
    assert STRATEGIES["four_agent"] is FourAgent
    assert FourAgent.timeframes == (5, 240, 30) and FourAgent.uses_context


def test_strategy_and_env_take_the_same_actions(checkpoint: Path, bars, macro_dir, tmp_path: Path) -> None:
    macro = load_macro(macro_dir)
    ctx = build_context(bars, macro)
    mm = context_matrices(ctx, MacroTable.from_frame(macro))
    nets, man = load_four_agent(checkpoint)
    cfg = EnvConfig(max_exposure=man["env_config"]["max_exposure"], random_start=False, terminate_on_breach=False,
                    episode_bars=10**9)
    env = FourAgentEnv(ctx, mm, cfg)
    env.reset(seed=0)
    targets, equity = [], {}

    def record(info: dict, r: float) -> None:  # the strategy's rows: (minute, proposed, decided, validated)
        f = 1.0 / info["max_lots"] if info["max_lots"] > 0 else 0.0
        row = (int(ctx.minutes[info["bar"]]), info["proposed_lots"] * f, info["decision_lots"] * f,
               info["target_lots"] * f)
        if not targets or targets[-1][1:] != row[1:]:
            targets.append(row)
        equity[info["bar"] + 1] = info["equity"]

    ctl = Controller(nets, 1, explore=False, traced=True, risk_margin=man["dqn_config"]["override_margin"])
    run_policy(env, ctl, len(ctx) - 1, on_step=record)
    at = np.array(sorted(equity))
    runs = {}
    for pre in (True, False):
        res = run_backtest(FourAgent, bars, BacktestConfig(symbol="EURUSD", precompute_features=pre,
                                                           strategy_params={"checkpoint": checkpoint}))
        s = res.strategy_obj
        # live, the last bar is decided on too (no last bar is known); its order could never fill
        assert s.targets[:len(targets)] == targets and len(targets) > 50, pre
        np.testing.assert_allclose(res.equity[at], [equity[b] for b in at], rtol=1e-12)
        assert s.checks["position_exceeded"] == s.checks["risk_loosened"] == s.checks["validator_exceeded"] == 0
        assert s.checks["checked_bars"] > 1000 and len(res.fills) > 20
        runs[pre] = res
    assert runs[False].strategy_obj.inc is not None and runs[True].strategy_obj.mm is not None
    assert runs[True].fills == runs[False].fills
    summary = write_outputs(runs[True], tmp_path / "out", tearsheet=False)
    agents = summary["agents"]
    assert set(agents) >= {"decisions", "regime_share", "risk", "messages", "constraints"}
    assert set(agents["risk"]) == {"allow", "modify_size", "force_exit", "block"}
    assert sum(agents["regime_share"].values()) == pytest.approx(1.0)
    assert agents["decisions"]["tactical"] == pytest.approx(agents["decisions"]["structure"] * 6, rel=0.1)
    for name in ("regime.png", "risk_overrides.png", "drawdown.png", "summary.json"):
        assert (tmp_path / "out" / name).stat().st_size > 1000, name
    assert "coordination" not in json.loads((tmp_path / "out" / "summary.json").read_text())


def test_refuses_a_checkpoint_of_other_matrices(checkpoint: Path, tmp_path: Path) -> None:
    from agents.common.checkpoint import load_checkpoint

    tensors, man = load_checkpoint(checkpoint)
    man = {k: v for k, v in man.items() if k not in ("format", "versions")}
    bad = save_checkpoint(tmp_path / "bad", tensors, man | {"matrix_spec": man["matrix_spec"] | {"regime_rows": 48}})
    with pytest.raises(CheckpointError, match="other four-agent matrices"):
        FourAgent.read_manifest(bad)
    assert FourAgent.read_manifest(checkpoint)["algorithm"] == "four_agent"
