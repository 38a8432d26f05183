"""MTF-MARL decision latency (batch 1, CPU) and learner throughput.

* decision: features of the bar already computed (a real ``MarketContext`` of EURUSD 2024, one month of
  decisions after the feature warm-up) and a ``ForexSim`` with its ``DrawdownGuard`` (``training.account.Account``,
  advanced with ``acct.bar(i)``, not timed). Timed with ``perf_counter_ns``, per bar: H4 observation + H4 actor
  (on every bar: the worst case, so every timed bar runs both actors) -> M1 observation + M1 actor ->
  ``joint_target`` -> ``validated_target``. The validated order is then submitted (not timed) so positions,
  margin and the drawdown guard evolve as in a backtest. Done with the ``NumpyActor`` path the strategy uses,
  and again with the torch actors under ``torch.inference_mode`` (1 thread). Best of ``--repeat`` passes.
  Also reported (``..._sched_...``): the strategy's own schedule, H4 actor only when an H4 bar completed.
* training: ``MTFMARL.update`` on batches of 256 sampled (sampling timed) from a ``JointReplayBuffer`` holding
  50k random transitions, with ``torch.set_num_threads(1)`` and then 2; best of 3 runs of ``--updates``.

* four-agent decision (``four_agent_...``): the ``four_agent`` strategy's path at batch 1 on CPU, 1 torch thread,
  traced forwards (``agents.four_agent.acting.Controller(traced=True)``), over the same month: from a new bar
  (matrices already built, as in a backtest: ``MarketMatrices.at``) to a validated target position. Per bar,
  timed with ``perf_counter_ns``: each agent due at that bar (matrix view, its forward, its hub read and
  publication; Risk includes its proposal features), then the consensus, ``decide`` and ``guarded_target``;
  ``four_agent_<agent>_p50/p99_ms`` over the bars where that agent acts, ``four_agent_decision_p50/p99_ms`` over
  every decision bar (at ~3 % of bars an M30 bar completes and all four act: the p99 is such a bar). The order is
  then submitted and the account advanced (not timed). Also: the same with eager torch
  (``four_agent_decision_eager_...``), the incremental matrices' cost per new bar for a live feed
  (``IncrementalMatrices.append``: an engine pass per completed M5 / M30 bar; ``four_agent_matrices_...``) and
  their per-bar sum with the decision (``four_agent_live_...``). Checkpoint: ``checkpoints/four_agent_eurusd``
  when it loads, else a fresh untrained one (weights do not change the cost of a forward; how often Risk acts
  depends on the policy).
* four-agent training throughput: one rollout of ``--fa-envs`` envs x 1440 M1 bars (the runner, batched
  forwards), GAE, one MAPPO update (5 epochs, no mini-batches) and the DQN updates it earned:
  ``four_agent_train_env_steps_per_s`` (M1 steps / wall time of collection + learning) and
  ``four_agent_train_samples_per_s`` (Structure + Tactical decisions / the same time).

* live decision (``live_decision_...``): what a live M1 bar costs the ``mtf_marl`` strategy, end to end inside
  Backtrader, on the bar-by-bar path a live run takes (``BacktestConfig(precompute_features=False)``: the
  incremental feature driver, ``features.incremental``): the strategy's own per-decision timer (``AgentStrategy``,
  from the bar's arrival in ``next`` through the feature pass, both actors, the mapping, the validator and the
  order's submission), over the same month of decisions with the month before as history; then
  (``live_market_decision_...``) the same for an untrained checkpoint of ``--market-features``, whose bars also pay
  the market block's pass over the last ``features.market.MARKET_WINDOW`` M1 bars.

Targets: decision p99 <= 0.5 ms; live decision p99 <= 5 ms; >= 1000 updates/s at batch 256; four-agent total
p99 <= 5 ms (the design's budgets: < 5 ms per agent, < 10 ms in total).

Usage::

    python benchmarks/bench_latency.py [--checkpoint DIR] [--month 2024-03] [--repeat 3] [--updates 300]

Without ``--checkpoint`` it uses ``checkpoints/mtf_marl_eurusd`` when present, else a fresh untrained
checkpoint written to a temporary folder (weights do not change the cost of a decision).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import torch

from agents.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.common.networks import Actor
from agents.common.observations import H4_OBS_DIM, M1_BIAS_SLOT, M1_LIMIT_SLOT, M1_OBS_DIM, STATE_DIM
from agents.mtf_marl.buffer import JointReplayBuffer
from agents.mtf_marl.cadence import director_due
from agents.mtf_marl.checkpoint import load_mtf_marl_actors as load_actors
from agents.mtf_marl.learner import MTFMARL, act
from features.context import build_context
from features.engine import DEFAULT_SPEC
from feeds.loaders import load_bars
from feeds.macro import load_macro
from feeds.paths import fx_data_dir
from risk.actions import director_decision, joint_target
from risk.validator import validated_target
from strategies.mtf_marl import DEFAULT_CHECKPOINT
from training.account import Account
from training.env_config import EnvConfig

P99_TARGET_MS = 0.5
FOUR_AGENT_P99_TARGET_MS = 5.0
LIVE_P99_TARGET_MS = 5.0
UPDATES_TARGET = 1000.0
_TMP: list[tempfile.TemporaryDirectory] = []  # keep fresh checkpoints alive for the process


def fresh_checkpoint(symbol: str = "EURUSD", market: bool = False) -> Path:
    """An untrained MTF-MARL checkpoint (same manifest as training writes) in a temporary folder; ``market``: one
    trained with the market block (``--market-features``)."""
    from agents.common.observations import obs_dims
    from training.train_mtf_marl import Args, manifest

    tmp = tempfile.TemporaryDirectory(prefix="mtf_marl_bench_")
    _TMP.append(tmp)
    args = Args(symbol=symbol, market_features=market)
    torch.manual_seed(0)
    learner = MTFMARL(*obs_dims(market), (M1_LIMIT_SLOT, M1_BIAS_SLOT))
    tensors = {n: m.state_dict() for n, m in learner.modules(full=False).items()}
    return save_checkpoint(Path(tmp.name), tensors, manifest(args, 0))


def checkpoint_path(given: str | None, symbol: str = "EURUSD") -> tuple[Path, str]:
    """(path, description): ``given``, else the committed default if it loads, else a fresh untrained one."""
    if given:
        return Path(given), "given"
    if DEFAULT_CHECKPOINT.is_dir():
        try:
            load_actors(DEFAULT_CHECKPOINT)
            return DEFAULT_CHECKPOINT, "default"
        except CheckpointError as e:
            print(f"default checkpoint unusable ({e}); using a fresh untrained one")
    return fresh_checkpoint(symbol), "fresh untrained"


def torch_actors(path: Path) -> tuple[Actor, Actor]:
    tensors, man = load_checkpoint(path, DEFAULT_SPEC.to_dict(), "mtf_marl")
    hidden = tuple(man["learner_config"]["hidden"])
    out = []
    for name, dim in (("h4_actor", H4_OBS_DIM), ("m1_actor", M1_OBS_DIM)):
        a = Actor(dim, 2, hidden)
        a.load_state_dict(tensors[name])
        a.eval()
        out.append(a)
    return out[0], out[1]


def _pct(ns: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(ns, 50)) / 1e6, float(np.percentile(ns, 99)) / 1e6


def decision_pass(ctx, cfg: EnvConfig, h4_actor, m1_actor, every_bar: bool) -> np.ndarray:
    """One pass over the ready bars of ``ctx``: nanoseconds per decision (every ready bar). With ``every_bar``
    false the H4 actor runs only when an H4 bar completed, as in ``strategies.mtf_marl``."""
    acct = Account(ctx, cfg)
    sim, guard, obs, inst, validator, atr = acct.sim, acct.guard, acct.obs, acct.inst, acct.validator, acct.atr
    h4_pos = ctx.h4_pos.tolist()
    lo, hi = ctx.first_ready, len(ctx) - 1
    for i in range(lo):  # warm-up bars: the account and observation statistics run, nobody decides
        acct.bar(i)
    times = np.empty(hi - lo, np.int64)
    a_h4 = None
    clock = time.perf_counter_ns
    for k, i in enumerate(range(lo, hi)):
        acct.bar(i)
        t0 = clock()
        if every_bar or director_due(h4_pos, i, a_h4 is None):
            a_h4 = h4_actor(obs.h4(i, sim, guard))
            bias, limit = director_decision(a_h4)
        a_m1 = m1_actor(obs.m1(i, sim, limit, bias))
        jt = joint_target((float(a_h4[0]), float(a_h4[1])), (float(a_m1[0]), float(a_m1[1])), obs.max_lots, inst,
                          current=sim.lots)
        verdict = validated_target(validator, sim, jt.lots, atr[i])
        times[k] = clock() - t0
        if verdict.lots != sim.lots:
            sim.submit_target(verdict.lots)
    return times


def bench_decisions(ctx, cfg, actors, repeat: int, label: str, every_bar: bool = True) -> tuple[float, float, int]:
    best50 = best99 = float("inf")
    n = 0
    for r in range(repeat):
        ns = decision_pass(ctx, cfg, *actors, every_bar=every_bar)
        p50, p99 = _pct(ns)
        n = len(ns)
        print(f"  {label} pass {r + 1}: {n} decisions, p50 {p50 * 1e3:.1f} us, p99 {p99 * 1e3:.1f} us, "
              f"max {ns.max() / 1e3:.0f} us")
        best50, best99 = min(best50, p50), min(best99, p99)
    return best50, best99, n


def random_buffer(n: int, rng: np.random.Generator) -> JointReplayBuffer:
    buf = JointReplayBuffer(n, STATE_DIM, H4_OBS_DIM, M1_OBS_DIM)
    f, col = np.float32, buf.fields
    for name in ("s", "s2", "o_h4", "o_h4_2", "o_m1", "o_m1_2", "r"):
        col[name][:] = rng.normal(0.0, 1.0, col[name].shape).astype(f)
    for name in ("a_h4", "a_m1"):
        col[name][:] = rng.uniform(-1, 1, col[name].shape).astype(f)
    col["done"][:] = (rng.random(col["done"].shape) < 1e-3).astype(f)
    col["h4_due_2"][:] = (rng.random(col["h4_due_2"].shape) < 1 / 240).astype(f)
    col["steps"][:] = col["m1_due_2"][:] = 1.0
    buf.pos, buf.size = 0, n
    return buf


def bench_updates(threads: int, updates: int, runs: int, batch: int = 256, fill: int = 50_000) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    buf = random_buffer(fill, rng)
    learner = MTFMARL(STATE_DIM, H4_OBS_DIM, M1_OBS_DIM, (M1_LIMIT_SLOT, M1_BIAS_SLOT))
    for _ in range(20):  # warm-up (allocator, first Adam steps)
        learner.update(buf.sample(batch, rng))
    best = 0.0
    for r in range(runs):
        t0 = time.perf_counter()
        for _ in range(updates):
            learner.update(buf.sample(batch, rng))
        rate = updates / (time.perf_counter() - t0)
        print(f"  {threads} thread(s) run {r + 1}: {rate:,.0f} updates/s")
        best = max(best, rate)
    return best


# ------------------------------------------------------------------ the four-agent system
def four_agent_checkpoint(symbol: str = "EURUSD") -> tuple[Path, str]:
    """(path, description): the committed four-agent checkpoint if it loads, else a fresh untrained one."""
    from agents.four_agent.checkpoint import load_four_agent
    from strategies.four_agent import DEFAULT_CHECKPOINT as FA_DEFAULT

    if FA_DEFAULT.is_dir():
        try:
            load_four_agent(FA_DEFAULT)
            return FA_DEFAULT, "default"
        except CheckpointError as e:
            print(f"four-agent checkpoint unusable ({e}); using a fresh untrained one")
    from training.train_four_agent import Args, build_networks, manifest

    tmp = tempfile.TemporaryDirectory(prefix="four_agent_bench_")
    _TMP.append(tmp)
    args = Args(symbol=symbol)
    torch.manual_seed(0)
    nets, source = build_networks(args)
    return save_checkpoint(Path(tmp.name), {"networks": nets.state_dict()},
                           manifest(args, 0, nets.config, source)), "fresh untrained"


def four_agent_pass(ctx, mm, m1: pd.DataFrame, cfg: EnvConfig, nets, margin: float,
                    traced: bool) -> dict[str, np.ndarray]:
    """Nanoseconds per decision bar (``total``), per agent where it acts, and per new bar of the incremental
    matrices (``matrices``), over the ready bars of ``ctx`` (module docstring)."""
    from agents.four_agent.acting import Controller
    from features.engine import N_FEATURES
    from features.matrices import IncrementalMatrices
    from feeds.macro import MacroTable
    from training.four_agent_env import FourAgentEnv

    env = FourAgentEnv(ctx, mm, replace(cfg, random_start=False, episode_bars=10**9))
    env.reset(seed=0)
    acct, book, sim = env.acct, env.book, env.acct.sim
    ctl = Controller(nets, 1, explore=False, traced=traced, risk_margin=margin)
    lo, hi = env.i, len(ctx) - 1
    inc = IncrementalMatrices(MacroTable.from_frame(load_macro()))
    t_ns = m1.index.as_unit("ns").asi8
    cols = [m1[k].to_numpy(np.float64) for k in ("open", "high", "low", "close")]
    inc.extend(t_ns[:lo], *(c[:lo] for c in cols))  # the live feed's backfill (not timed)
    one = np.zeros(1, np.int64)
    new5, new30 = mm.new_m5.tolist(), mm.new_m30.tolist()
    out: dict[str, list[int]] = {k: [] for k in ("total", "regime", "structure", "tactical", "risk", "matrices")}
    clock = time.perf_counter_ns
    for i in range(lo, hi):
        t = clock()
        inc.append(int(t_ns[i]), cols[0][i], cols[1][i], cols[2][i], cols[3][i])
        out["matrices"].append(clock() - t)
        t0 = clock()
        m = mm.at(i)
        for agent in book.due(new5[i], new30[i]):
            ta = clock()
            if agent == "regime":
                book.set_regime(ctl.regime(one, m.regime[None], m.regime_mask[None]).action[0])
            elif agent == "structure":
                book.set_structure(ctl.structure(one, m.structure[None], m.structure_mask[None]).action[0])
            else:
                book.set_tactical(int(ctl.tactical(one, m.tactical[None], m.tactical_mask[None],
                                                   book.tactical_mask(sim.lots)[None]).action[0]))
            out[agent].append(clock() - ta)
        atr = acct.atr[i]
        state = book.account_state(sim, acct.obs.max_lots, atr)
        p = book.propose(state)
        r = 0
        if p.risk_due:
            ta = clock()
            account = acct.obs.shared(i, sim, acct.guard)[N_FEATURES:]
            r = int(ctl.risk(one, book.risk_features(p, acct.obs.max_lots)[None], account[None]).action[0])
            out["risk"].append(clock() - ta)
        decision = book.decide(state, r)
        verdict = book.guard(decision, acct.validator, sim, atr)
        order = book.order(decision, verdict, sim.lots)
        out["total"].append(clock() - t0)
        if order is not None:  # not timed: the order, the next bar
            sim.submit_target(*order)
        book.end_bar()
        acct.bar(i + 1)
    return {k: np.asarray(v, np.int64) for k, v in out.items()}


def bench_four_agent_decisions(ctx, mm, m1, cfg, path: Path, repeat: int) -> dict[str, float]:
    from agents.four_agent.checkpoint import load_four_agent

    nets, man = load_four_agent(path)
    margin = float(man["dqn_config"]["override_margin"])
    res: dict[str, float] = {}
    for traced, tag in ((True, ""), (False, "_eager")):
        best: dict[str, tuple[float, float]] = {}
        for r in range(repeat):
            ns = four_agent_pass(ctx, mm, m1, cfg, nets, margin, traced)
            live = ns["matrices"] + ns["total"]
            runs = {k: v for k, v in ns.items() if len(v)} | {"live": live}
            line = ", ".join(f"{k} p50 {_pct(v)[0] * 1e3:.0f} / p99 {_pct(v)[1] * 1e3:.0f} us (n={len(v)})"
                             for k, v in runs.items())
            print(f"  four-agent{tag or ' traced'} pass {r + 1}: {line}")
            for k, v in runs.items():
                p50, p99 = _pct(v)
                b = best.get(k, (np.inf, np.inf))
                best[k] = (min(b[0], p50), min(b[1], p99))
        if tag:
            res |= {"four_agent_decision_eager_p50_ms": round(best["total"][0], 4),
                    "four_agent_decision_eager_p99_ms": round(best["total"][1], 4)}
            continue
        res |= {"four_agent_decision_p50_ms": round(best["total"][0], 4),
                "four_agent_decision_p99_ms": round(best["total"][1], 4)}
        for k in ("regime", "structure", "tactical", "risk"):
            if k in best:
                res[f"four_agent_{k}_p50_ms"] = round(best[k][0], 4)
                res[f"four_agent_{k}_p99_ms"] = round(best[k][1], 4)
        res |= {"four_agent_matrices_p99_ms": round(best["matrices"][1], 4),
                "four_agent_live_p50_ms": round(best["live"][0], 4),
                "four_agent_live_p99_ms": round(best["live"][1], 4)}
    return res


def bench_four_agent_training(ctx, mm, cfg, n_envs: int, bars: int = 1440, seed: int = 0) -> dict[str, float]:
    """One rollout, its GAE, one MAPPO update and the DQN updates it earned (module docstring)."""
    from agents.four_agent.acting import ALLOW, Controller
    from agents.four_agent.dqn import RiskDQN
    from agents.four_agent.mappo import MAPPO
    from agents.four_agent.runner import Runner
    from training.four_agent_env import STATE_DIM, FourAgentEnv, RegimeCache
    from training.train_four_agent import Args, agent_batches, build_networks

    args = Args(n_envs=n_envs, episode_bars=bars, learning_starts=0, seed=seed)
    torch.manual_seed(seed)
    nets, _ = build_networks(args)
    cache = RegimeCache(nets, mm, ctx.first_ready)
    envs = [FourAgentEnv(ctx, mm, replace(cfg, episode_bars=bars)) for _ in range(n_envs)]
    for b, e in enumerate(envs):
        e.np_random = np.random.default_rng([seed, b])
    rng = np.random.default_rng(seed)
    runner = Runner(Controller(nets, n_envs, explore=True), envs, args.gamma, rng, [cache] * n_envs)
    mappo, dqn = MAPPO(nets, STATE_DIM, args.mappo_config()), RiskDQN(nets.risk, nets.config, args.dqn_config())
    t0 = time.perf_counter()
    ro = runner.collect(bars, 0.02, ALLOW)
    t1 = time.perf_counter()
    batches, hub, _ = agent_batches(ro, mappo, args.gae_lambda)
    mappo.update(batches, hub, rng)
    t2 = time.perf_counter()
    dqn.learn(dqn.add(ro.risk), rng)
    t3 = time.perf_counter()
    samples = sum(len(b) for b in batches.values())
    print(f"  {ro.steps} M1 steps ({n_envs} envs) collected in {t1 - t0:.1f}s; {samples} MAPPO samples, update "
          f"{t2 - t1:.1f}s; {dqn.updates} DQN updates {t3 - t2:.1f}s")
    return {"four_agent_train_env_steps_per_s": round(ro.steps / (t3 - t0), 1),
            "four_agent_train_samples_per_s": round(samples / (t3 - t0), 1),
            "four_agent_collect_steps_per_s": round(ro.steps / (t1 - t0), 1)}


def bench_live_decisions(m1: pd.DataFrame, symbol: str, first: pd.Timestamp, checkpoint: Path) -> dict[str, float]:
    """p50 / p99 of the strategy's own decision timer on the bar-by-bar (live) feature path, in Backtrader."""
    from strategies.backtest import BacktestConfig, run_backtest

    cfg = BacktestConfig(symbol=symbol, trade_from=first, precompute_features=False,
                         strategy_params={"checkpoint": str(checkpoint)})
    stats = run_backtest("mtf_marl", m1, cfg).strategy_obj.decision_stats()
    return {"live_decision_p50_ms": stats["latency_p50_ms"], "live_decision_p99_ms": stats["latency_p99_ms"],
            "live_decisions": stats["decisions"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--checkpoint", default=None, help="MTF-MARL checkpoint folder (default: see module doc)")
    ap.add_argument("--symbol", default="EURUSD")
    ap.add_argument("--month", default="2024-03", help="month of decisions (the month before is feature warm-up)")
    ap.add_argument("--repeat", type=int, default=3, help="decision passes (best p50 / p99 of them)")
    ap.add_argument("--updates", type=int, default=300, help="updates per timed training run")
    ap.add_argument("--runs", type=int, default=3, help="timed training runs per thread count (best)")
    ap.add_argument("--fa-envs", type=int, default=8, help="envs of the four-agent training measurement")
    ap.add_argument("--no-four-agent", action="store_true", help="skip the four-agent measurements")
    args = ap.parse_args(argv)

    print(f"targets: decision p99 <= {P99_TARGET_MS} ms (batch 1, CPU); "
          f">= {UPDATES_TARGET:.0f} MTFMARL updates/s at batch 256")
    path, how = checkpoint_path(args.checkpoint, args.symbol)
    print(f"checkpoint: {path} ({how})")
    np_h4, np_m1, man = load_actors(path)
    th4, tm1 = torch_actors(path)
    cfg = EnvConfig(symbol=args.symbol, max_exposure=float(man["env_config"]["max_exposure"]))

    month = pd.Period(args.month, "M")
    t0 = time.perf_counter()
    m1 = load_bars(fx_data_dir(), symbol=args.symbol, start=str((month - 1).start_time.date()),
                   end=str(month.end_time.date()))
    ctx = build_context(m1, load_macro())
    print(f"context: {len(ctx)} M1 bars ({ctx.index[0]} .. {ctx.index[-1]}), first ready bar {ctx.first_ready}, "
          f"{len(ctx) - 1 - ctx.first_ready} decision bars; built in {time.perf_counter() - t0:.1f}s (not timed)")

    torch.set_num_threads(1)
    res: dict[str, float | int] = {}
    print("decision latency, NumpyActor, H4 actor on every bar (worst case):")
    p50, p99, n = bench_decisions(ctx, cfg, (np_h4, np_m1), args.repeat, "numpy")
    res |= {"mtf_marl_decision_p50_ms": round(p50, 4), "mtf_marl_decision_p99_ms": round(p99, 4)}
    print("decision latency, torch actors (inference_mode, 1 thread), H4 actor on every bar:")

    def t_h4(o):
        return act(th4, o)

    def t_m1(o):
        return act(tm1, o)

    tp50, tp99, _ = bench_decisions(ctx, cfg, (t_h4, t_m1), args.repeat, "torch")
    res |= {"mtf_marl_decision_torch_p50_ms": round(tp50, 4), "mtf_marl_decision_torch_p99_ms": round(tp99, 4)}
    print("decision latency, NumpyActor, strategy schedule (H4 actor only on H4 completions):")
    sp50, sp99, _ = bench_decisions(ctx, cfg, (np_h4, np_m1), args.repeat, "numpy-sched", every_bar=False)
    res |= {"mtf_marl_decision_sched_p50_ms": round(sp50, 4), "mtf_marl_decision_sched_p99_ms": round(sp99, 4)}
    res["decisions"] = n

    print("live decision latency (mtf_marl in Backtrader, bar-by-bar features, the strategy's own timer):")
    res |= bench_live_decisions(m1, args.symbol, month.start_time.tz_localize("UTC"), path)
    ok_live = res["live_decision_p99_ms"] <= LIVE_P99_TARGET_MS
    print(f"live decision p50 {res['live_decision_p50_ms']:.3f} ms, p99 {res['live_decision_p99_ms']:.3f} ms over "
          f"{res['live_decisions']} decisions: target p99 <= {LIVE_P99_TARGET_MS:.0f} ms "
          f"{'MET' if ok_live else 'MISSED'}")
    print("the same with a checkpoint trained with the market block (--market-features; an untrained one):")
    mk = bench_live_decisions(m1, args.symbol, month.start_time.tz_localize("UTC"), fresh_checkpoint(args.symbol, True))
    res |= {f"live_market_{k.removeprefix('live_')}": v for k, v in mk.items()}
    print(f"live decision with the market block p50 {res['live_market_decision_p50_ms']:.3f} ms, p99 "
          f"{res['live_market_decision_p99_ms']:.3f} ms over {res['live_market_decisions']} decisions")

    print("training throughput, batch 256, buffer of 50k random transitions (sampling included):")
    res["train_updates_per_s"] = round(bench_updates(1, args.updates, args.runs), 1)
    res["train_updates_per_s_2threads"] = round(bench_updates(2, args.updates, args.runs), 1)
    torch.set_num_threads(1)

    if not args.no_four_agent:
        from feeds.macro import MacroTable
        from training.four_agent_env import context_matrices

        fa_path, fa_how = four_agent_checkpoint(args.symbol)
        print(f"four-agent checkpoint: {fa_path} ({fa_how})")
        mm = context_matrices(ctx, MacroTable.from_frame(load_macro()))
        print("four-agent decision latency (traced, then eager; batch 1, 1 thread):")
        res |= bench_four_agent_decisions(ctx, mm, m1, cfg, fa_path, args.repeat)
        print("four-agent training throughput (runner + MAPPO + DQN, 1 thread):")
        torch.set_num_threads(1)
        res |= bench_four_agent_training(ctx, mm, cfg, args.fa_envs)
        ok = res["four_agent_decision_p99_ms"] <= FOUR_AGENT_P99_TARGET_MS
        print(f"four-agent decision p99 {res['four_agent_decision_p99_ms']:.2f} ms (traced): target <= "
              f"{FOUR_AGENT_P99_TARGET_MS:.0f} ms {'MET' if ok else 'MISSED'}; per agent p99 " + ", ".join(
                  f"{k} {res[f'four_agent_{k}_p99_ms']:.2f}" for k in ("regime", "structure", "tactical", "risk")
                  if f"four_agent_{k}_p99_ms" in res) + " ms (design budget < 5 ms each)")
    ok_lat = res["mtf_marl_decision_p99_ms"] <= P99_TARGET_MS
    ok_upd = res["train_updates_per_s"] >= UPDATES_TARGET
    print(f"decision p99 {res['mtf_marl_decision_p99_ms'] * 1e3:.1f} us (numpy) / "
          f"{res['mtf_marl_decision_torch_p99_ms'] * 1e3:.1f} us (torch): target <= {P99_TARGET_MS * 1e3:.0f} us "
          f"{'MET' if ok_lat else 'MISSED'}")
    print(f"updates/s {res['train_updates_per_s']:,.0f} (1 thread) / {res['train_updates_per_s_2threads']:,.0f} "
          f"(2 threads): target >= {UPDATES_TARGET:.0f} {'MET' if ok_upd else 'MISSED'}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
