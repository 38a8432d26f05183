"""Plain torch networks for the MTF-MARL agents, and a NumPy copy of an actor for fast batch-1 acting."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Deterministic policy: observation -> action in [-1, 1]^act_dim (tanh)."""

    def __init__(self, obs_dim: int, act_dim: int = 2, hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.net = mlp(obs_dim, act_dim, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class TwinCritic(nn.Module):
    """Two joint Q-functions Q(s, a_h4, a_m1) (TD3's clipped double Q)."""

    def __init__(self, state_dim: int, h4_act_dim: int = 2, m1_act_dim: int = 2,
                 hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        d = state_dim + h4_act_dim + m1_act_dim
        self.q1 = mlp(d, 1, hidden)
        self.q2 = mlp(d, 1, hidden)

    def forward(self, s: torch.Tensor, a_h4: torch.Tensor, a_m1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([s, a_h4, a_m1], dim=1)
        return self.q1(x), self.q2(x)

    def q1_only(self, s: torch.Tensor, a_h4: torch.Tensor, a_m1: torch.Tensor) -> torch.Tensor:
        return self.q1(torch.cat([s, a_h4, a_m1], dim=1))


class NumpyActor:
    """The same function as an ``Actor``, in float64 NumPy: ~10x less overhead than torch at batch 1,
    which matters when a backtest asks for a decision on every M1 bar."""

    def __init__(self, actor: Actor) -> None:
        linears = [m for m in actor.net if isinstance(m, nn.Linear)]
        self.weights = [m.weight.detach().double().numpy().T.copy() for m in linears]
        self.biases = [m.bias.detach().double().numpy().copy() for m in linears]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float64)
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            if k < last:
                np.maximum(x, 0.0, out=x)
        return np.tanh(x)
