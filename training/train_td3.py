"""Single-agent TD3 baseline: stable-baselines3's ``TD3("MlpPolicy", ...)`` on ``training.env.ForexEnv``.

    python -m training.train_td3 --total-steps 300000 --out runs/train-td3

Same periods, data, env, broker, features, rewards and validation as ``training.train_mtf_marl``, so the two
are comparable; the agent sees the 24-value shared state and acts ``[position, exit_confidence]`` on every M1
bar. SB3 is used as a library (env, ``policy_kwargs``, a callback), never subclassed.

Training segments: ``training.data.run_contexts`` returns one context per contiguous stretch of data. They are wrapped
as ONE gymnasium env (``SegmentedForexEnv``) that picks a segment per episode, with probability proportional
to its tradable length, from its own seeded generator; so SB3 sees a single env and its step count is the
number of M1 bars trained on (a ``DummyVecEnv`` of one env per segment would step every segment at once).

Checkpoints use OUR format (``agents.common.checkpoint``: tensors + manifest, loaded with ``weights_only=True``), not
SB3's pickled zip: ``best`` (highest validation score) and ``last`` each hold ``{"actor": <state dict of
model.policy.actor.mu>}``, whose layout (Linear, ReLU, ..., Linear, Tanh) is the one of
``agents.common.networks.Actor.net``, so ``strategies.td3`` rebuilds it as an ``Actor`` without SB3. The SB3 zip of
the final model (``sb3_last.zip``, without the replay buffer) is kept only for continuing training with SB3's
own ``TD3.load``; the backtest never reads it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import tyro
from stable_baselines3 import TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise

from agents.common.checkpoint import save_checkpoint
from agents.common.networks import Actor, NumpyActor
from agents.common.observations import STATE_DIM
from features.context import MarketContext
from feeds.paths import REPO_ROOT
from training.args import TrainArgs
from training.data import run_contexts
from training.env import ForexEnv
from training.env_config import EnvConfig
from training.evaluate import evaluate_single, validation_score
from training.manifest import run_manifest

log = logging.getLogger(__name__)
ALGORITHM = "td3"


@dataclass
class Args(TrainArgs):
    net_arch: tuple[int, ...] = (64, 64)
    """hidden layers of the actor and of each critic"""
    action_noise: float = 0.2
    """std of the Gaussian exploration noise on the actions"""


def manifest(args: Args, step: int, extra: dict | None = None, ranges: dict | None = None) -> dict:
    return run_manifest(args, ALGORITHM, step, ranges) | {
        "obs": {"state": STATE_DIM}, "net_arch": list(args.net_arch), **(extra or {})}


def actor_tensors(model: TD3) -> dict[str, Any]:
    """What our checkpoint keeps of an SB3 TD3 model: the deterministic actor's MLP."""
    return {"actor": {k: v.detach().clone() for k, v in model.policy.actor.mu.state_dict().items()}}


def numpy_actor(model: TD3, net_arch: tuple[int, ...]) -> NumpyActor:
    """The model's deterministic actor as the NumPy forward the backtest strategy uses."""
    actor = Actor(STATE_DIM, 2, tuple(net_arch))
    actor.net.load_state_dict(model.policy.actor.mu.state_dict())
    return NumpyActor(actor)


class SegmentedForexEnv(gym.Env):
    """One ``ForexEnv`` per training segment behind one env: each ``reset`` picks a segment (probability
    proportional to its bars after the warm-up) with this env's own generator, seeded by ``reset(seed=...)``.

    :param contexts: the training segments
    :param config: env settings shared by every segment"""

    metadata = {"render_modes": []}

    def __init__(self, contexts: list[MarketContext], config: EnvConfig) -> None:
        super().__init__()
        self.envs = [ForexEnv(c, config) for c in contexts]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        lengths = np.array([len(c) - c.first_ready for c in contexts], float)
        self.p = lengths / lengths.sum()
        self.env = self.envs[0]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:  # each segment's window starts come from its own stream of the same seed
            for k, env in enumerate(self.envs):
                env.np_random = np.random.default_rng([seed, k])
        self.env = self.envs[int(self.np_random.choice(len(self.envs), p=self.p))]
        obs, info = self.env.reset()
        return obs, info

    def step(self, action):
        return self.env.step(action)


class Validation(BaseCallback):
    """Every ``eval_every`` steps: evaluate the deterministic actor on the validation contexts, log it to
    TensorBoard, and save ``best`` when the score improves."""

    def __init__(self, args: Args, val_ctx: list[MarketContext], out: Path, ranges: dict | None = None) -> None:
        super().__init__()
        self.args, self.val_ctx, self.out, self.ranges = args, val_ctx, out, ranges
        self.best_score = -np.inf
        self.history: list[dict] = []

    def _on_step(self) -> bool:
        if self.num_timesteps % self.args.eval_every == 0:
            self.validate()
        return True

    def validate(self) -> dict:
        model, a = self.model, self.args
        res = evaluate_single(self.val_ctx, a.env_config(), numpy_actor(model, a.net_arch), a.eval_bars)
        res["score"] = validation_score(res)
        res["step"] = self.num_timesteps
        res["updates"] = int(model._n_updates)
        self.history.append(res)
        log.info("eval at step %d: %s", self.num_timesteps, json.dumps({k: round(v, 4) for k, v in res.items()}))
        for k, v in res.items():
            self.logger.record(f"val/{k}", v)
        self.logger.dump(self.num_timesteps)
        if res["score"] > self.best_score:  # keep the best policy by validation score
            self.best_score = res["score"]
            save_checkpoint(self.out / "best", actor_tensors(model), manifest(a, self.num_timesteps,
                                                                             {"validation": res}, self.ranges))
        return res


def main(args: Args) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else REPO_ROOT / "runs" / f"train-{ALGORITHM}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    cfg = args.env_config()
    if cfg.market_features:
        raise ValueError("--market-features is built for mtf_marl only (the TD3 checkpoint loader and strategy read "
                         "the 24-D state); train mtf_marl with it")
    train_ctx, val_ctx, ranges = run_contexts(args, args.symbol, args.data)
    env = SegmentedForexEnv(train_ctx, cfg)
    # TD3(seed=...) seeds Python, NumPy (the action noise draws from it), torch, the action space, and the
    # env's first reset (then SegmentedForexEnv seeds every segment from it)
    model = TD3("MlpPolicy", env, learning_rate=1e-3, buffer_size=args.buffer_size, gamma=args.gamma,
                learning_starts=args.learning_starts, batch_size=args.batch_size, train_freq=args.update_every,
                gradient_steps=1, action_noise=NormalActionNoise(np.zeros(2), np.full(2, args.action_noise)),
                policy_kwargs={"net_arch": list(args.net_arch)}, seed=args.seed, device="cpu",
                tensorboard_log=str(out / "tb") if args.tensorboard else None)
    callback = Validation(args, val_ctx, out, ranges)
    t0 = time.perf_counter()
    # CRUCIAL: ForexEnv reports the end of an episode window as ``truncated``; SB3's replay buffer keeps
    # bootstrapping through it (handle_timeout_termination) and only a drawdown breach is terminal
    model.learn(total_timesteps=args.total_steps, callback=callback, tb_log_name=ALGORITHM)
    if not callback.history or callback.history[-1]["step"] != model.num_timesteps:
        callback.validate()
    save_checkpoint(out / "last", actor_tensors(model), manifest(args, model.num_timesteps,
                                                                 {"validation": callback.history[-1]}, ranges))
    model.save(out / "sb3_last.zip")  # only for continuing training with SB3's TD3.load; never backtested
    elapsed = time.perf_counter() - t0
    summary = {"steps": int(model.num_timesteps), "updates": int(model._n_updates),
               "episodes": int(model._episode_num), "elapsed_s": round(elapsed, 1),
               "best_score": callback.best_score, "final_validation": callback.history[-1],
               "history": callback.history, "args": asdict(args)}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
