"""How fast could a joint-critic update run on this CPU? Our eager ``MTFMARL.update`` against two whole-update
JIT forms of the same update (batch 256, same networks, sampling from one float32 array included).

* ``eager_updates_per_s``: ``agents.mtf_marl.MTFMARL.update`` (what training runs), via ``bench_latency``.
* ``torch_compiled_updates_per_s``: the same update written functionally (``torch.func.functional_call`` and
  ``grad_and_value``, the library's functional ``torch.optim.adam.adam``) and compiled with ``torch.compile``
  (inductor, C++ wrapper), two updates per call (critic, then critic + delayed actor + Polyak) so the call
  overhead is paid once per policy-delay cycle. A reference for measuring only: training does not use it.
* ``jax_updates_per_s``: the same pair of updates in JAX + optax under one ``jax.jit``, when ``jax`` and
  ``optax`` are installed (``pip install jax optax``; not a project dependency); null otherwise.

The reference forms are checked against the eager learner before timing: with target-policy noise 0, the
first critic loss on the same batch and weights must agree to 1e-4 (relative). Torch runs one thread (a second
does not help at this size); XLA uses every core the process may use, so for a one-core comparison run the script
under ``taskset -c 0``; ``cores`` in the JSON says which it was.

Usage::

    python benchmarks/bench_learner_ceiling.py [--updates 500] [--runs 3]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value
from torch.optim.adam import adam as functional_adam

from agents.common.observations import H4_OBS_DIM, M1_BIAS_SLOT, M1_LIMIT_SLOT, M1_OBS_DIM, STATE_DIM
from agents.mtf_marl.learner import MTFMARL, MTFMARLConfig
from benchmarks.bench_latency import UPDATES_TARGET, bench_updates, random_buffer

BATCH = 256


def _learner(cfg: MTFMARLConfig) -> MTFMARL:
    torch.manual_seed(0)
    return MTFMARL(STATE_DIM, H4_OBS_DIM, M1_OBS_DIM, (M1_LIMIT_SLOT, M1_BIAS_SLOT), cfg)


class TorchCompiledPair:
    """Two ``MTFMARL.update`` calls (per_step credit, shared buffer) as one compiled functional graph."""

    def __init__(self, learner: MTFMARL) -> None:
        self.L, cfg = learner, learner.cfg
        self.nets = {"h4": learner.h4, "m1": learner.m1, "critic": learner.critic, "h4_t": learner.h4_t,
                     "m1_t": learner.m1_t, "critic_t": learner.critic_t}
        for m in self.nets.values():
            m.requires_grad_(False)  # gradients come from torch.func, not autograd on the parameters
        self.P = {k: dict(m.named_parameters()) for k, m in self.nets.items()}
        self.O = {k: self._adam_state(o) for k, o in (("critic", learner.opt_critic), ("h4", learner.opt_h4),
                                                     ("m1", learner.opt_m1))}
        self.lr = {"critic": cfg.critic_lr, "h4": cfg.actor_lr, "m1": cfg.actor_lr}
        self.pair = self._pair

    @staticmethod
    def _adam_state(opt: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
        params = [p for g in opt.param_groups for p in g["params"]]
        for p in params:
            opt.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                            "exp_avg_sq": torch.zeros_like(p)}
        return [[opt.state[p][k] for p in params] for k in ("exp_avg", "exp_avg_sq", "step")]

    def _adam(self, name: str, grads: dict[str, torch.Tensor]) -> None:
        st = self.O[name]
        functional_adam(list(self.P[name].values()), list(grads.values()), st[0], st[1], [], st[2],
                        foreach=False, capturable=False, differentiable=False, fused=None, grad_scale=None,
                        found_inf=None, has_complex=False, amsgrad=False, beta1=0.9, beta2=0.999,
                        lr=self.lr[name], weight_decay=0.0, eps=1e-8, maximize=False)

    def _call(self, name: str, params: dict, *x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.nets[name], params, x)

    def critic_loss(self, b: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s, o_h4, o_m1, a_h4, a_m1, r, s2, o_h4_2, o_m1_2, done, due, steps = b
        L, P = self.L, self.P
        fresh = L._smooth(self._call("h4_t", P["h4_t"], o_h4_2))
        a_h4_2 = torch.where(due > 0.5, fresh, a_h4)
        a_m1_2 = L._smooth(self._call("m1_t", P["m1_t"], L.with_h4(o_m1_2, a_h4_2)))
        q1t, q2t = self._call("critic_t", P["critic_t"], s2, a_h4_2, a_m1_2)
        y = r + torch.pow(L.cfg.gamma, steps) * (1.0 - done) * torch.min(q1t, q2t)

        def loss(p: dict) -> torch.Tensor:
            q1, q2 = self._call("critic", p, s, a_h4, a_m1)
            return F.mse_loss(q1, y) + F.mse_loss(q2, y)

        grads, value = grad_and_value(loss)(P["critic"])
        return value, grads

    def _critic_step(self, b: tuple[torch.Tensor, ...]) -> torch.Tensor:
        value, grads = self.critic_loss(b)
        self._adam("critic", grads)
        return value

    def _actor_step(self, b: tuple[torch.Tensor, ...]) -> torch.Tensor:
        s, o_h4, o_m1, a_h4, a_m1 = b[:5]
        q1 = {k[3:]: v for k, v in self.P["critic"].items() if k.startswith("q1.")}

        def loss(ph: dict, pm: dict) -> torch.Tensor:
            h4 = functional_call(self.L.critic.q1, q1, (torch.cat([s, self._call("h4", ph, o_h4), a_m1], 1),))
            m1 = functional_call(self.L.critic.q1, q1, (torch.cat([s, a_h4, self._call("m1", pm, o_m1)], 1),))
            return -h4.mean() - m1.mean()

        (gh, gm), value = grad_and_value(loss, argnums=(0, 1))(self.P["h4"], self.P["m1"])
        self._adam("h4", gh)
        self._adam("m1", gm)
        for n in ("h4", "m1", "critic"):
            torch._foreach_lerp_(list(self.P[n + "_t"].values()), list(self.P[n].values()), self.L.cfg.tau)
        return value

    def _pair(self, b1: tuple[torch.Tensor, ...], b2: tuple[torch.Tensor, ...]) -> torch.Tensor:
        self._critic_step(b1)
        self._critic_step(b2)
        return self._actor_step(b2)

    def compile(self) -> None:
        import torch._inductor.config as inductor

        inductor.cpp_wrapper = True  # the generated graph calls kernels from C++, not from Python
        self.pair = torch.compile(self._pair, fullgraph=True)


def check_reference(buf, rng: np.random.Generator) -> float:
    """Relative difference of the first critic loss, eager learner vs the functional form (no target noise)."""
    cfg = MTFMARLConfig(target_noise=0.0)
    b = buf.sample(BATCH, rng)
    eager = _learner(cfg).update(b)["critic_loss"]
    ref, _ = TorchCompiledPair(_learner(cfg)).critic_loss(b.fields())
    return abs(float(ref) - eager) / abs(eager)


def bench_torch_compiled(buf, updates: int, runs: int) -> tuple[float, float]:
    """(best updates/s, compile seconds)."""
    rng = np.random.default_rng(0)
    ref = TorchCompiledPair(_learner(MTFMARLConfig()))
    ref.compile()

    def sample() -> tuple[torch.Tensor, ...]:
        return buf.sample(BATCH, rng).fields()

    t0 = time.perf_counter()
    for _ in range(5):
        ref.pair(sample(), sample())
    compile_s = time.perf_counter() - t0
    best = 0.0
    for r in range(runs):
        t0 = time.perf_counter()
        for _ in range(updates // 2):
            ref.pair(sample(), sample())
        rate = 2 * (updates // 2) / (time.perf_counter() - t0)
        print(f"  torch.compile run {r + 1}: {rate:,.0f} updates/s")
        best = max(best, rate)
    return best, compile_s


def jax_td3(cfg: MTFMARLConfig):
    """(initial state, jitted pair of updates, critic loss) of the same TD3 update in JAX + optax, from the weights
    of ``_learner(cfg)``; None when jax / optax are not installed."""
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        return None
    jax.config.update("jax_platforms", "cpu")
    learner = _learner(cfg)

    def layers(seq: torch.nn.Sequential) -> list[tuple]:
        return [(jnp.asarray(m.weight.detach().numpy().T), jnp.asarray(m.bias.detach().numpy()))
                for m in seq if isinstance(m, torch.nn.Linear)]

    params = {"h4": layers(learner.h4.net), "m1": layers(learner.m1.net), "q1": layers(learner.critic.q1),
              "q2": layers(learner.critic.q2)}
    target = jax.tree.map(lambda x: x, params)
    lim, bias = M1_LIMIT_SLOT, M1_BIAS_SLOT
    critic_opt, actor_opt = optax.adam(cfg.critic_lr), optax.adam(cfg.actor_lr)
    state = (params, target, critic_opt.init((params["q1"], params["q2"])),
             actor_opt.init((params["h4"], params["m1"])))

    def mlp(ps, x):
        for w, b in ps[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = ps[-1]
        return x @ w + b

    def smooth(a, key):
        noise = jnp.clip(cfg.target_noise * jax.random.normal(key, a.shape), -cfg.noise_clip, cfg.noise_clip)
        return jnp.clip(a + noise, -1.0, 1.0)

    def with_h4(o, a):
        return o.at[:, lim].set(jnp.clip((a[:, 1] + 1.0) * 0.5, 0.0, 1.0)).at[:, bias].set(a[:, 0])

    def critic_loss(q, t, b, key):
        s, o_h4, o_m1, a_h4, a_m1, r, s2, o_h4_2, o_m1_2, done, due, steps = b
        k1, k2 = jax.random.split(key)
        a_h4_2 = jnp.where(due > 0.5, smooth(jnp.tanh(mlp(t["h4"], o_h4_2)), k1), a_h4)
        a_m1_2 = smooth(jnp.tanh(mlp(t["m1"], with_h4(o_m1_2, a_h4_2))), k2)
        x2 = jnp.concatenate([s2, a_h4_2, a_m1_2], 1)
        y = r + cfg.gamma ** steps * (1.0 - done) * jnp.minimum(mlp(t["q1"], x2), mlp(t["q2"], x2))
        x = jnp.concatenate([s, a_h4, a_m1], 1)
        return jnp.mean((mlp(q[0], x) - y) ** 2) + jnp.mean((mlp(q[1], x) - y) ** 2)

    def critic_step(p, t, oc, b, key):
        value, g = jax.value_and_grad(critic_loss)((p["q1"], p["q2"]), t, b, key)
        u, oc = critic_opt.update(g, oc)
        q1, q2 = optax.apply_updates((p["q1"], p["q2"]), u)
        return dict(p, q1=q1, q2=q2), oc, value

    def actor_step(p, t, oa, b):
        s, o_h4, o_m1, a_h4, a_m1 = b[:5]

        def loss(a):
            h4 = mlp(p["q1"], jnp.concatenate([s, jnp.tanh(mlp(a[0], o_h4)), a_m1], 1))
            m1 = mlp(p["q1"], jnp.concatenate([s, a_h4, jnp.tanh(mlp(a[1], o_m1))], 1))
            return -h4.mean() - m1.mean()

        value, g = jax.value_and_grad(loss)((p["h4"], p["m1"]))
        u, oa = actor_opt.update(g, oa)
        h4, m1 = optax.apply_updates((p["h4"], p["m1"]), u)
        p = dict(p, h4=h4, m1=m1)
        return p, jax.tree.map(lambda tt, pp: tt + cfg.tau * (pp - tt), t, p), oa, value

    @jax.jit
    def pair(p, t, oc, oa, b1, b2, key):
        k1, k2 = jax.random.split(key)
        p, oc, _ = critic_step(p, t, oc, b1, k1)
        p, oc, _ = critic_step(p, t, oc, b2, k2)
        p, t, oa, value = actor_step(p, t, oa, b2)
        return p, t, oc, oa, value

    def first_loss(b) -> float:
        b = tuple(jnp.asarray(x) for x in b)
        return float(critic_loss((params["q1"], params["q2"]), target, b, jax.random.PRNGKey(0)))

    return state, pair, first_loss


def check_jax(buf, rng: np.random.Generator) -> float | None:
    """``check_reference`` for the JAX form (None without jax)."""
    cfg = MTFMARLConfig(target_noise=0.0)
    built = jax_td3(cfg)
    if built is None:
        return None
    b = buf.sample(BATCH, rng)
    eager = _learner(cfg).update(b)["critic_loss"]
    return abs(built[2](tuple(x.numpy() for x in b.fields())) - eager) / abs(eager)


def bench_jax(buf, updates: int, runs: int) -> float | None:
    built = jax_td3(MTFMARLConfig())
    if built is None:
        print("  jax / optax not installed (pip install jax optax): skipped")
        return None
    import jax

    state, pair, _ = built
    rng = np.random.default_rng(0)
    cuts = np.cumsum(buf.widths)[:-1]

    def sample():
        return tuple(np.split(buf.data[buf.sample_indices(BATCH, rng)], cuts, axis=1))

    key = jax.random.PRNGKey(0)
    for _ in range(5):
        key, k = jax.random.split(key)
        *state, value = pair(*state, sample(), sample(), k)
    value.block_until_ready()
    best = 0.0
    for r in range(runs):
        t0 = time.perf_counter()
        for _ in range(updates // 2):
            key, k = jax.random.split(key)
            *state, value = pair(*state, sample(), sample(), k)
        value.block_until_ready()
        rate = 2 * (updates // 2) / (time.perf_counter() - t0)
        print(f"  jax.jit run {r + 1}: {rate:,.0f} updates/s")
        best = max(best, rate)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--updates", type=int, default=500, help="updates per timed run")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per form (best)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    buf = random_buffer(50_000, rng)
    cores = len(os.sched_getaffinity(0))
    diff, jdiff = check_reference(buf, rng), check_jax(buf, rng)
    print(f"reference check, first critic loss vs the eager learner's: torch functional {diff:.1e}, "
          f"jax {'n/a' if jdiff is None else f'{jdiff:.1e}'} (relative)")
    if diff > 1e-4 or (jdiff is not None and jdiff > 1e-4):
        raise SystemExit("a reference form does not compute the learner's update")
    print(f"cores this process may use: {cores} (torch runs 1 thread; XLA uses every core it may: compare on one "
          "core with taskset -c 0)")
    print(f"eager MTFMARL.update, batch {BATCH}, 1 thread:")
    eager = bench_updates(1, args.updates, args.runs)
    print("the same update as one torch.compile graph per pair of updates (inductor, C++ wrapper):")
    compiled, compile_s = bench_torch_compiled(buf, args.updates, args.runs)
    print(f"  compile + 5 warm-up calls: {compile_s:.1f} s")
    print(f"the same pair of updates under one jax.jit (XLA CPU, {cores} core(s)):")
    jax_rate = bench_jax(buf, args.updates, args.runs)
    res = {"eager_updates_per_s": round(eager, 1), "torch_compiled_updates_per_s": round(compiled, 1),
           "torch_compile_s": round(compile_s, 1), "jax_updates_per_s": round(jax_rate, 1) if jax_rate else None,
           "compiled_over_eager": round(compiled / eager, 2),
           "jax_over_eager": round(jax_rate / eager, 2) if jax_rate else None, "cores": cores,
           "target": UPDATES_TARGET}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
