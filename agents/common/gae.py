"""Generalised advantage estimation (Schulman et al. 2016), one implementation for every on-policy learner.

Samples are *decisions*. A plain per-step PPO has one decision per env step (``discounts = gamma``); an agent that
acts every k-th step takes a *macro-action* that lasts until its next decision (Xiao, Tan and Amato 2022,
asynchronous multi-agent actor-critic with macro-actions), and its sample carries

* ``rewards[t]`` = sum_{m < k_t} gamma^m r_{t+m}: the per-step rewards of the k_t steps the macro-action ran,
  discounted from its start;
* ``discounts[t]`` = gamma^{k_t};
* ``next_values[t]``: the value at the state where the next decision is taken, or, where the sequence is cut
  without a terminal state (end of the data window, end of the rollout), the value at the state where it was cut:
  SB3's *timeout bootstrap* (``compute_returns_and_advantage`` adds gamma V(terminal_obs) to a truncated reward);
* ``terminated[t]``: a terminal state (a drawdown breach) ended the macro-action: nothing is bootstrapped;
* ``last[t]``: the sample is the last of its sequence (an episode, an agent, an env): the recursion stops there.

Then ``delta_t = rewards_t + discounts_t * next_values_t * (1 - terminated_t) - values_t`` and
``A_t = delta_t + discounts_t * lam * (1 - terminated_t) * (1 - last_t) * A_{t+1}``: gamma is applied per
primitive step (gamma^{k_t}), lambda per decision. With every k_t = 1 this is exactly SB3's and CleanRL's GAE;
with lam = 1 the return ``A_t + values_t`` is the discounted sum of every primitive reward to the end of the
sequence plus the discounted bootstrap (``tests/test_four_agent_training.py`` checks both).
"""

from __future__ import annotations

import numpy as np


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, discounts: np.ndarray,
        terminated: np.ndarray, last: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, returns) of sequences of decisions laid end to end in time order (module docstring).

    :param rewards: discounted reward of each decision's macro-action
    :param values: V(s_t) at each decision
    :param next_values: V at the next decision's state, or at the state where the sequence was cut
    :param discounts: gamma^{k_t}, k_t the primitive steps the macro-action ran
    :param terminated: a terminal state ended the macro-action (no bootstrap)
    :param last: the decision is the last of its sequence
    :param lam: GAE lambda, per decision
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (rewards, values, next_values, discounts, terminated, last)]
    n = len(arrays[0])
    if any(a.shape != (n,) for a in arrays):
        raise ValueError(f"gae takes 1-D arrays of one length, got shapes {[a.shape for a in arrays]}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    r, v, nv, disc, term, end = arrays
    if n and (disc.min() < 0.0 or disc.max() > 1.0):
        raise ValueError("discounts (gamma^k) must be in [0, 1]")
    alive = 1.0 - term
    delta = r + disc * nv * alive - v
    carry = disc * lam * alive * (1.0 - end)
    adv = np.empty(n)
    a = 0.0
    for t in range(n - 1, -1, -1):  # the one sequential step; everything else is vectorised
        a = delta[t] + carry[t] * a
        adv[t] = a
    return adv, adv + v
