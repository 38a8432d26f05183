"""The Risk agent's learner: double DQN over its macro-action transitions, off-policy from the MAPPO rollouts.

The Risk agent acts at every M1 bar where the consensus proposes a change or a position is open; a decision lasts
until its next one (often the next bar, hours later when the account is flat and nothing is proposed). Each
transition (``agents.four_agent.runner``) holds its observation (proposal, account, the hub as it read it), its
action, the reward of the steps until its next decision discounted from its start, ``discount`` = gamma^k, the
next decision's observation (or, where the episode or the rollout was cut, the observation there) and whether a
breach ended it. Target: ``R + discount x (1 - terminated) x Q_target(s', argmax_a Q(s', a))`` (van Hasselt et
al. 2016's double Q-learning, SMDP discounting), Huber loss, Adam, gradient norm clip, hard target copies every
``target_every`` updates. The transitions of every rollout go to a ring buffer (``agents.common.replay``) and the
learner updates once per ``train_freq`` new transitions: the DQN learns off-policy alongside MAPPO from the same
rollouts. Acting greedily, the agent keeps ``allow`` unless another action's Q exceeds it by ``override_margin``
(about one round trip's cost in reward units; ``acting.risk_greedy`` says why). Exploration (the runner's):
epsilon-greedy, epsilon linear from ``eps_start`` to ``eps_end``; before
``learning_starts`` transitions the greedy action is replaced by ``allow`` (the rule without a risk agent), so the
first Q-values are learned from the consensus's own decisions rather than from an untrained network's. The
network's message head is not the DQN's to train (its loss does not reach it): MAPPO trains it through the hub.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.common.replay import RingBuffer
from agents.four_agent.config import AGENTS, RISK_PROPOSAL_FIELDS, FourAgentConfig
from agents.four_agent.hub import HubView
from agents.four_agent.networks import RiskNet, RiskObs


@dataclass(frozen=True)
class DQNConfig:
    """:param lr: Adam learning rate
    :param batch_size: minibatch size
    :param buffer_size: replay capacity (transitions)
    :param train_freq: new transitions per gradient update
    :param learning_starts: transitions before the first update (and of ``allow`` in place of the greedy action)
    :param target_every: updates between hard target-network copies
    :param max_grad_norm: gradient norm clip
    :param eps_start: initial exploration rate
    :param eps_end: final exploration rate
    :param eps_fraction: fraction of training over which epsilon decays
    :param override_margin: Q gain over ``allow`` the greedy action needs (``agents.four_agent.acting.risk_greedy``)"""

    lr: float = 2.5e-4
    batch_size: int = 256
    buffer_size: int = 100_000
    train_freq: int = 4
    learning_starts: int = 20_000
    target_every: int = 250
    max_grad_norm: float = 10.0
    eps_start: float = 0.02
    eps_end: float = 0.002
    eps_fraction: float = 0.5
    override_margin: float = 0.5

    def epsilon(self, progress: float) -> float:
        """Linear decay over the first ``eps_fraction`` of training (``progress`` in [0, 1])."""
        f = min(1.0, progress / self.eps_fraction) if self.eps_fraction > 0 else 1.0
        return self.eps_start + f * (self.eps_end - self.eps_start)

    def to_dict(self) -> dict:
        return asdict(self)


def replay_widths(cfg: FourAgentConfig) -> dict[str, int]:
    """The ring buffer's fields: a transition's observation, action, reward, discount, done, next observation."""
    obs = {"proposal": len(RISK_PROPOSAL_FIELDS), "account": cfg.risk.account_features,
           "messages": len(AGENTS) * cfg.message_dim, "visible": len(AGENTS), "memory": cfg.memory_dim}
    return {**obs, "action": 1, "reward": 1, "discount": 1, "terminated": 1, **{f"next_{k}": w for k, w in obs.items()}}


def risk_obs(batch: dict[str, torch.Tensor], prefix: str = "") -> RiskObs:
    """A ``RiskObs`` from buffer fields (``prefix`` "next_" for the next observation)."""
    m = batch[f"{prefix}messages"]
    n = len(AGENTS)
    hub = HubView(m.reshape(len(m), n, m.shape[1] // n), batch[f"{prefix}visible"] > 0.5, batch[f"{prefix}memory"])
    return RiskObs(batch[f"{prefix}proposal"], batch[f"{prefix}account"], hub)


class RiskDQN:
    """:param net: the online Q-network (the ``risk`` network of ``FourAgentNetworks``, which acts)
    :param cfg: the system's sizes (buffer layout)
    :param config: hyper-parameters"""

    def __init__(self, net: RiskNet, cfg: FourAgentConfig, config: DQNConfig | None = None) -> None:
        self.cfg = config or DQNConfig()
        self.q = net
        self.target = copy.deepcopy(net).eval()
        for p in self.target.parameters():
            p.requires_grad_(False)
        # the Q-network's parameters; the message head is MAPPO's (trained through the hub: ``mappo.MAPPO``)
        self.params = [p for name, p in net.named_parameters() if not name.startswith("message.")]
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr)
        self.buffer = RingBuffer(self.cfg.buffer_size, replay_widths(cfg))
        self.updates = 0
        self.seen = 0  # transitions ever added
        self._due = 0.0  # updates owed by the transitions added so far

    def add(self, rollout_risk: dict[str, np.ndarray]) -> int:
        """Store a rollout's transitions; returns how many updates they earned (``train_freq``)."""
        r = rollout_risk
        n = len(r["reward"])
        if not n:
            return 0
        rows = {"action": r["action"], "reward": r["reward"], "discount": r["discount"],
                "terminated": r["terminated"].astype(np.float32)}
        for k in ("proposal", "account", "memory", "visible"):
            rows[k], rows[f"next_{k}"] = r[k], r[f"next_{k}"]
        rows["messages"] = r["messages"].reshape(n, -1)
        rows["next_messages"] = r["next_messages"].reshape(n, -1)
        rows = {k: np.asarray(v, np.float32) for k, v in rows.items()}
        self.buffer.add_many(rows)
        self.seen += n
        if self.seen < self.cfg.learning_starts:
            return 0
        self._due += n / self.cfg.train_freq
        due, self._due = int(self._due), self._due - int(self._due)
        return due

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One double-DQN step on a sampled batch."""
        self.q.train()
        a = batch["action"].long()
        with torch.no_grad():
            nxt = risk_obs(batch, "next_")
            best = self.q(nxt).q.argmax(dim=1, keepdim=True)
            q_next = self.target(nxt).q.gather(1, best)
            y = batch["reward"] + batch["discount"] * (1.0 - batch["terminated"]) * q_next
        q = self.q(risk_obs(batch)).q.gather(1, a)
        loss = F.smooth_l1_loss(q, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.opt.step()
        self.updates += 1
        if self.updates % self.cfg.target_every == 0:
            self.target.load_state_dict(self.q.state_dict())
        self.q.eval()
        return {"risk/q_loss": float(loss.detach()), "risk/q_mean": float(q.mean().detach()),
                "risk/target_mean": float(y.mean())}

    def learn(self, n_updates: int, rng: np.random.Generator) -> dict[str, float]:
        """``n_updates`` updates on batches drawn with ``rng``; mean statistics."""
        stats: dict[str, list[float]] = {}
        for _ in range(n_updates):
            for k, v in self.update(self.buffer.sample(self.cfg.batch_size, rng)).items():
                stats.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in stats.items()}

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        buf = self.buffer.state_dict()
        return {"target": self.target.state_dict(), "opt": self.opt.state_dict(),
                "buffer_data": torch.from_numpy(buf["data"]), "buffer_pos": torch.tensor(buf["pos"]),
                "buffer_size": torch.tensor(buf["size"]), "updates": torch.tensor(self.updates),
                "seen": torch.tensor(self.seen), "due": torch.tensor(self._due, dtype=torch.float64)}

    def load_state_dict(self, d: dict) -> None:
        self.target.load_state_dict(d["target"])
        self.opt.load_state_dict(d["opt"])
        self.buffer.load_state_dict({"data": d["buffer_data"].numpy(), "pos": int(d["buffer_pos"]),
                                     "size": int(d["buffer_size"])})
        self.updates, self.seen, self._due = int(d["updates"]), int(d["seen"]), float(d["due"])
