"""The MTF-MARL replay buffer of joint H4 + M1 transitions, on the shared ring buffer (``agents.common.replay``)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from agents.common.replay import RingBuffer

# H4 action bins for balanced sampling: trend bias (short / neutral / long) x limit (low / mid / high)
_BIAS_EDGES = np.array([-1 / 3, 1 / 3])
_LIMIT_EDGES = np.array([-1 / 3, 1 / 3])


def h4_bin(a_h4: np.ndarray) -> int:
    return int(np.searchsorted(_BIAS_EDGES, a_h4[0]) * 3 + np.searchsorted(_LIMIT_EDGES, a_h4[1]))


@dataclass(frozen=True)
class Batch:
    s: torch.Tensor  # shared state (critic input)
    o_h4: torch.Tensor
    o_m1: torch.Tensor  # M1 observation with the H4 action the M1 agent acted under
    a_h4: torch.Tensor
    a_m1: torch.Tensor
    r: torch.Tensor
    s2: torch.Tensor
    o_h4_2: torch.Tensor
    o_m1_2: torch.Tensor
    done: torch.Tensor  # 1 on a terminal transition (breach), 0 on truncation: bootstrapping continues
    h4_due_2: torch.Tensor  # 1 if the director decides again at the next state
    steps: torch.Tensor  # M1 steps from s to s2: 1, or the option's length for a semi-MDP H4 transition
    m1_due_2: torch.Tensor  # 1 if the executor decides at the next state (always, at the default M1 cadence)

    @staticmethod
    def cat(a: Batch, b: Batch) -> Batch:
        return Batch(*(torch.cat([x, y]) for x, y in zip(a.fields(), b.fields(), strict=True)))

    def fields(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f.name) for f in fields(Batch))


FIELDS = tuple(f.name for f in fields(Batch))


class JointReplayBuffer(RingBuffer):
    """Ring buffer of joint transitions; ``buf.fields[name]`` is a field's column block (a view, ``Batch`` names).

    :param capacity: transitions kept
    :param state_dim: shared-state size (critic input)
    :param h4_obs_dim: H4 observation size
    :param m1_obs_dim: M1 observation size
    """

    FIELDS = FIELDS

    def __init__(self, capacity: int, state_dim: int, h4_obs_dim: int, m1_obs_dim: int, act_dim: int = 2) -> None:
        widths = dict(s=state_dim, o_h4=h4_obs_dim, o_m1=m1_obs_dim, a_h4=act_dim, a_m1=act_dim, r=1,
                      s2=state_dim, o_h4_2=h4_obs_dim, o_m1_2=m1_obs_dim, done=1, h4_due_2=1, steps=1, m1_due_2=1)
        super().__init__(capacity, {f: widths[f] for f in FIELDS})
        self.bins = np.zeros(capacity, np.int8)

    def add(self, s, o_h4, o_m1, a_h4, a_m1, r: float, s2, o_h4_2, o_m1_2, done: bool, h4_due_2: bool,
            steps: int = 1, *, m1_due_2: bool = True) -> None:
        """One transition; ``r`` is the (discounted) reward summed over ``steps`` M1 steps."""
        p, f = self.pos, self.fields
        f["s"][p], f["o_h4"][p], f["o_m1"][p] = s, o_h4, o_m1
        f["a_h4"][p], f["a_m1"][p] = a_h4, a_m1
        f["r"][p, 0], f["done"][p, 0], f["h4_due_2"][p, 0] = r, float(done), float(h4_due_2)
        f["steps"][p, 0], f["m1_due_2"][p, 0] = steps, float(m1_due_2)
        f["s2"][p], f["o_h4_2"][p], f["o_m1_2"][p] = s2, o_h4_2, o_m1_2
        self.bins[p] = h4_bin(a_h4)
        self.pos = (p + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample_indices(self, batch: int, rng: np.random.Generator, balanced_h4: bool = False) -> np.ndarray:
        if not self.size:
            raise ValueError("cannot sample from an empty buffer")
        if not balanced_h4:
            return rng.integers(0, self.size, batch)
        bins = self.bins[: self.size]
        present = np.unique(bins)
        # equal share per H4 action bin present, then uniform within the bin
        which = rng.choice(present, batch)
        out = np.empty(batch, np.int64)
        for b in present:
            members = np.flatnonzero(bins == b)
            k = np.flatnonzero(which == b)
            out[k] = members[rng.integers(0, len(members), len(k))]
        return out

    def sample(self, batch: int, rng: np.random.Generator, balanced_h4: bool = False) -> Batch:
        rows = torch.from_numpy(self.data[self.sample_indices(batch, rng, balanced_h4)])
        return Batch(*rows.split(list(self.widths.values()), dim=1))

    def state_dict(self) -> dict[str, np.ndarray | int]:
        return super().state_dict() | {"bins": self.bins[: self.size].copy()}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.bins[: self.size] = d["bins"]
