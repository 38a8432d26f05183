"""MAPPO for the Structure and Tactical agents: a centralised critic, value normalisation, clipped PPO.

Anchored on Yu et al. 2022 ("The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games") and their
on-policy MAPPO code; where we differ, it says so.

* **Centralised critic** V(s, agent): one MLP (input LayerNorm, as their ``use_feature_normalization``) over the
  env's global state (``training.four_agent_env.STATE_FIELDS``: engine features, account, newest matrix rows,
  actions in force, cadence) concatenated with the agent's one-hot: their *agent-specific* global state, with the
  agent identity as the agent-specific feature. It is shared by both agents (parameter sharing of the critic),
  evaluated at each agent's own decision states. The networks' own critic heads are not used.
* **Value normalisation**: ``ValueNorm`` (their running mean and variance with debiasing, beta 0.99999); the
  critic predicts normalised returns; GAE uses de-normalised values; the value loss is Huber (delta 10) with
  value clipping (0.2) in normalised units, as theirs.
* **PPO**: ratio clipped at 0.2, advantages normalised per agent over the batch, entropy bonus 0.01,
  ``epochs`` passes (5) over the batch with ``minibatches`` = 1 by default (no mini-batch split), gradient norm
  clipped at 10, Adam 5e-4 for actors and critic, separate optimisers.
* **Macro-actions**: each sample is one decision; its reward, discount gamma^k and bootstrap come from the runner
  (``agents.four_agent.runner``) and ``agents.common.gae`` (gamma per M1 step, lambda per decision). This is the
  asynchronous macro-action form of Xiao, Tan and Amato (2022) with MAPPO's critic; unlike their Mac-IAICC the
  critic is one network over the global state at the deciding agent's decision bars (not per agent).
* **Regime**: frozen (the pretrained supervised network): its class is an input to the others, not a policy here.
* **Messages and memory** (differentiable communication, as DIAL, Foerster et al. 2016, with truncated
  backpropagation through the hub): the update rebuilds the hub from the rollout's publication log
  (``HubBatch``, ``CommHub.replay``). The messages are recomputed with their graph, each from its sender's stored
  observation (Structure's and Tactical's from their own samples, Risk's through its message head only, Regime's
  as stored: a frozen network), the memory cell re-runs over them in order, and each Structure and Tactical sample
  acts in the loss on the hub so rebuilt (its own encoder's output computed once, read twice: the stored view for
  the message it published, the rebuilt view for its policy). So the Structure and Tactical losses train the
  memory cell, the three learned message heads and the encoders under them; the truncation is that a sender's
  message is computed from the hub it read as stored (no gradient from a message back through what its sender
  read). At unchanged weights the rebuilt hub is the stored one (``tests/test_four_agent_training.py``). The memory
  cell and Risk's message head have their own optimiser (``hub_opt``); the DQN owns the rest of the Risk network,
  which these losses do not reach. Risk's own loss (a DQN on stored observations) trains none of the messages.

``update(batch)`` only learns; acting is ``agents.four_agent.acting.Controller`` with the same networks' ``step``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.four_agent.hub import HubView, Publication
from agents.four_agent.networks import FourAgentNetworks, RiskObs, StructureObs, TacticalObs
from agents.four_agent.runner import PPO_AGENTS


@dataclass(frozen=True)
class MAPPOConfig:
    """:param gamma: discount per M1 step (a macro-action of k steps discounts by gamma^k)
    :param gae_lambda: GAE lambda, per decision
    :param clip: PPO ratio clip
    :param epochs: passes over each rollout
    :param minibatches: mini-batches per pass (1: the whole rollout per gradient step)
    :param actor_lr: Adam learning rate of each actor
    :param critic_lr: Adam learning rate of the critic
    :param entropy_coef: entropy bonus
    :param value_clip: value clipping, normalised units
    :param huber_delta: Huber loss delta of the value loss
    :param max_grad_norm: gradient norm clip, per network
    :param critic_hidden: critic MLP widths
    :param value_norm: normalise value targets (``ValueNorm``)"""

    gamma: float = 0.995
    gae_lambda: float = 0.95
    clip: float = 0.2
    epochs: int = 5
    minibatches: int = 1
    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    entropy_coef: float = 0.01
    value_clip: float = 0.2
    huber_delta: float = 10.0
    max_grad_norm: float = 10.0
    critic_hidden: tuple[int, ...] = (128, 128)
    value_norm: bool = True

    def __post_init__(self) -> None:
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1 and self.clip > 0):
            raise ValueError("gamma in (0, 1], gae_lambda in [0, 1] and clip > 0 are required")
        if self.epochs < 1 or self.minibatches < 1:
            raise ValueError("epochs and minibatches must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


class ValueNorm(nn.Module):
    """Running mean and variance of value targets (MAPPO's ``ValueNorm``: exponential with debiasing).

    :param beta: weight of the past per update
    :param epsilon: floor of the debiasing term"""

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.beta, self.epsilon = beta, epsilon
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean_sq", torch.zeros((), dtype=torch.float64))
        self.register_buffer("debias", torch.zeros((), dtype=torch.float64))

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.debias.clamp(min=self.epsilon)
        mean, mean_sq = self.mean / d, self.mean_sq / d
        return mean, (mean_sq - mean**2).clamp(min=1e-2)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.double()
        b = self.beta
        self.mean.mul_(b).add_(x.mean() * (1 - b))
        self.mean_sq.mul_(b).add_((x**2).mean() * (1 - b))
        self.debias.mul_(b).add_(1 - b)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self._stats()
        return ((x.double() - mean) / var.sqrt()).to(x.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self._stats()
        return (x.double() * var.sqrt() + mean).to(x.dtype)


class CentralCritic(nn.Module):
    """V(global state, agent one-hot) -> a normalised value.

    :param state_dim: global state size
    :param n_agents: agents it scores (one-hot appended)
    :param hidden: MLP widths"""

    def __init__(self, state_dim: int, n_agents: int, hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        d = state_dim + n_agents
        layers: list[nn.Module] = [nn.LayerNorm(d)]
        for h in hidden:
            layers += [nn.Linear(d, h), nn.Tanh()]
            d = h
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)
        self.state_dim, self.n_agents = state_dim, n_agents

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


def critic_input(states: np.ndarray, agent: str) -> np.ndarray:
    """The agent-specific state: the global state with the agent's one-hot (``PPO_AGENTS`` order)."""
    onehot = np.zeros((len(states), len(PPO_AGENTS)), np.float32)
    onehot[:, PPO_AGENTS.index(agent)] = 1.0
    return np.concatenate([np.asarray(states, np.float32).reshape(len(states), -1), onehot], axis=1)


@dataclass(frozen=True)
class AgentBatch:
    """One agent's samples for an update (torch tensors, one row per decision)."""

    obs: StructureObs | TacticalObs
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor  # de-normalised lambda-returns
    old_values: torch.Tensor  # de-normalised values at collection
    critic_in: torch.Tensor

    def __len__(self) -> int:
        return len(self.actions)

    def rows(self, idx: torch.Tensor) -> AgentBatch:
        o = self.obs
        hub = HubView(o.hub.messages[idx], o.hub.visible[idx], o.hub.memory[idx])
        obs = (StructureObs(o.matrix[idx], o.mask[idx], hub) if isinstance(o, StructureObs)
               else TacticalObs(o.matrix[idx], o.mask[idx], hub, o.action_mask[idx]))
        return AgentBatch(obs, self.actions[idx], self.old_log_probs[idx], self.advantages[idx], self.returns[idx],
                          self.old_values[idx], self.critic_in[idx])


@dataclass(frozen=True)
class HubBatch:
    """What the update needs to rebuild a rollout's hub: the publication log (``src`` rows in the ``AgentBatch``
    order for Structure and Tactical, in ``regime_messages`` for Regime, in ``risk_obs`` for Risk), the number of env
    rows, the Regime messages as published and the Risk agent's observations."""

    log: list[Publication]
    n_envs: int
    regime_messages: torch.Tensor  # (n, M)
    risk_obs: RiskObs  # (n_risk, ...)


class MAPPO:
    """The learner: the Structure and Tactical actors (inside ``nets``), the centralised critic and the value
    normaliser, with their optimisers.

    :param nets: the four-agent networks (only ``structure`` and ``tactical`` are updated)
    :param state_dim: global state size
    :param config: hyper-parameters"""

    def __init__(self, nets: FourAgentNetworks, state_dim: int, config: MAPPOConfig | None = None) -> None:
        self.cfg = config or MAPPOConfig()
        self.nets = nets
        self.critic = CentralCritic(state_dim, len(PPO_AGENTS), self.cfg.critic_hidden)
        self.value_norm = ValueNorm()
        self.actors = {a: getattr(nets, a) for a in PPO_AGENTS}
        self.opt = {a: torch.optim.Adam(m.parameters(), lr=self.cfg.actor_lr, eps=1e-5)
                    for a, m in self.actors.items()}
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.critic_lr, eps=1e-5)
        self.hub_params = [*nets.hub.parameters(), *nets.risk.message.parameters()]
        self.hub_opt = torch.optim.Adam(self.hub_params, lr=self.cfg.actor_lr, eps=1e-5)
        self.updates = 0

    @torch.no_grad()
    def values(self, critic_in: np.ndarray) -> np.ndarray:
        """De-normalised V of agent-specific states (the runner's GAE uses them)."""
        if not len(critic_in):
            return np.zeros(0)
        v = self.critic(torch.from_numpy(np.ascontiguousarray(critic_in, dtype=np.float32)))
        if self.cfg.value_norm:
            v = self.value_norm.denormalize(v)
        return v.double().numpy()

    def _value_loss(self, b: AgentBatch) -> torch.Tensor:
        c = self.cfg
        v = self.critic(b.critic_in)
        if c.value_norm:
            target, old = self.value_norm.normalize(b.returns), self.value_norm.normalize(b.old_values)
        else:
            target, old = b.returns, b.old_values
        clipped = old + (v - old).clamp(-c.value_clip, c.value_clip)
        lo = F.huber_loss(v, target, reduction="none", delta=c.huber_delta)
        hi = F.huber_loss(clipped, target, reduction="none", delta=c.huber_delta)
        return torch.max(lo, hi).mean()

    def hub_views(self, batches: dict[str, AgentBatch], hub: HubBatch) -> tuple[dict[str, torch.Tensor],
                                                                               dict[str, HubView]]:
        """Each actor's encodings of its samples and the hub views rebuilt with a graph (module docstring)."""
        M = self.nets.hub.message_dim
        enc = {a: self.actors[a].encode(b.obs) for a, b in batches.items()}
        msgs = {a: self.actors[a](b.obs, enc[a]).message for a, b in batches.items()}
        for a in PPO_AGENTS:
            msgs.setdefault(a, torch.zeros(0, M))
        msgs["regime"] = hub.regime_messages
        msgs["risk"] = self.nets.risk.message_only(hub.risk_obs) if len(hub.risk_obs.proposal) else torch.zeros(0, M)
        read = self.nets.hub.replay(hub.log, msgs, hub.n_envs, tuple(batches))
        views = {a: HubView(read.messages[a] * b.obs.hub.visible[..., None], b.obs.hub.visible, read.memory[a])
                 for a, b in batches.items()}
        return enc, views

    def update(self, batches: dict[str, AgentBatch], hub: HubBatch,
               rng: np.random.Generator | None = None) -> dict[str, float]:
        """``epochs`` passes of clipped PPO for each agent and of the critic over ``batches`` (agent -> samples),
        on the hub rebuilt from ``hub``; ``rng`` shuffles mini-batches when ``minibatches`` > 1 (each mini-batch
        rebuilds the whole hub: the log runs through every sample)."""
        c = self.cfg
        batches = {a: b for a, b in batches.items() if len(b)}
        if not batches:
            return {}
        if c.value_norm:
            self.value_norm.update(torch.cat([b.returns for b in batches.values()]))
        adv = {}
        for a, b in batches.items():
            x = b.advantages
            adv[a] = (x - x.mean()) / (x.std(unbiased=False) + 1e-8) if len(x) > 1 else x * 0.0
        stats: dict[str, list[float]] = {}
        for m in self.actors.values():
            m.train()
        for _ in range(c.epochs):
            parts = {a: [torch.arange(len(b))] for a, b in batches.items()}
            if c.minibatches > 1:
                if rng is None:
                    raise ValueError("mini-batches are drawn with a numpy Generator: pass rng")
                parts = {a: list(torch.from_numpy(rng.permutation(len(b))).tensor_split(c.minibatches))
                         for a, b in batches.items()}
            for k in range(c.minibatches):
                critic_loss = torch.zeros(())
                losses = {}
                enc, views = self.hub_views(batches, hub)
                for a in (a for a in PPO_AGENTS if a in batches):
                    b, idx = batches[a], parts[a][k]
                    if not len(idx):
                        continue
                    mb = b.rows(idx)
                    v = views[a]
                    obs = mb.obs._replace(hub=HubView(v.messages[idx], v.visible[idx], v.memory[idx]))
                    step, _ = self.actors[a].step(obs, mb.actions, encoded=enc[a][idx])
                    log_ratio = step.log_prob - mb.old_log_probs
                    ratio = log_ratio.exp()
                    ad = adv[a][idx]
                    pg = -torch.min(ratio * ad, ratio.clamp(1 - c.clip, 1 + c.clip) * ad).mean()
                    ent = step.entropy.mean()
                    losses[a] = pg - c.entropy_coef * ent
                    vl = self._value_loss(mb)
                    critic_loss = critic_loss + vl
                    with torch.no_grad():
                        for name, val in (("policy_loss", pg), ("entropy", ent), ("value_loss", vl),
                                          ("approx_kl", ((ratio - 1) - log_ratio).mean()),
                                          ("clip_frac", ((ratio - 1).abs() > c.clip).float().mean())):
                            stats.setdefault(f"{a}/{name}", []).append(float(val))
                for opt in (*self.opt.values(), self.critic_opt, self.hub_opt):
                    opt.zero_grad(set_to_none=True)
                (sum(losses.values()) + critic_loss).backward()
                for a in self.actors:  # a reader's loss reaches the other actor through its messages
                    nn.utils.clip_grad_norm_(self.actors[a].parameters(), c.max_grad_norm)
                    self.opt[a].step()
                hub_norm = nn.utils.clip_grad_norm_(self.hub_params, c.max_grad_norm)
                stats.setdefault("hub/grad_norm", []).append(float(hub_norm))
                self.hub_opt.step()
                nn.utils.clip_grad_norm_(self.critic.parameters(), c.max_grad_norm)
                self.critic_opt.step()
                self.updates += 1
        for m in self.actors.values():
            m.eval()
        return {k: float(np.mean(v)) for k, v in stats.items()}

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return {"critic": self.critic.state_dict(), "value_norm": self.value_norm.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "hub_opt": self.hub_opt.state_dict(),
                **{f"opt_{a}": o.state_dict() for a, o in self.opt.items()},
                "updates": torch.tensor(self.updates)}

    def load_state_dict(self, d: dict) -> None:
        self.critic.load_state_dict(d["critic"])
        self.value_norm.load_state_dict(d["value_norm"])
        self.critic_opt.load_state_dict(d["critic_opt"])
        self.hub_opt.load_state_dict(d["hub_opt"])
        for a, o in self.opt.items():
            o.load_state_dict(d[f"opt_{a}"])
        self.updates = int(d["updates"])
