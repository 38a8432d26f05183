"""A preallocated ring buffer of named float32 fields: one array, each field a column block, a sample one row gather.

A learner declares its fields instead of writing another buffer: the MTF-MARL buffer (``agents.mtf_marl.buffer``)
and the four-agent DQN's (``agents.four_agent.dqn``) are both this one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


class RingBuffer:
    """:param capacity: rows kept (the oldest are overwritten)
    :param widths: field name -> width (values per row), in storage order"""

    def __init__(self, capacity: int, widths: Mapping[str, int]) -> None:
        if capacity < 1 or not widths or min(widths.values()) < 1:
            raise ValueError(f"capacity and every width must be >= 1, got {capacity}, {dict(widths)}")
        self.capacity = capacity
        self.widths = dict(widths)
        self.data = np.zeros((capacity, sum(self.widths.values())), np.float32)
        self.fields: dict[str, np.ndarray] = {}
        self._bind_views()
        self.pos = 0
        self.size = 0

    def _bind_views(self) -> None:
        col = 0
        for name, w in self.widths.items():
            self.fields[name] = self.data[:, col:col + w]  # a view: writes go to ``data``
            col += w

    def __getstate__(self) -> dict:  # pickle / deepcopy: ``data`` once, views rebuilt on load
        return {k: v for k, v in self.__dict__.items() if k != "fields"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.fields = {}
        self._bind_views()

    def __len__(self) -> int:
        return self.size

    def add_many(self, rows: Mapping[str, np.ndarray]) -> None:
        """Append n rows at once: ``rows[name]`` is (n, width) or (n,) for width 1; every field is required."""
        if set(rows) != set(self.widths):
            raise KeyError(f"rows must give exactly the fields {sorted(self.widths)}, got {sorted(rows)}")
        n = len(next(iter(rows.values())))
        if n > self.capacity:  # only the newest ``capacity`` rows survive: write them where row-by-row adds would
            self.pos = int((self.pos + n - self.capacity) % self.capacity)
            rows = {k: np.asarray(v)[-self.capacity:] for k, v in rows.items()}
            n = self.capacity
        idx = (self.pos + np.arange(n)) % self.capacity
        for name, w in self.widths.items():
            v = np.asarray(rows[name], dtype=np.float32).reshape(n, w)
            self.fields[name][idx] = v
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``batch`` rows drawn uniformly with replacement (seeded by ``rng``), split by field."""
        if not self.size:
            raise ValueError("cannot sample from an empty buffer")
        rows = torch.from_numpy(self.data[rng.integers(0, self.size, batch)])
        return dict(zip(self.widths, rows.split(list(self.widths.values()), dim=1), strict=True))

    def state_dict(self) -> dict[str, np.ndarray | int]:
        """The rows held (in storage order) and the write position: enough to resume exactly."""
        return {"data": self.data[:self.size].copy(), "pos": self.pos, "size": self.size}

    def load_state_dict(self, d: Mapping[str, np.ndarray | int]) -> None:
        n = int(d["size"])
        data = np.asarray(d["data"])
        if n > self.capacity or data.shape != (n, self.data.shape[1]):
            raise ValueError(f"saved buffer of {data.shape} rows/values does not fit capacity {self.capacity} x "
                             f"{self.data.shape[1]}")
        self.data[:n] = data
        self.pos, self.size = int(d["pos"]), n
