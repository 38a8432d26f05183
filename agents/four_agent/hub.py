"""The communication hub: the latest message of each agent, a shared context memory, and who may read what.

Shapes (B = batch, e.g. vectorised envs; M = ``message_dim``; S = ``memory_dim``; 4 slots in ``AGENTS`` order
regime, structure, tactical, risk):

* ``HubState.messages`` (B, 4, M): each agent's latest published message (zeros before its first);
* ``HubState.present`` (B, 4) bool: whether the agent has published yet;
* ``HubState.memory`` (B, S): the shared context memory, a GRU cell's state, updated after every publication from
  (message, one-hot of the publisher). It is shared context by design (the design's "shared memory space": market
  context, structural bias, tactical signals, risk constraints), so it summarises every earlier publication;
* ``HubView`` is what one agent reads: the messages it may see (``VISIBLE``: Structure sees Regime, Tactical sees
  Regime and Structure, Risk sees all four; Regime reads nothing, it is the first to decide), the others zeroed and
  masked, plus the memory. The attention read itself is part of each reading agent's network
  (``agents.four_agent.networks.HubReader``: the query is the agent's own encoding), so each agent owns its read.

Update order at each M1 bar (``acting_agents`` lists who acts):

1. an M30 bar completed: Regime acts on its 96 x N matrix and publishes; then Structure acts on its 48 x 8 matrix,
   reading Regime's *new* message, and publishes;
2. an M5 bar completed (also at every M30 completion of aligned bins): Tactical acts, reading the latest Regime and
   Structure messages, and publishes;
3. the consensus (``risk.consensus.decide`` with the Risk action ``allow``) gives the proposed target; where it
   differs from the current position, or a position is open, Risk acts, reading all four slots (its own previous
   message included) and publishes; the final decision uses its action.

Between decisions an agent's last message and action hold (the Tactical action counts as ``hold`` between its
decisions: an entry is an event, not a state). In rollouts the hub state is stored with each agent's observation
(detached), and the runner logs every publication (``Publication``: who, in which env rows, which sample). The
hub state is a function of that log and the messages alone, so ``CommHub.replay`` rebuilds, with a graph, what each
publisher read just before it published: the MAPPO update trains the memory cell and the Structure, Tactical and
Risk message heads through the Structure and Tactical losses (truncated backpropagation through the hub:
``agents.four_agent.mappo``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from agents.four_agent.config import AGENTS, FourAgentConfig

VISIBLE: dict[str, tuple[str, ...]] = {
    "regime": (),
    "structure": ("regime",),
    "tactical": ("regime", "structure"),
    "risk": AGENTS,
}
"""whose latest message each agent may read"""


class HubState(NamedTuple):
    messages: torch.Tensor  # (B, 4, M)
    present: torch.Tensor  # (B, 4) bool
    memory: torch.Tensor  # (B, S)


class HubView(NamedTuple):
    """What one agent reads: messages it may not see are zero and ``visible`` False."""

    messages: torch.Tensor  # (B, 4, M)
    visible: torch.Tensor  # (B, 4) bool
    memory: torch.Tensor  # (B, S)


class Publication(NamedTuple):
    """One entry of a rollout's publication log: ``agent`` published in env ``rows`` (B,), the messages being rows
    ``src`` of that agent's message tensor (its samples, in the order the update holds them). ``agent`` None: a
    fresh hub in ``rows`` (an episode restarted)."""

    agent: str | None
    rows: np.ndarray
    src: np.ndarray


class Replayed(NamedTuple):
    """What the publishers read, per agent: ``messages`` (n, 4, M, unmasked) and ``memory`` (n, S), one row per
    sample (``src`` order); mask the messages with the stored visibility to get the view."""

    messages: dict[str, torch.Tensor]
    memory: dict[str, torch.Tensor]


def _slot(agent: str) -> int:
    if agent not in AGENTS:
        raise KeyError(f"unknown agent {agent!r}; known: {', '.join(AGENTS)}")
    return AGENTS.index(agent)


def acting_agents(new_m5: bool, new_m30: bool, proposes_change: bool, in_position: bool) -> tuple[str, ...]:
    """The agents that act at one M1 bar, in order (see the module docstring).

    :param new_m5: an M5 bar completed at this bar
    :param new_m30: an M30 bar completed at this bar
    :param proposes_change: the consensus without the Risk agent proposes a target other than the current position
    :param in_position: a position is open
    """
    out: list[str] = []
    if new_m30:
        out += ["regime", "structure"]
    if new_m5 or new_m30:
        out.append("tactical")
    if proposes_change or in_position:
        out.append("risk")
    return tuple(out)


class CommHub(nn.Module):
    """Stateless over ``HubState`` (so it batches over envs and stores in rollouts); the one parameterised part is
    the memory cell.

    :param cfg: the system's sizes (``message_dim``, ``memory_dim``)
    """

    def __init__(self, cfg: FourAgentConfig) -> None:
        super().__init__()
        self.message_dim, self.memory_dim = cfg.message_dim, cfg.memory_dim
        self.cell = nn.GRUCell(cfg.message_dim + len(AGENTS), cfg.memory_dim)
        allowed = torch.zeros(len(AGENTS), len(AGENTS), dtype=torch.bool)
        for reader, seen in VISIBLE.items():
            for s in seen:
                allowed[_slot(reader), _slot(s)] = True
        self.register_buffer("allowed", allowed, persistent=False)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> HubState:
        return HubState(torch.zeros(batch, len(AGENTS), self.message_dim, device=device),
                        torch.zeros(batch, len(AGENTS), dtype=torch.bool, device=device),
                        torch.zeros(batch, self.memory_dim, device=device))

    def publish(self, state: HubState, agent: str, message: torch.Tensor,
                where: torch.Tensor | None = None) -> HubState:
        """A new state with ``agent``'s message (B, M) stored and the memory updated, in the rows ``where`` (B,)
        is True (all when None: envs of a batch decide at different bars)."""
        k = _slot(agent)
        b = state.messages.shape[0]
        if message.shape != (b, self.message_dim):
            raise ValueError(f"{agent} message has shape {tuple(message.shape)}, expected {(b, self.message_dim)}")
        w = torch.ones(b, dtype=torch.bool, device=message.device) if where is None else where.to(torch.bool)
        messages = state.messages.clone()
        messages[:, k] = torch.where(w[:, None], message, state.messages[:, k])
        present = state.present.clone()
        present[:, k] = state.present[:, k] | w
        who = torch.zeros(b, len(AGENTS), device=message.device)
        who[:, k] = 1.0
        updated = self.cell(torch.cat([message, who], dim=1), state.memory)
        memory = torch.where(w[:, None], updated, state.memory)
        return HubState(messages, present, memory)

    def view(self, state: HubState, agent: str) -> HubView:
        """What ``agent`` may read: the visible slots' messages (others zeroed) and the shared memory."""
        visible = state.present & self.allowed[_slot(agent)][None, :]
        return HubView(state.messages * visible[..., None], visible, state.memory)

    def replay(self, log: list[Publication], messages: dict[str, torch.Tensor], n_envs: int,
               readers: tuple[str, ...]) -> Replayed:
        """The hub state each of ``readers``' samples read, rebuilt from a rollout's publication log with a graph
        through ``messages`` (agent -> (n_agent, M)) and the memory cell. Every env starts from
        ``initial_state`` (a rollout starts with every env reset). At unchanged weights it is the stored read."""
        M, S = self.message_dim, self.memory_dim
        proto = next(iter(messages.values()))
        msgs = proto.new_zeros(n_envs, len(AGENTS), M)
        mem = proto.new_zeros(n_envs, S)
        got: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {a: [] for a in readers}
        for pub in log:
            rows = torch.as_tensor(pub.rows, dtype=torch.long)
            if pub.agent is None:
                msgs = msgs.index_put((rows,), msgs.new_zeros(len(rows), len(AGENTS), M))
                mem = mem.index_put((rows,), mem.new_zeros(len(rows), S))
                continue
            src = torch.as_tensor(pub.src, dtype=torch.long)
            if pub.agent in got:
                got[pub.agent].append((src, msgs[rows], mem[rows]))
            k = _slot(pub.agent)
            message = messages[pub.agent][src]
            who = mem.new_zeros(len(rows), len(AGENTS))
            who[:, k] = 1.0
            msgs = msgs.index_put((rows, torch.full_like(rows, k)), message)
            mem = mem.index_put((rows,), self.cell(torch.cat([message, who], dim=1), mem[rows]))
        out_m, out_s = {}, {}
        for a in readers:
            n = len(messages[a])
            parts = got[a]
            idx = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
            if len(idx) != n or (n and not torch.equal(torch.sort(idx).values, torch.arange(n))):
                raise ValueError(f"the publication log holds {len(idx)} {a} publications for {n} samples")
            out_m[a] = msgs.new_zeros(n, len(AGENTS), M).index_copy(0, idx, torch.cat([p[1] for p in parts])) \
                if n else msgs.new_zeros(0, len(AGENTS), M)
            out_s[a] = mem.new_zeros(n, S).index_copy(0, idx, torch.cat([p[2] for p in parts])) \
                if n else mem.new_zeros(0, S)
        return Replayed(out_m, out_s)
