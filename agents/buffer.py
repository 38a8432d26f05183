"""One replay buffer of joint H4 + M1 transitions, preallocated NumPy (no per-step allocation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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

    @staticmethod
    def cat(a: Batch, b: Batch) -> Batch:
        return Batch(*(torch.cat([x, y]) for x, y in zip(a.fields(), b.fields(), strict=True)))

    def fields(self) -> tuple[torch.Tensor, ...]:
        return (self.s, self.o_h4, self.o_m1, self.a_h4, self.a_m1, self.r, self.s2, self.o_h4_2, self.o_m1_2,
                self.done, self.h4_due_2, self.steps)


class JointReplayBuffer:
    """Ring buffer of joint transitions.

    :param capacity: transitions kept
    :param state_dim: shared-state size (critic input)
    :param h4_obs_dim: H4 observation size
    :param m1_obs_dim: M1 observation size
    """

    FIELDS = ("s", "o_h4", "o_m1", "a_h4", "a_m1", "r", "s2", "o_h4_2", "o_m1_2", "done", "h4_due_2", "steps")
    """in ``Batch`` order; each is a column block of one float32 array, so a sample is one row gather"""

    def __init__(self, capacity: int, state_dim: int, h4_obs_dim: int, m1_obs_dim: int, act_dim: int = 2) -> None:
        self.capacity = capacity
        widths = dict(s=state_dim, o_h4=h4_obs_dim, o_m1=m1_obs_dim, a_h4=act_dim, a_m1=act_dim, r=1,
                      s2=state_dim, o_h4_2=h4_obs_dim, o_m1_2=m1_obs_dim, done=1, h4_due_2=1, steps=1)
        self.widths = [widths[f] for f in self.FIELDS]
        self.data = np.zeros((capacity, sum(self.widths)), np.float32)
        self._bind_views()
        self.steps[:] = 1.0
        self.bins = np.zeros(capacity, np.int8)
        self.pos = 0
        self.size = 0

    def _bind_views(self) -> None:
        col = 0
        for name, w in zip(self.FIELDS, self.widths, strict=True):
            setattr(self, name, self.data[:, col:col + w])  # a view: writes go to ``data``
            col += w

    def __getstate__(self) -> dict:  # pickle / deepcopy: ``data`` once, views rebuilt on load
        return {k: v for k, v in self.__dict__.items() if k not in self.FIELDS}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_views()

    def __len__(self) -> int:
        return self.size

    def add(self, s, o_h4, o_m1, a_h4, a_m1, r: float, s2, o_h4_2, o_m1_2, done: bool, h4_due_2: bool,
            steps: int = 1) -> None:
        """One transition; ``r`` is the (discounted) reward summed over ``steps`` M1 steps."""
        p = self.pos
        self.steps[p, 0] = steps
        self.s[p], self.o_h4[p], self.o_m1[p] = s, o_h4, o_m1
        self.a_h4[p], self.a_m1[p] = a_h4, a_m1
        self.r[p, 0], self.done[p, 0], self.h4_due_2[p, 0] = r, float(done), float(h4_due_2)
        self.s2[p], self.o_h4_2[p], self.o_m1_2[p] = s2, o_h4_2, o_m1_2
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
        return Batch(*rows.split(self.widths, dim=1))

    def state_dict(self) -> dict[str, np.ndarray | int]:
        names = (*self.FIELDS, "bins")
        return {**{k: getattr(self, k)[: self.size].copy() for k in names}, "pos": self.pos, "size": self.size}

    def load_state_dict(self, d: dict) -> None:
        n = int(d["size"])
        if n > self.capacity:
            raise ValueError(f"saved buffer holds {n} transitions, capacity is {self.capacity}")
        for k, v in d.items():
            if k not in ("pos", "size"):
                getattr(self, k)[:n] = v
        self.pos, self.size = int(d["pos"]), n
