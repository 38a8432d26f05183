"""Machinery the agent systems share (stable-baselines3's ``common/``): one GAE with the timeout bootstrap and
gamma^k for macro-actions (``gae``), and a preallocated ring buffer of named float32 fields (``replay``)."""

from agents.common.gae import gae
from agents.common.replay import RingBuffer

__all__ = ["RingBuffer", "gae"]
