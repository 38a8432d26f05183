"""Train the MTF-MARL agents (H4 director + M1 executor, joint TD3 critic, one shared replay buffer).

    python -m training.train_mtf_marl --total-steps 300000 --out runs/train-mtf_marl

Reads top to bottom like a CleanRL script, but the env, broker, features, rewards and the learner are
imported from the shared modules. Checkpoints are written at episode boundaries, so a resume starts a
fresh episode with every random generator, the replay buffer and the optimisers restored, and continues
exactly as the uninterrupted run would (``tests/test_mtf_marl.py`` checks it). Only a run stopped by
``--total-steps`` inside an episode resumes with that episode restarted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from tqdm import tqdm

from agents.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.common.networks import NumpyActor
from agents.common.observations import M1_BIAS_SLOT, M1_LIMIT_SLOT, obs_dims
from agents.mtf_marl.buffer import JointReplayBuffer
from agents.mtf_marl.learner import MTFMARL, MTFMARLConfig
from features.engine import DEFAULT_SPEC
from feeds.paths import REPO_ROOT
from training.args import TrainArgs
from training.data import period_contexts, run_contexts
from training.evaluate import evaluate_hierarchical, validation_score
from training.hier_env import HierarchicalForexEnv
from training.manifest import run_manifest

log = logging.getLogger(__name__)
ALGORITHM = "mtf_marl"


@dataclass
class Args(TrainArgs):
    buffer: Literal["shared", "separate"] = "shared"
    """shared: the H4 actor learns from the one joint buffer; separate: from its own buffer of its decision
    points only (no shared experience; the joint critic still learns from the joint buffer)"""
    h4_credit: Literal["per_step", "smdp"] = "per_step"
    """H4 credit assignment: per_step (held action in every M1 transition) or smdp (plus one option transition
    per director decision, reward discounted over its M1 steps); see agents/mtf_marl/learner.py"""
    balanced_h4: bool = False
    """sample the buffer balanced over H4 action bins"""
    expl_noise: float = 0.2
    """std of Gaussian exploration noise on both actors"""
    checkpoint_every: int = 50_000
    """steps between resumable checkpoints (at the next episode boundary)"""
    resume: str = ""
    """a checkpoint folder written by this script (its ``last`` subfolder) to continue from"""
    extra_symbols: tuple[str, ...] = ()
    """more training data: these instruments' bars in the training period (whatever years the data hold), each in
    envs with its own costs, pip value and margin (``configs/instruments.yaml``); the observations are scale-free
    (z-scores, ratios: docs/research.md checks it). Validation and the drift ranges stay on SYMBOL"""
    progress: bool = True
    """show a progress bar"""


def learner_config(args: Args) -> MTFMARLConfig:
    if args.buffer == "separate" and args.h4_credit == "smdp":
        raise ValueError("--buffer separate is the per-step ablation; with --h4-credit smdp the director already "
                         "learns only from its own option transitions")
    return MTFMARLConfig(gamma=args.gamma, h4_credit=args.h4_credit)


def manifest(args: Args, step: int, extra: dict | None = None, ranges: dict | None = None) -> dict:
    d = obs_dims(args.market_features)
    return run_manifest(args, ALGORITHM, step, ranges) | {
        "obs": {"state": d.state, "h4": d.h4, "m1": d.m1, "m1_h4_slots": [M1_LIMIT_SLOT, M1_BIAS_SLOT]},
        "learner_config": learner_config(args).to_dict(), **(extra or {})}


class Trainer:
    """The training state: learner(s), buffer(s), envs and every random generator."""

    def __init__(self, args: Args) -> None:
        self.args = args
        torch.manual_seed(args.seed)
        self.rng = np.random.default_rng(args.seed)
        self.cfg = args.env_config()
        market = self.cfg.market_features
        self.train_ctx, self.val_ctx, self.ranges = run_contexts(args, args.symbol, args.data, market)
        self.envs = [HierarchicalForexEnv(c, self.cfg) for c in self.train_ctx]
        for sym in args.extra_symbols:
            if sym.upper() == args.symbol.upper():
                raise ValueError(f"--extra-symbols repeats the training symbol {args.symbol}")
            cfg = replace(self.cfg, symbol=sym.upper())
            ctx = period_contexts(sym.upper(), args.train_start, args.train_end, args.data or None, market=market)
            self.train_ctx += ctx
            self.envs += [HierarchicalForexEnv(c, cfg) for c in ctx]
        for k, env in enumerate(self.envs):
            env.np_random = np.random.default_rng([args.seed, k])
        lengths = np.array([len(c) - c.first_ready for c in self.train_ctx], float)
        self.env_p = lengths / lengths.sum()
        d = obs_dims(market)
        self.learner = MTFMARL(d.state, d.h4, d.m1, (M1_LIMIT_SLOT, M1_BIAS_SLOT), learner_config(args))
        cap = args.buffer_size  # not capped by total_steps: a resumed run must keep the same ring buffer
        self.buffer = JointReplayBuffer(cap, *d)
        self.own_h4 = args.buffer == "separate" or args.h4_credit == "smdp"
        if self.own_h4:
            # the director's own transitions, one per decision: one-step ones for the separate-buffers
            # ablation (no shared experience), option transitions for semi-MDP credit
            self.h4_buffer = JointReplayBuffer(max(1, cap // 60), *d)
        self.step = 0
        self.best_score = -np.inf
        self.history: list[dict] = []

    # ------------------------------------------------------------ persistence
    def state_tensors(self) -> dict:
        t = {name: m.state_dict() for name, m in self.learner.modules(full=True).items()}
        t["torch_rng"] = torch.get_rng_state()
        t["buffer"] = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                       for k, v in self.buffer.state_dict().items()}
        if self.own_h4:
            t["h4_buffer"] = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                              for k, v in self.h4_buffer.state_dict().items()}
        return t

    def rng_state(self) -> dict:
        return {"trainer": self.rng.bit_generator.state,
                "envs": [e.np_random.bit_generator.state for e in self.envs],
                "updates": self.learner.updates, "best_score": self.best_score, "history": self.history}

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.state_tensors(), manifest(self.args, self.step, {"rng": self.rng_state()},
                                                             self.ranges))

    def load(self, path: Path) -> None:
        tensors, man = load_checkpoint(path, DEFAULT_SPEC.to_dict(), ALGORITHM)
        if "ensemble" in man or "rng" not in man:
            raise CheckpointError(f"{path} cannot be resumed: only a training run's DIR/last holds the critic, "
                                  "optimisers, buffer and random states")
        for name, m in self.learner.modules(full=True).items():
            m.load_state_dict(tensors[name])
        torch.set_rng_state(tensors["torch_rng"])
        self.buffer.load_state_dict({k: v.numpy() if torch.is_tensor(v) else v for k, v in tensors["buffer"].items()})
        if self.own_h4:
            self.h4_buffer.load_state_dict(
                {k: v.numpy() if torch.is_tensor(v) else v for k, v in tensors["h4_buffer"].items()})
        st = man["rng"]
        self.rng.bit_generator.state = st["trainer"]
        for e, s in zip(self.envs, st["envs"], strict=True):
            e.np_random.bit_generator.state = s
        self.learner.updates = st["updates"]
        self.best_score = st["best_score"]
        self.history = st["history"]
        self.step = man["step"]

    # ----------------------------------------------------------- evaluation
    def evaluate(self) -> dict:
        h4, m1 = NumpyActor(self.learner.h4), NumpyActor(self.learner.m1)
        res = evaluate_hierarchical(self.val_ctx, self.cfg, h4, m1, self.args.eval_bars)
        res["score"] = validation_score(res)
        res["step"] = self.step
        res["updates"] = self.learner.updates
        return res


def _noisy(a: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(a + rng.normal(0.0, std, a.shape), -1.0, 1.0).astype(np.float32)


def main(args: Args) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.torch_threads)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else REPO_ROOT / "runs" / f"train-{ALGORITHM}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    tr = Trainer(args)
    if args.resume:
        tr.load(Path(args.resume))
        log.info("resumed from %s at step %d", args.resume, tr.step)
    writer = None
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    learner, rng, a = tr.learner, tr.rng, args
    bar = tqdm(total=a.total_steps, initial=tr.step, disable=not a.progress, unit="step")
    next_eval = (tr.step // a.eval_every + 1) * a.eval_every
    next_ckpt = (tr.step // a.checkpoint_every + 1) * a.checkpoint_every
    t0 = time.perf_counter()
    ep_reward, episodes = 0.0, 0

    def new_episode() -> tuple[HierarchicalForexEnv, np.ndarray, np.ndarray]:
        env = tr.envs[int(rng.choice(len(tr.envs), p=tr.env_p))]
        (o_h4, _), _ = env.reset()
        return env, o_h4, env.shared_state()

    def validate() -> None:
        res = tr.evaluate()
        tr.history.append(res)
        log.info("eval at step %d: %s", tr.step, json.dumps({k: round(v, 4) for k, v in res.items()}))
        if writer is not None:
            for k, v in res.items():
                writer.add_scalar(f"val/{k}", v, tr.step)
        if res["score"] > tr.best_score:  # keep the best policy by validation score
            tr.best_score = res["score"]
            save_checkpoint(out / "best", {n: m.state_dict() for n, m in learner.modules(full=False).items()},
                            manifest(a, tr.step, {"validation": res}, tr.ranges))

    env, o_h4, s = new_episode()
    a_h4 = None
    smdp = a.h4_credit == "smdp"
    gamma = learner.cfg.gamma
    option: tuple = ()  # (s, o_h4, o_m1, a_h4, a_m1) at the director's last decision
    opt_r, opt_k = 0.0, 0
    saved_at = -1
    while tr.step < a.total_steps:
        # --- act: the director only when an H4 bar has completed; the executor every minute
        due = env.h4_decision_due()
        if due:
            a_h4 = (rng.uniform(-1, 1, 2).astype(np.float32) if tr.step < a.learning_starts
                    else _noisy(NumpyActor(learner.h4)(o_h4), a.expl_noise, rng))
        o_m1 = env.m1_obs(a_h4)  # the M1 agent sees the director's decision of this very step
        if env.m1_decision_due():  # every step at the default cadence; else its last action holds (mtf_marl.cadence)
            if tr.step < a.learning_starts:
                a_m1 = rng.uniform(-1, 1, 2).astype(np.float32)
            else:
                with torch.inference_mode():
                    a_m1 = learner.m1(torch.from_numpy(o_m1).unsqueeze(0))[0].numpy()
                a_m1 = _noisy(a_m1, a.expl_noise, rng)
        (o_h4_2, o_m1_2), r, term, trunc, info = env.step(a_h4, a_m1)
        s2 = env.shared_state()
        due2 = env.h4_decision_due()
        # CRUCIAL: only a breach is terminal; the end of the window (trunc) still bootstraps from s2
        tr.buffer.add(s, o_h4, o_m1, a_h4, a_m1, r, s2, o_h4_2, o_m1_2, term, due2, m1_due_2=env.m1_decision_due())
        if smdp:  # the option runs until the director decides again or the episode ends
            if due:
                option, opt_r, opt_k = (s, o_h4, o_m1, a_h4, a_m1), 0.0, 0
            opt_r += gamma**opt_k * r
            opt_k += 1
            if due2 or term or trunc:
                tr.h4_buffer.add(*option, opt_r, s2, o_h4_2, o_m1_2, term, due2, opt_k, m1_due_2=env.m1_decision_due())
        elif a.buffer == "separate" and due:  # the director's own experience: its decision points only
            tr.h4_buffer.add(s, o_h4, o_m1, a_h4, a_m1, r, s2, o_h4_2, o_m1_2, term, due2,
                             m1_due_2=env.m1_decision_due())
        ep_reward += r
        tr.step += 1
        bar.update(1)
        s, o_h4 = s2, o_h4_2
        # --- learn
        if tr.step >= a.learning_starts and tr.step % a.update_every == 0:
            batch = tr.buffer.sample(a.batch_size, rng, a.balanced_h4)
            h4_batch = None
            if tr.own_h4 and len(tr.h4_buffer):  # until the first option ends there is nothing to learn from
                # options join the critic's batch (a quarter of it); the separate ablation's H4 actor gets a full one
                h4_n = a.batch_size // 4 if smdp else a.batch_size
                h4_batch = tr.h4_buffer.sample(max(1, h4_n), rng, a.balanced_h4)
            if h4_batch is not None or not tr.own_h4:
                losses = learner.update(batch, h4_batch)
                if writer is not None and learner.updates % 500 == 0:
                    for k, v in losses.items():
                        writer.add_scalar(f"loss/{k}", v, tr.step)
        if writer is not None and tr.step % 1000 == 0:
            writer.add_scalar("actions/h4_trend_bias", float(a_h4[0]), tr.step)
            writer.add_scalar("actions/h4_limit", float(info["h4_limit"]), tr.step)
            writer.add_scalar("actions/m1_entry", float(a_m1[0]), tr.step)
            writer.add_scalar("actions/m1_exit_confidence", float(a_m1[1]), tr.step)
        if term or trunc:
            episodes += 1
            if writer is not None:
                g = env.acct.guard
                writer.add_scalar("episode/reward", ep_reward, tr.step)
                for k, v in env.acct.reward_parts.items():
                    writer.add_scalar(f"episode/reward_{k}", v, tr.step)
                writer.add_scalar("cmdp/breaches", len(g.breaches), tr.step)
                writer.add_scalar("cmdp/soft_zone_entries", g.soft_zone_entries, tr.step)
                writer.add_scalar("cmdp/validator_blocked", env.acct.validator.blocked, tr.step)
            ep_reward = 0.0
            # episode boundary: the only place where evaluation and checkpoints happen (exact resume)
            if tr.step >= next_eval or tr.step >= a.total_steps:
                validate()
                next_eval = (tr.step // a.eval_every + 1) * a.eval_every
            if tr.step >= next_ckpt or tr.step >= a.total_steps:
                tr.save(out / "last")
                saved_at = tr.step
                next_ckpt = (tr.step // a.checkpoint_every + 1) * a.checkpoint_every
            if tr.step < a.total_steps:
                env, o_h4, s = new_episode()
    bar.close()
    if not tr.history or tr.history[-1]["step"] != tr.step:
        validate()
    if saved_at != tr.step:  # stopped inside an episode: resuming from here restarts that episode
        tr.save(out / "last")
    elapsed = time.perf_counter() - t0
    summary = {"steps": tr.step, "updates": learner.updates, "episodes": episodes, "elapsed_s": round(elapsed, 1),
               "best_score": tr.best_score, "final_validation": tr.history[-1], "history": tr.history,
               "args": asdict(a)}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if writer is not None:
        writer.close()
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
