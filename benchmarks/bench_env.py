"""Training-env throughput on real M1 bars: our envs vs a trivial gymnasium env, reset cost, build cost.

Measurements (all in one process; loading CSVs is never timed):

* ``env_steps_per_s``: ``ForexEnv`` on one year of bars (``--year``, default EURUSD 2024), ``--steps``
  random actions pre-drawn from a seeded ``numpy.random.Generator`` (sampling is not timed), reset on
  ``terminated or truncated``; wall time of the loop.
* ``trivial_env_steps_per_s``: ``_TrivialEnv`` (a ``gymnasium.Env`` whose ``step`` returns a precomputed
  row of a float32 (n, 24) array and reward 0.0), same loop, same action array. ``ratio`` = ours / trivial.
* ``reset_us``: mean microseconds of ``ForexEnv.reset()`` over ``--resets`` resets (``random_start=True``).
* ``build_s_1m_bars``: ``build_context(m1, macro)`` + ``ForexEnv(ctx, cfg)`` on >= 1,000,000 M1 bars
  (``--big-years`` concatenated, default 2019+2020+2022).
* ``hier_env_steps_per_s``: ``HierarchicalForexEnv.step(h4_action, m1_action)``, same protocol as above.
* ``four_agent_env_steps_per_s``: ``training.four_agent_env.FourAgentEnv``, one M1 bar per step, random actions
  pre-drawn from a seeded Generator (class probabilities, Structure actions, Tactical indices among the allowed,
  Risk indices), the due agents' actions given to ``act`` and the Risk one to ``step`` where it is due; the
  matrices are built before timing (``context_matrices``). Every step runs the consensus, the drawdown state and
  the validator, the brackets, the broker core and the reward.
* flatness: ``ForexEnv`` steps/s on the first ``--small-bars`` bars of the year (``env_steps_per_s_small``)
  and on the 1M-bar context (``env_steps_per_s_1m``); ``flat_ratio`` = 1m / small (should be ~1).

Targets: >= 100k steps/s single-agent, reset <= 50 us, build <= 1 s for 1M bars, per-step cost flat in
data length.

Usage::

    python benchmarks/bench_env.py [--symbol EURUSD] [--year 2024] [--steps 300000] [--repeat 1]

The last line printed is one JSON object with the keys above.
To add a step runner, write ``def f(ctx, cfg, steps, seed) -> float`` (seconds) and add it to ``RUNNERS``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gymnasium as gym
import numpy as np
import pandas as pd

from features.context import MarketContext, build_context
from feeds.loaders import load_bars
from feeds.macro import load_macro
from feeds.paths import fx_data_dir
from training.env import OBS_DIM, ForexEnv
from training.env_config import EnvConfig
from training.hier_env import HierarchicalForexEnv


class _TrivialEnv(gym.Env):
    """The floor: step returns a precomputed observation row, reward 0.0; truncates every ``episode`` steps."""

    metadata = {"render_modes": []}

    def __init__(self, n: int, episode: int) -> None:
        super().__init__()
        self._rows = np.random.default_rng(0).standard_normal((n, OBS_DIM)).astype(np.float32)
        self.observation_space = gym.spaces.Box(-10.0, 10.0, shape=(OBS_DIM,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._episode = episode
        self.i = self.end = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.i = int(self.np_random.integers(0, len(self._rows) - self._episode - 1))
        self.end = self.i + self._episode
        return self._rows[self.i], {"bar": self.i}

    def step(self, action):
        self.i += 1
        return self._rows[self.i], 0.0, False, self.i >= self.end, {"bar": self.i}


def _actions(steps: int, seed: int, width: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(steps, width)).astype(np.float32)


def _loop(env, actions: np.ndarray, seed: int) -> float:
    """Wall seconds of ``len(actions)`` steps, resetting on terminated/truncated."""
    env.reset(seed=seed)
    step, reset = env.step, env.reset
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = step(a)
        if term or trunc:
            reset()
    return time.perf_counter() - t0


def run_env(ctx: MarketContext, cfg: EnvConfig, steps: int, seed: int) -> float:
    return _loop(ForexEnv(ctx, cfg), _actions(steps, seed), seed)


def run_trivial(ctx: MarketContext, cfg: EnvConfig, steps: int, seed: int) -> float:
    return _loop(_TrivialEnv(len(ctx), min(cfg.episode_bars, len(ctx) - 2)), _actions(steps, seed), seed)


def run_hier(ctx: MarketContext, cfg: EnvConfig, steps: int, seed: int) -> float:
    env = HierarchicalForexEnv(ctx, cfg)
    acts = _actions(steps, seed, 4)
    h4, m1 = acts[:, :2], acts[:, 2:]
    env.reset(seed=seed)
    step, reset = env.step, env.reset
    t0 = time.perf_counter()
    for ah, am in zip(h4, m1, strict=True):
        _, _, term, trunc, _ = step(ah, am)
        if term or trunc:
            reset()
    return time.perf_counter() - t0


def run_four_agent(ctx: MarketContext, cfg: EnvConfig, steps: int, seed: int) -> float:
    from feeds.macro import MacroTable
    from training.four_agent_env import FourAgentEnv, context_matrices

    env = FourAgentEnv(ctx, context_matrices(ctx, MacroTable.from_frame(load_macro())), cfg)
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4), steps)
    struct = np.c_[rng.uniform(-1, 1, steps), rng.uniform(0, 1, (steps, 2))]
    pick, risk = rng.random(steps), rng.integers(0, 4, steps)
    env.reset(seed=seed)
    act, step, reset, due, mask = env.act, env.step, env.reset, env.due, env.action_mask
    t0 = time.perf_counter()
    for k in range(steps):
        d = due()
        kw = {}
        if d:
            if "regime" in d:
                kw["regime"], kw["structure"] = probs[k], struct[k]
            if "tactical" in d:
                allowed = np.flatnonzero(mask())
                kw["tactical"] = int(allowed[int(pick[k] * len(allowed))])
        p = act(**kw)
        _, term, trunc, _ = step(int(risk[k]) if p.risk_due else None)
        if term or trunc:
            reset()
    return time.perf_counter() - t0


# name -> runner(ctx, cfg, steps, seed) -> seconds. Each adds "<name>_steps_per_s" to the JSON line.
RUNNERS: dict[str, Callable[[MarketContext, EnvConfig, int, int], float]] = {
    "env": run_env,
    "trivial_env": run_trivial,
    "hier_env": run_hier,
    "four_agent_env": run_four_agent,
}


def time_resets(ctx: MarketContext, cfg: EnvConfig, n: int, seed: int) -> float:
    """Mean microseconds of ``ForexEnv.reset()`` (random starts)."""
    env = ForexEnv(ctx, cfg)
    env.reset(seed=seed)
    reset = env.reset
    t0 = time.perf_counter()
    for _ in range(n):
        reset()
    return (time.perf_counter() - t0) / n * 1e6


def _best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(max(1, repeat)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--symbol", default="EURUSD")
    ap.add_argument("--year", type=int, default=2024)
    ap.add_argument("--steps", type=int, default=300_000, help="steps per runner (>= 200000 for the report)")
    ap.add_argument("--resets", type=int, default=2000)
    ap.add_argument("--small-bars", type=int, default=50_000)
    ap.add_argument("--big-years", type=int, nargs="+", default=[2019, 2020, 2022])
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per measurement")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    print("targets: >= 100k steps/s single-agent, reset <= 50 us, build <= 1 s for 1M bars, "
          "per-step cost flat in data length (flat_ratio ~1)")
    folder = fx_data_dir()
    cfg = EnvConfig(symbol=args.symbol, random_start=True)
    t0 = time.perf_counter()
    macro = load_macro()
    m1 = load_bars(folder, symbol=args.symbol, start=f"{args.year}-01-01", end=f"{args.year}-12-31")
    big = pd.concat([load_bars(folder, symbol=args.symbol, start=f"{y}-01-01", end=f"{y}-12-31")
                     for y in args.big_years])
    print(f"loaded {len(m1)} {args.symbol} M1 bars of {args.year} and {len(big)} bars of "
          f"{'+'.join(map(str, args.big_years))} in {time.perf_counter() - t0:.1f}s (not timed)")
    if len(big) < 1_000_000:
        print(f"WARNING: the build measurement has only {len(big)} bars (< 1,000,000)")

    result: dict[str, float | int] = {}
    ctx = build_context(m1, macro)
    for name, runner in RUNNERS.items():
        sec = _best(lambda r=runner: r(ctx, cfg, args.steps, args.seed), args.repeat)
        result[f"{name}_steps_per_s"] = round(args.steps / sec, 1)
        print(f"{name}: {args.steps} steps in {sec:.2f}s -> {args.steps / sec:,.0f} steps/s")
    result["ratio"] = round(result["env_steps_per_s"] / result["trivial_env_steps_per_s"], 3)
    print(f"env / trivial_env = {result['ratio']:.3f} (target single-agent >= 100k steps/s: "
          f"{'MET' if result['env_steps_per_s'] >= 100_000 else 'NOT MET'})")

    r_us = _best(lambda: time_resets(ctx, cfg, args.resets, args.seed), args.repeat)
    result["reset_us"] = round(r_us, 2)
    print(f"reset: mean {r_us:.1f} us over {args.resets} resets (target <= 50 us: "
          f"{'MET' if r_us <= 50 else 'NOT MET'})")

    def build() -> float:
        t = time.perf_counter()
        c = build_context(big, macro)
        ForexEnv(c, cfg)
        return time.perf_counter() - t

    b = _best(build, args.repeat)
    result["build_s_1m_bars"] = round(b, 3)
    result["build_bars"] = len(big)
    print(f"build: context + env from {len(big)} M1 bars in {b:.3f}s (target <= 1 s: "
          f"{'MET' if b <= 1.0 else 'NOT MET'})")

    small = build_context(m1.iloc[:args.small_bars], macro)
    large = build_context(big, macro)
    s = args.steps / _best(lambda: run_env(small, cfg, args.steps, args.seed), args.repeat)
    x = args.steps / _best(lambda: run_env(large, cfg, args.steps, args.seed), args.repeat)
    result["env_steps_per_s_small"] = round(s, 1)
    result["env_steps_per_s_1m"] = round(x, 1)
    result["flat_ratio"] = round(x / s, 3)
    print(f"flatness: {s:,.0f} steps/s on {len(small)} bars, {x:,.0f} steps/s on {len(large)} bars "
          f"-> 1m/small = {x / s:.3f} (target ~1)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
