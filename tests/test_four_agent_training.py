"""The four-agent trainer: GAE with macro-actions, the runner's macro-action sums, the DQN, checkpoints, exact
resume, the CLI, and learnability on a synthetic regime-switching market."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from agents.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.common.gae import gae
from agents.common.replay import RingBuffer
from agents.four_agent.checkpoint import load_four_agent
from feeds.paths import REPO_ROOT
from training.train_four_agent import Args, main, slots_for

GAMMA = 0.995


def switching(days: int = 70, seed: int = 0) -> pd.DataFrame:
    """A regime-switching market (synthetic, to pin learnability only): two weekdays of a steady uptrend, then a
    day of range, over and over, with small noise."""
    idx = pd.date_range("2024-01-01", periods=days * 1440, freq="1min", tz="UTC", name="datetime")
    idx = idx[idx.day_of_week < 5]
    rng = np.random.default_rng(seed)
    day = idx.normalize().asi8 // 86_400_000_000_000
    drift = np.where(day % 3 == 0, 0.0, 1.0e-4)  # 1 pip a minute on trend days, none on range days
    close = 1.1 + np.cumsum(drift + rng.normal(0, 0.3e-4, len(idx)))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + 0.1e-4,
                         "low": np.minimum(open_, close) - 0.1e-4, "close": close, "volume": 0.0}, index=idx)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "EURUSD_M1_2024.csv"
    switching().to_csv(path, date_format="%Y-%m-%dT%H:%M:%SZ")
    return path


def _synthetic_args(path: Path, out: Path, **kw) -> Args:
    base = dict(data=str(path), train_start="2024-01-01", train_end="2024-02-20", val_start="2024-02-21",
                val_end="2024-03-10", regime_checkpoint="", max_exposure=2.0, learning_starts=500, batch_size=64,
                buffer_size=20_000, tensorboard=False, progress=False, out=str(out))
    return Args(**(base | kw))


# ------------------------------------------------------------------ GAE and buffers
def _reference_gae(r, v, v_next, done_term, lam, gamma):
    """CleanRL's per-step GAE loop (one env, terminal handling by next-non-terminal)."""
    adv, last = np.zeros(len(r)), 0.0
    for t in reversed(range(len(r))):
        nonterminal = 1.0 - done_term[t]
        delta = r[t] + gamma * v_next[t] * nonterminal - v[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv


def test_gae_per_step_is_the_usual_gae_with_the_timeout_bootstrap() -> None:
    rng = np.random.default_rng(0)
    n = 50
    r, v = rng.normal(size=n), rng.normal(size=n)
    v_next = np.r_[v[1:], 0.7]  # the last step was cut (truncated): bootstrap from V(s_cut) = 0.7
    term, last = np.zeros(n), np.r_[np.zeros(n - 1), 1.0]
    adv, ret = gae(r, v, v_next, np.full(n, GAMMA), term, last, 0.9)
    np.testing.assert_allclose(adv, _reference_gae(r, v, v_next, term, 0.9, GAMMA), rtol=1e-12)
    np.testing.assert_allclose(ret, adv + v)
    term[-1] = 1.0  # a breach: no bootstrap at all
    adv2, _ = gae(r, v, v_next, np.full(n, GAMMA), term, last, 0.9)
    assert adv2[-1] == pytest.approx(r[-1] - v[-1])


def test_gae_macro_actions_discount_by_gamma_k_and_stop_at_sequence_ends() -> None:
    rng = np.random.default_rng(1)
    steps = rng.normal(size=37)  # primitive rewards of one episode
    ks = [5, 5, 10, 7, 10]  # macro-actions' lengths
    starts = np.cumsum([0, *ks[:-1]])
    R = np.array([(GAMMA ** np.arange(k) * steps[s:s + k]).sum() for s, k in zip(starts, ks, strict=True)])
    v = rng.normal(size=len(ks))
    cut = 0.3  # V at the state the episode was cut at (truncation)
    nxt = np.r_[v[1:], cut]
    last = np.r_[np.zeros(len(ks) - 1), 1.0]
    _, ret = gae(R, v, nxt, GAMMA ** np.array(ks, float), np.zeros(len(ks)), last, 1.0)
    for j, s in enumerate(starts):  # lambda = 1: the discounted sum of every later primitive reward + bootstrap
        rest = steps[s:]
        assert ret[j] == pytest.approx((GAMMA ** np.arange(len(rest)) * rest).sum() + GAMMA ** len(rest) * cut)
    # two sequences end to end: the first's advantages do not see the second
    a1, _ = gae(R, v, nxt, GAMMA ** np.array(ks, float), np.zeros(len(ks)), last, 0.95)
    both, _ = gae(np.r_[R, R * 3], np.r_[v, v], np.r_[nxt, nxt], np.tile(GAMMA ** np.array(ks, float), 2),
                  np.zeros(2 * len(ks)), np.r_[last, last], 0.95)
    np.testing.assert_allclose(both[:len(ks)], a1)
    with pytest.raises(ValueError, match="discounts"):
        gae(R, v, nxt, np.full(len(ks), 1.5), np.zeros(len(ks)), last, 0.95)


def test_ring_buffer_wraps_samples_and_round_trips() -> None:
    buf = RingBuffer(5, {"x": 2, "y": 1})
    buf.add_many({"x": np.arange(14).reshape(7, 2), "y": np.arange(7)})
    assert len(buf) == 5 and buf.pos == 2
    assert sorted(buf.fields["y"][:, 0].tolist()) == [2, 3, 4, 5, 6]  # the newest five
    other = RingBuffer(5, {"x": 2, "y": 1})
    other.load_state_dict(buf.state_dict())
    b1, b2 = buf.sample(8, np.random.default_rng(3)), other.sample(8, np.random.default_rng(3))
    assert all(torch.equal(b1[k], b2[k]) for k in b1) and b1["x"].shape == (8, 2)
    assert torch.equal(b1["x"][:, 0] / 2, b1["y"][:, 0])


def test_slots_follow_context_lengths() -> None:
    assert slots_for([370_000, 745_000, 373_000], 8) == [0, 0, 1, 1, 1, 1, 2, 2]
    assert slots_for([10, 10], 3) in ([0, 0, 1], [0, 1, 1])
    assert slots_for([5], 2) == [0, 0]


# ------------------------------------------------------------------ the runner's macro-actions
def test_runner_sums_each_macro_action_and_bootstraps_at_the_cut(synthetic: Path) -> None:
    from agents.four_agent.acting import Controller
    from agents.four_agent.runner import Runner
    from feeds.macro import MacroTable, load_macro
    from training.data import period_contexts
    from training.four_agent_env import FourAgentEnv, context_matrices
    from training.train_four_agent import build_networks

    args = _synthetic_args(synthetic, Path("unused"))
    torch.manual_seed(0)
    nets, _ = build_networks(args)
    ctx = period_contexts("EURUSD", "2024-01-01", "2024-02-20", synthetic)[0]
    mm = context_matrices(ctx, MacroTable.from_frame(load_macro()))
    envs = [FourAgentEnv(ctx, mm, args.env_config()) for _ in range(2)]
    for k, e in enumerate(envs):
        e.np_random = np.random.default_rng(k)
    log: list[tuple[int, int, float]] = []
    for slot, e in enumerate(envs):  # record every primitive reward
        step = e.step

        def logged(risk=None, _step=step, _slot=slot, _env=e):
            bar = _env.i
            out = _step(risk)
            log.append((_slot, bar, out[0]))
            return out

        e.step = logged
    ro = Runner(Controller(nets, 2, explore=True), envs, GAMMA, np.random.default_rng(0)).collect(400, 0.02)
    rewards = {(s, b): r for s, b, r in log}
    for agent, d in ro.agents.items():
        assert len(d["reward"]) > (10 if agent == "tactical" else 2)
        for slot in (0, 1):
            rows = np.flatnonzero(d["slot"] == slot)
            bars = d["bar"][rows].tolist()
            assert d["last"][rows].tolist() == [False] * (len(rows) - 1) + [True]
            ends = [*bars[1:], max(b for s, b in rewards if s == slot) + 1]
            for j, (a, z) in enumerate(zip(bars, ends, strict=True)):
                k = z - a
                r = [rewards[(slot, b)] for b in range(a, z)]
                assert d["reward"][rows[j]] == pytest.approx(sum(GAMMA**m * x for m, x in enumerate(r)))
                assert d["discount"][rows[j]] == pytest.approx(GAMMA**k)
                if j + 1 < len(rows):  # the next decision's state is this one's next state
                    np.testing.assert_array_equal(d["next_state"][rows[j]], d["state"][rows[j + 1]])
    assert len(ro.risk["reward"]) > 0 and ro.steps == 800
    _check_hub_replay_and_gradients(nets, ro)


def _check_hub_replay_and_gradients(nets, ro) -> None:
    """The update's hub, rebuilt from the publication log, is the one each Structure and Tactical sample read (at
    unchanged weights: messages and memory), and one MAPPO update trains the memory cell and the Structure,
    Tactical and Risk message heads through it, while the Risk network's body stays the DQN's."""
    from agents.four_agent.dqn import RiskDQN
    from agents.four_agent.mappo import MAPPO, MAPPOConfig
    from training.train_four_agent import agent_batches

    learner = MAPPO(nets, ro.agents["structure"]["state"].shape[1], MAPPOConfig(epochs=1))
    batches, hub, _ = agent_batches(ro, learner, 0.95)
    assert {p.agent for p in hub.log} == {"regime", "structure", "tactical", "risk"}
    with torch.no_grad():
        _, views = learner.hub_views(batches, hub)
    for a, b in batches.items():
        stored = b.obs.hub
        assert stored.memory.abs().sum() > 0 and stored.visible.any()
        torch.testing.assert_close(views[a].messages, stored.messages, atol=2e-5, rtol=0)
        torch.testing.assert_close(views[a].memory, stored.memory, atol=2e-5, rtol=0)
    trained = {"memory cell": nets.hub.cell.weight_ih, "structure message": nets.structure.message.weight,
               "tactical message": nets.tactical.message.weight, "risk message": nets.risk.message.weight}
    before = {k: v.detach().clone() for k, v in trained.items()}
    body = nets.risk.body[0].weight.detach().clone()
    learner.update(batches, hub)
    for name, w in trained.items():
        assert not torch.equal(w.detach(), before[name]), f"the {name} got no update"
    assert torch.equal(nets.risk.body[0].weight.detach(), body)  # the DQN's
    dqn = RiskDQN(nets.risk, nets.config)
    assert all(p is not nets.risk.message.weight for p in dqn.params)


def test_a_fresh_structure_agent_opens_the_consensus_gate() -> None:
    """Initialised, the Structure agent's confidence lets the others trade (its mean, which evaluation acts on, and
    most samples, which rollouts act on): a gate at the centre of the fresh policy left a coin flip of the
    initialisation to decide whether a system ever traded (``agents.four_agent.networks``: ``CONFIDENCE_PRIOR``)."""
    from torch.distributions import Beta

    from agents.four_agent.config import STRUCTURE_ACTIONS, preset
    from agents.four_agent.networks import FourAgentNetworks, StructureObs
    from risk.consensus import DEFAULT_CONSENSUS

    gate, k = DEFAULT_CONSENSUS.min_structure_confidence, STRUCTURE_ACTIONS.index("confidence")
    for seed in range(3):
        torch.manual_seed(seed)
        nets = FourAgentNetworks(preset("small")).eval()
        s = nets.config.structure
        B = 256
        obs = StructureObs(torch.randn(B, s.seq_len, s.n_features), torch.ones(B, s.seq_len, dtype=torch.bool),
                           nets.hub.view(nets.hub.initial_state(B), "structure"))
        with torch.no_grad():
            out = nets.structure(obs)
        a, b = out.alpha[:, k], out.beta[:, k]
        assert (a / (a + b) > gate + 0.15).all()
        passed = (Beta(a, b).sample((20,)) >= gate).float().mean()
        assert 0.75 < float(passed) < 0.92  # confident, yet still exploring below the gate


# ------------------------------------------------------------------ trainer
def test_resume_is_exact_and_checkpoints_round_trip(tmp_path: Path, synthetic: Path) -> None:
    kw = dict(n_envs=2, episode_bars=400, eval_every=10**9, checkpoint_every=800, eval_bars=300, seed=5,
              ppo_epochs=2)
    full = main(_synthetic_args(synthetic, tmp_path / "full", total_steps=1600, **kw))
    main(_synthetic_args(synthetic, tmp_path / "a", total_steps=800, **kw))
    resumed = main(_synthetic_args(synthetic, tmp_path / "b", total_steps=1600, resume=str(tmp_path / "a" / "last"),
                                   **kw))
    assert full["mappo_updates"] == resumed["mappo_updates"] and full["dqn_updates"] == resumed["dqn_updates"] > 0
    ta, man = load_checkpoint(tmp_path / "full" / "last")
    tb, _ = load_checkpoint(tmp_path / "b" / "last")
    for group in ("networks",):
        for k, v in ta[group].items():
            assert torch.equal(v, tb[group][k]), f"{group}.{k} differs after resume"
    assert torch.equal(ta["dqn"]["buffer_data"], tb["dqn"]["buffer_data"])
    # manifest and round trip: the best checkpoint loads into the networks, and acts the same
    best = tmp_path / "full" / "best"
    nets, bman = load_four_agent(best)
    assert bman["algorithm"] == "four_agent" and bman["trials"] == 1 and bman["regime"]["mode"] == "frozen"
    assert bman["matrix_spec"]["regime_rows"] == 96 and bman["periods"]["val"] == ["2024-02-21", "2024-03-10"]
    assert (best / "weights.pt").stat().st_size < 3_000_000 and man["step"] == 1600
    t, _ = load_checkpoint(best)
    assert all(torch.equal(v, nets.state_dict()[k]) for k, v in t["networks"].items())


def test_checkpoint_refusals(tmp_path: Path, synthetic: Path) -> None:
    out = tmp_path / "run"
    main(_synthetic_args(synthetic, out, total_steps=400, n_envs=1, episode_bars=400, eval_bars=200,
                         eval_every=10**9, ppo_epochs=1))
    tensors, man = load_checkpoint(out / "best")
    man = {k: v for k, v in man.items() if k not in ("format", "versions")}

    def variant(name: str, **changes) -> Path:
        return save_checkpoint(tmp_path / name, tensors, man | changes)

    with pytest.raises(CheckpointError, match="another feature spec"):
        load_four_agent(variant("spec", feature_spec=man["feature_spec"] | {"rsi_period": 21}))
    with pytest.raises(CheckpointError, match="other four-agent matrices"):
        load_four_agent(variant("matrix", matrix_spec=man["matrix_spec"] | {"tactical_rows": 30}))
    with pytest.raises(CheckpointError, match="not 'four_agent'"):
        load_four_agent(variant("algo", algorithm="mtf_marl"))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_four_agent(variant("preset", config=man["config"] | {"message_dim": 8}))


def test_trainer_cli_smoke(tmp_path: Path, fx_dir) -> None:
    """The real script on real bars, as a subprocess, with a tiny budget."""
    args = ["--total-steps", "600", "--n-envs", "2", "--episode-bars", "300", "--eval-every", "600",
            "--eval-bars", "600", "--train-start", "2024-01-01", "--train-end", "2024-01-31", "--val-start",
            "2024-02-01", "--val-end", "2024-02-15", "--learning-starts", "100", "--ppo-epochs", "1",
            "--no-tensorboard", "--no-progress", "--out", str(tmp_path / "cli")]
    p = subprocess.run([sys.executable, "-m", "training.train_four_agent", *args], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads((tmp_path / "cli" / "train_summary.json").read_text())
    assert s["steps"] == 600 and s["final_validation"]["bars"] == 600 and s["mappo_updates"] == 1
    assert (tmp_path / "cli" / "best" / "manifest.json").is_file()
    h = subprocess.run([sys.executable, "-m", "training.train_four_agent", "--help"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=120)
    assert h.returncode == 0 and "--regime-checkpoint" in h.stdout and "macro" in h.stdout.lower()


def test_the_system_learns_a_regime_switching_market(tmp_path: Path, synthetic: Path) -> None:
    """Trained by the real trainer on trend days alternating with range days, the four agents must beat flat on a
    later stretch of the same process (learnability, not evidence of edge); the rule's constraints hold."""
    args = _synthetic_args(synthetic, tmp_path / "run", total_steps=24_000, n_envs=8, episode_bars=1000,
                           eval_every=10**9, eval_bars=0, actor_lr=1e-3, learning_starts=2000, seed=1)
    summary = main(args)
    val = summary["history"][-1]  # the final policy, not one picked among evaluations
    assert val["total_return"] > 0.01, summary["history"]  # flat is exactly 0
    assert val["breaches"] == 0 and val["decisions_risk"] > 0


def test_mappo_config_checks() -> None:
    from agents.four_agent.mappo import MAPPOConfig

    assert Args().mappo_config().minibatches == 1 and Args().mappo_config().clip == 0.2
    with pytest.raises(ValueError):
        MAPPOConfig(epochs=0)
    assert replace(Args(), override_margin=0.0).dqn_config().override_margin == 0.0
