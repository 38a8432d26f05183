"""Train the four-agent system: MAPPO for Structure and Tactical (centralised critic), DQN for Risk, Regime frozen.

    python -m training.train_four_agent --total-steps 2000000 --out runs/train-four_agent

Reads top to bottom: build the contexts and matrices, load the pretrained Regime network (frozen: see below),
then repeat: the runner collects one episode in each of ``--n-envs`` envs (``agents.four_agent.runner``), GAE over
each agent's macro-actions (``agents.common.gae``), the MAPPO update (``agents.four_agent.mappo``), the Risk agent's
transitions into its replay buffer and its DQN updates (``agents.four_agent.dqn``), validation every
``--eval-every`` M1 steps (``training.evaluate.validation_score`` of a deterministic run over the validation
period), the best checkpoint by that score and a resumable ``last`` one. Rollouts start with every env reset, so
checkpoints fall on episode boundaries and a resume continues exactly as the uninterrupted run
(``tests/test_four_agent_training.py``): networks, critic, value normaliser, optimisers, the DQN's target network
and replay buffer, and every random generator (torch's, the trainer's numpy Generator, each env's) are saved.

Regime: frozen, not fine-tuned. Its pretrained weights are the only part trained against labels that mean
"trending / ranging / volatile / transition" (``training.regime_labels``); a policy-gradient on the joint reward
would turn its class into one more gate on the position size (volatile = veto), with one decision per 30 M1
bars and no reason to keep the classes' meaning, which the consensus rule, its plot and the Risk agent read.
Frozen, it reads only its own matrix, so its outputs are computed once per context (``RegimeCache``).

Env-step cadence, macro-actions, the exact GAE and the DQN targets: ``docs/four_agent.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from tqdm import tqdm

from agents.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.common.gae import gae
from agents.four_agent.acting import ALLOW, Controller
from agents.four_agent.config import RISK_ACTIONS, TACTICAL_ACTIONS, FourAgentConfig, preset
from agents.four_agent.dqn import DQNConfig, RiskDQN
from agents.four_agent.hub import HubView
from agents.four_agent.mappo import MAPPO, AgentBatch, HubBatch, MAPPOConfig, critic_input
from agents.four_agent.networks import (
    FourAgentNetworks,
    RiskObs,
    StructureObs,
    TacticalObs,
    load_regime_network,
)
from agents.four_agent.runner import PPO_AGENTS, Rollout, Runner
from features.engine import DEFAULT_SPEC
from features.matrices import DEFAULT_MATRIX_SPEC
from feeds.macro import MacroTable, load_macro
from feeds.paths import REPO_ROOT
from risk.consensus import DEFAULT_CONSENSUS
from training.args import TrainArgs
from training.data import run_contexts
from training.evaluate import validation_score
from training.four_agent_env import (
    STATE_DIM,
    STATE_FIELDS,
    FourAgentEnv,
    RegimeCache,
    context_matrices,
    evaluate_four_agent,
)
from training.manifest import run_manifest

log = logging.getLogger(__name__)
ALGORITHM = "four_agent"
DEFAULT_REGIME = "checkpoints/regime_eurusd"


@dataclass
class Args(TrainArgs):
    total_steps: int = 2_000_000
    """environment steps (M1 bars, summed over the envs) to train for"""
    learning_starts: int = 20_000
    """Risk transitions before the DQN's first update; until then the Risk agent plays ``allow`` (plus epsilon)"""
    eval_every: int = 400_000
    """M1 steps between validation runs (at the next rollout boundary)"""
    episode_bars: int = 2880
    """M1 bars per training episode, and per env per rollout"""
    update_every: int = 4
    """Risk transitions per DQN update"""
    buffer_size: int = 100_000
    """the DQN's replay capacity (transitions)"""
    preset: Literal["small", "design"] = "small"
    """network sizes (agents.four_agent.config); the Regime checkpoint must be of the same preset"""
    regime_checkpoint: str = DEFAULT_REGIME
    """pretrained Regime network (training.pretrain_regime), frozen; empty: a randomly initialised frozen one
    (synthetic tests only)"""
    n_envs: int = 8
    """envs collected in lockstep (batched forwards); slots are given to the training contexts in proportion to
    their length"""
    gae_lambda: float = 0.95
    """GAE lambda, per decision"""
    clip: float = 0.2
    """PPO clip"""
    ppo_epochs: int = 5
    """passes over each rollout"""
    minibatches: int = 1
    """mini-batches per pass (1: none)"""
    actor_lr: float = 5e-4
    """Adam learning rate of the Structure and Tactical actors"""
    critic_lr: float = 5e-4
    """Adam learning rate of the centralised critic"""
    entropy_coef: float = 0.01
    """entropy bonus"""
    dqn_lr: float = 2.5e-4
    """Adam learning rate of the Risk DQN"""
    target_every: int = 250
    """DQN updates between target-network copies"""
    override_margin: float = 0.5
    """Q gain over ``allow`` the Risk agent's greedy action needs (reward units; about one round trip's cost)"""
    eps_start: float = 0.02
    """Risk agent's initial exploration rate (it acts on every M1 bar in a position: a random exit there costs a
    round trip)"""
    eps_end: float = 0.002
    """Risk agent's final exploration rate"""
    eps_fraction: float = 0.5
    """fraction of training over which epsilon decays"""
    checkpoint_every: int = 400_000
    """M1 steps between resumable checkpoints (at the next rollout boundary)"""
    max_minutes: float = 0.0
    """wall-time budget: stop at the first rollout boundary after this many minutes from the start (then the final
    validation); 0: none. The summary gives the steps reached; ``--total-steps`` of that many with the same
    ``--schedule-steps`` reproduces the run"""
    schedule_steps: int = 0
    """steps over which the Risk agent's epsilon decays (its schedule's horizon); 0: --total-steps"""
    trials: int = 1
    """configurations tried to arrive at this one, counting this run (the deflated Sharpe uses it; manifest)"""
    resume: str = ""
    """a checkpoint folder written by this script (its ``last`` subfolder) to continue from"""
    progress: bool = True
    """show a progress bar"""

    def mappo_config(self) -> MAPPOConfig:
        return MAPPOConfig(gamma=self.gamma, gae_lambda=self.gae_lambda, clip=self.clip, epochs=self.ppo_epochs,
                           minibatches=self.minibatches, actor_lr=self.actor_lr, critic_lr=self.critic_lr,
                           entropy_coef=self.entropy_coef)

    def dqn_config(self) -> DQNConfig:
        return DQNConfig(lr=self.dqn_lr, batch_size=self.batch_size, buffer_size=self.buffer_size,
                         train_freq=self.update_every, learning_starts=self.learning_starts,
                         target_every=self.target_every, eps_start=self.eps_start, eps_end=self.eps_end,
                         eps_fraction=self.eps_fraction, override_margin=self.override_margin)


def manifest(args: Args, step: int, cfg: FourAgentConfig, regime_source: dict, extra: dict | None = None,
             ranges: dict | None = None) -> dict:
    return run_manifest(args, ALGORITHM, step, ranges) | {
        "matrix_spec": DEFAULT_MATRIX_SPEC.to_dict(), "preset": cfg.name, "config": cfg.to_dict(),
        "consensus": asdict(DEFAULT_CONSENSUS), "state_fields": list(STATE_FIELDS), "regime": regime_source,
        "periods": {"train": [args.train_start, args.train_end], "val": [args.val_start, args.val_end]},
        "mappo_config": args.mappo_config().to_dict(), "dqn_config": args.dqn_config().to_dict(),
        "trials": args.trials, **(extra or {})}


def slots_for(lengths: list[int], n: int) -> list[int]:
    """Which context each of ``n`` env slots trains on: shares proportional to the contexts' lengths (largest
    remainders), every context at least one slot when there are enough."""
    w = np.asarray(lengths, float) / sum(lengths)
    base = np.floor(w * n).astype(int)
    if n >= len(lengths):
        base = np.maximum(base, 1)
    while base.sum() > n:
        base[np.argmax(base)] -= 1
    rest = w * n - base
    for k in np.argsort(-rest, kind="stable")[: n - base.sum()]:
        base[k] += 1
    return [k for k, c in enumerate(base) for _ in range(c)]


def build_networks(args: Args) -> tuple[FourAgentNetworks, dict]:
    """The four networks of ``--preset``, the Regime one loaded from ``--regime-checkpoint`` and frozen."""
    cfg = preset(args.preset)
    nets = FourAgentNetworks(cfg)
    source: dict = {"mode": "frozen", "checkpoint": None}
    if args.regime_checkpoint:
        path = Path(args.regime_checkpoint)
        path = path if path.is_absolute() else REPO_ROOT / path
        regime, man = load_regime_network(path)
        if man["config"]["regime"] != cfg.to_dict()["regime"]:
            raise CheckpointError(f"{path} holds a {man['preset']!r} Regime network; --preset is {args.preset!r}")
        nets.regime.load_state_dict(regime.state_dict())
        source = {"mode": "frozen", "checkpoint": str(args.regime_checkpoint), "train_period": man["train_period"],
                  "seed": man["seed"], "validation_accuracy": man["validation"]["model"]["accuracy"]}
    for p in nets.regime.parameters():
        p.requires_grad_(False)
    return nets.eval(), source


def agent_batches(ro: Rollout, learner: MAPPO, lam: float) -> tuple[dict[str, AgentBatch], HubBatch,
                                                                     dict[str, float]]:
    """GAE over each agent's macro-actions (time order within each env slot), the tensors of the update and the
    rollout's hub log in that order."""
    out, stats = {}, {}
    update_row: dict[str, np.ndarray] = {}  # per agent: collection order -> update order (the hub log's rows)
    for agent in PPO_AGENTS:
        d = ro.agents[agent]
        if not len(d["reward"]):
            continue
        order = np.argsort(d["slot"], kind="stable")  # each slot's decisions in time order, slots end to end
        d = {k: v[order] for k, v in d.items()}
        update_row[agent] = np.empty(len(order), np.int64)
        update_row[agent][order] = np.arange(len(order))
        ci = critic_input(d["state"], agent)
        values = learner.values(ci)
        next_values = learner.values(critic_input(d["next_state"], agent))
        adv, ret = gae(d["reward"], values, next_values, d["discount"], d["terminated"], d["last"], lam)
        hub = _hub_view(d)
        matrix = torch.from_numpy(d["matrix"].astype(np.float32))
        mask = torch.from_numpy(d["mask"].astype(bool))
        if agent == "structure":
            obs = StructureObs(matrix, mask, hub)
            actions = torch.from_numpy(d["action"].astype(np.float32))
        else:
            obs = TacticalObs(matrix, mask, hub, torch.from_numpy(d["action_mask"].astype(bool)))
            actions = torch.from_numpy(d["action"].astype(np.int64))
        f32 = np.float32
        out[agent] = AgentBatch(obs, actions, torch.from_numpy(d["log_prob"].astype(f32)),
                                torch.from_numpy(adv.astype(f32)), torch.from_numpy(ret.astype(f32)),
                                torch.from_numpy(values.astype(f32)), torch.from_numpy(ci))
        stats |= {f"{agent}/decisions": float(len(adv)), f"{agent}/macro_steps": float(np.mean(
            np.log(np.maximum(d["discount"], 1e-300)) / np.log(learner.cfg.gamma))),
            f"{agent}/return_mean": float(ret.mean()), f"{agent}/value_mean": float(values.mean())}
    log = [p._replace(src=update_row[p.agent][p.src]) if p.agent in update_row else p for p in ro.hub_log]
    r = ro.risk
    risk_obs = RiskObs(torch.from_numpy(r["proposal"].astype(np.float32)),
                       torch.from_numpy(r["account"].astype(np.float32)), _hub_view(r))
    hub = HubBatch(log, ro.n_envs, torch.from_numpy(ro.regime_messages), risk_obs)
    return out, hub, stats


def _hub_view(d: dict[str, np.ndarray]) -> HubView:
    return HubView(torch.from_numpy(d["messages"].astype(np.float32)), torch.from_numpy(d["visible"].astype(bool)),
                   torch.from_numpy(d["memory"].astype(np.float32)))


class Trainer:
    """The training state: networks, learners, envs, the runner and every random generator."""

    def __init__(self, args: Args) -> None:
        self.args = args
        torch.manual_seed(args.seed)
        self.rng = np.random.default_rng(args.seed)
        self.cfg = args.env_config()
        if self.cfg.market_features:
            raise ValueError("--market-features is built for mtf_marl only; the four-agent system has its own inputs "
                             "(features/matrices.py, with the macro changes in the Regime matrix)")
        self.train_ctx, self.val_ctx, self.ranges = run_contexts(args, args.symbol, args.data)
        macro = MacroTable.from_frame(load_macro())
        self.train_mm = [context_matrices(c, macro) for c in self.train_ctx]
        self.val_mm = [context_matrices(c, macro) for c in self.val_ctx]
        self.nets, self.regime_source = build_networks(args)
        self.train_cache = [RegimeCache(self.nets, m, c.first_ready) for c, m in zip(self.train_ctx, self.train_mm,
                                                                                      strict=True)]
        self.slots = slots_for([len(c) - c.first_ready for c in self.train_ctx], args.n_envs)
        self.envs = [FourAgentEnv(self.train_ctx[k], self.train_mm[k], self.cfg) for k in self.slots]
        for b, env in enumerate(self.envs):
            env.np_random = np.random.default_rng([args.seed, b])
        self.runner = Runner(Controller(self.nets, args.n_envs, explore=True, risk_margin=args.override_margin),
                             self.envs, args.gamma, self.rng,
                             [self.train_cache[k] for k in self.slots])
        self.mappo = MAPPO(self.nets, STATE_DIM, args.mappo_config())
        self.dqn = RiskDQN(self.nets.risk, self.nets.config, args.dqn_config())
        self.step = 0
        self.episodes = 0
        self.best_score = -np.inf
        self.history: list[dict] = []
        self.cmdp = {"breaches": 0, "soft_zone_entries": 0, "validator_blocked": 0, "validator_shrunk": 0}

    def manifest(self, extra: dict | None = None) -> dict:
        return manifest(self.args, self.step, self.nets.config, self.regime_source, extra, self.ranges)

    # ------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        tensors = {"networks": self.nets.state_dict(), "mappo": self.mappo.state_dict(), "dqn": self.dqn.state_dict(),
                   "torch_rng": torch.get_rng_state()}
        rng = {"trainer": self.rng.bit_generator.state, "envs": [e.np_random.bit_generator.state for e in self.envs],
               "best_score": self.best_score, "history": self.history, "episodes": self.episodes, "cmdp": self.cmdp}
        save_checkpoint(path, tensors, self.manifest({"rng": rng}))

    def load(self, path: Path) -> None:
        tensors, man = load_checkpoint(path, DEFAULT_SPEC.to_dict(), ALGORITHM)
        if man["config"] != self.nets.config.to_dict() or man["matrix_spec"] != DEFAULT_MATRIX_SPEC.to_dict():
            raise CheckpointError(f"{path} was written with another preset or matrix spec; resume with its args")
        self.nets.load_state_dict(tensors["networks"])
        self.mappo.load_state_dict(tensors["mappo"])
        self.dqn.load_state_dict(tensors["dqn"])
        torch.set_rng_state(tensors["torch_rng"])
        st = man["rng"]
        self.rng.bit_generator.state = st["trainer"]
        for e, s in zip(self.envs, st["envs"], strict=True):
            e.np_random.bit_generator.state = s
        self.best_score, self.history, self.episodes = st["best_score"], st["history"], st["episodes"]
        self.cmdp = st["cmdp"]
        self.step = man["step"]

    # ----------------------------------------------------------- evaluation
    def evaluate(self) -> dict:
        """A deterministic run over the validation period through the strategy's path (traced batch-1 acting, the
        Regime network at each M30 bar), so a validation decides as a backtest of the same bars."""
        res = evaluate_four_agent(self.val_ctx, self.val_mm, self.cfg, self.nets, self.args.eval_bars,
                                  risk_margin=self.args.override_margin)
        res["score"] = validation_score(res)
        res["step"] = self.step
        return res


def main(args: Args) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.torch_threads)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else REPO_ROOT / "runs" / f"train-{ALGORITHM}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tr = Trainer(args)
    if args.resume:
        tr.load(Path(args.resume))
        log.info("resumed from %s at step %d", args.resume, tr.step)
    setup_s = time.perf_counter() - t_start
    writer = None
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))

    def scalars(prefix: str, d: dict, step: int) -> None:
        if writer is not None:
            for k, v in d.items():
                writer.add_scalar(f"{prefix}{k}", v, step)

    def validate() -> None:
        res = tr.evaluate()
        tr.history.append(res)
        log.info("eval at step %d: %s", tr.step, json.dumps({k: round(float(v), 4) for k, v in res.items()}))
        scalars("val/", res, tr.step)
        if res["score"] > tr.best_score:  # keep the best policy by validation score
            tr.best_score = res["score"]
            save_checkpoint(out / "best", {"networks": tr.nets.state_dict()}, tr.manifest({"validation": res}))

    a, dqn_cfg = args, tr.dqn.cfg
    per_rollout = a.n_envs * a.episode_bars
    bar = tqdm(total=a.total_steps, initial=tr.step, disable=not a.progress, unit="step")
    next_eval = (tr.step // a.eval_every + 1) * a.eval_every
    next_ckpt = (tr.step // a.checkpoint_every + 1) * a.checkpoint_every
    timing = {"collect_s": 0.0, "mappo_s": 0.0, "dqn_s": 0.0, "eval_s": 0.0}
    samples = 0
    first_step = tr.step
    saved_at = -1
    t0 = time.perf_counter()
    stopped_by_budget = False
    while tr.step < a.total_steps:
        if a.max_minutes > 0 and time.perf_counter() - t_start > 60.0 * a.max_minutes:
            stopped_by_budget = True
            log.info("wall-time budget of %.0f minutes reached at step %d", a.max_minutes, tr.step)
            break
        # --- collect: one episode per env (exploring policies, epsilon-greedy Risk)
        eps = dqn_cfg.epsilon(tr.step / (a.schedule_steps or a.total_steps))
        warm = ALLOW if tr.dqn.seen < dqn_cfg.learning_starts else None
        tc = time.perf_counter()
        ro = tr.runner.collect(a.episode_bars, eps, warm)
        timing["collect_s"] += time.perf_counter() - tc
        tr.step += ro.steps
        tr.episodes += len(ro.episodes)
        bar.update(ro.steps)
        # --- learn: MAPPO on the macro-actions, then the DQN from the same rollout's Risk transitions
        tm = time.perf_counter()
        batches, hub, gstats = agent_batches(ro, tr.mappo, a.gae_lambda)
        samples += sum(len(b) for b in batches.values())
        stats = tr.mappo.update(batches, hub, tr.rng)
        timing["mappo_s"] += time.perf_counter() - tm
        td = time.perf_counter()
        dstats = tr.dqn.learn(tr.dqn.add(ro.risk), tr.rng)
        timing["dqn_s"] += time.perf_counter() - td
        # --- log: per agent, actions, episodes, CMDP events
        scalars("", stats | gstats | dstats, tr.step)
        if writer is not None:
            for name, counts in ro.actions.items():
                labels = TACTICAL_ACTIONS if name == "tactical" else RISK_ACTIONS
                total = max(1, int(counts.sum()))
                for lab, c in zip(labels, counts, strict=True):
                    writer.add_scalar(f"actions/{name}_{lab}", c / total, tr.step)
            writer.add_scalar("risk/epsilon", eps, tr.step)
            writer.add_scalar("risk/decisions", len(ro.risk["reward"]), tr.step)
            if len(ro.agents["structure"]["action"]):
                for j, lab in enumerate(("bias", "size", "confidence")):
                    writer.add_scalar(f"structure/action_{lab}", float(ro.agents["structure"]["action"][:, j].mean()),
                                      tr.step)
            it_s = time.perf_counter() - tc  # this rollout's collection and learning
            writer.add_scalar("throughput/env_steps_per_s", ro.steps / max(1e-9, it_s), tr.step)
            writer.add_scalar("throughput/samples_per_s", sum(len(b) for b in batches.values()) / max(1e-9, it_s),
                              tr.step)
            writer.add_scalar("throughput/elapsed_s", time.perf_counter() - t0, tr.step)
        for ep in ro.episodes:
            for k in tr.cmdp:
                tr.cmdp[k] += int(ep[k])
            scalars("episode/", {k: v for k, v in ep.items() if k.startswith("reward") or k == "return"}, tr.step)
            scalars("cmdp/", {k: ep[k] for k in tr.cmdp}, tr.step)
        # rollout boundary = episode boundary: the only place for evaluation and checkpoints (exact resume)
        if tr.step >= next_eval or tr.step >= a.total_steps:
            te = time.perf_counter()
            validate()
            timing["eval_s"] += time.perf_counter() - te
            next_eval = (tr.step // a.eval_every + 1) * a.eval_every
        if tr.step >= next_ckpt or tr.step >= a.total_steps:
            tr.save(out / "last")
            saved_at = tr.step
            next_ckpt = (tr.step // a.checkpoint_every + 1) * a.checkpoint_every
    bar.close()
    if not tr.history or tr.history[-1]["step"] != tr.step:
        validate()
    if saved_at != tr.step:
        tr.save(out / "last")
    elapsed = time.perf_counter() - t0
    train_s = timing["collect_s"] + timing["mappo_s"] + timing["dqn_s"]
    done = tr.step - first_step  # steps of this process (a resumed run counts from its resume)
    summary = {"steps": tr.step, "stopped_by_budget": stopped_by_budget, "rollouts": tr.step // per_rollout,
               "episodes": tr.episodes,
               "mappo_updates": tr.mappo.updates, "dqn_updates": tr.dqn.updates, "risk_transitions": tr.dqn.seen,
               "setup_s": round(setup_s, 1), "elapsed_s": round(elapsed, 1),
               **{k: round(v, 1) for k, v in timing.items()},
               "env_steps_per_s": round(done / train_s, 1) if train_s else None,
               "samples_per_s": round(samples / train_s, 1) if train_s else None,
               "best_score": tr.best_score, "cmdp": tr.cmdp, "final_validation": tr.history[-1],
               "history": tr.history, "args": asdict(a), "slots": tr.slots,
               "contexts": [[str(c.index[c.first_ready]), str(c.index[-1])] for c in tr.train_ctx]}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if writer is not None:
        writer.close()
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
