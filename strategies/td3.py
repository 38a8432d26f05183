"""The single-agent TD3 baseline (``training.train_td3``) as a Backtrader strategy: one actor on the shared
state acts on every M1 bar through the same observations, action mapping, validator and broker core as
``training.env.ForexEnv``, so a checkpoint acts here exactly as it did in training."""

from __future__ import annotations

from pathlib import Path

from agents.td3.checkpoint import load_td3_actor, td3_manifest
from feeds.paths import REPO_ROOT
from risk.actions import single_target
from strategies.base import AgentStrategy

DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "td3_eurusd"


class Td3Agent(AgentStrategy):
    """:param checkpoint: folder with ``weights.pt`` + ``manifest.json`` (default: checkpoints/td3_eurusd)"""

    default_checkpoint = DEFAULT_CHECKPOINT

    @classmethod
    def read_manifest(cls, path: Path) -> dict:
        return td3_manifest(path)

    def load(self, path: Path) -> dict:
        self.actor, manifest = load_td3_actor(path)
        return manifest

    def decide(self, i: int, acct) -> None:
        a = self.actor(self.obs.shared(i, acct, acct.guard))
        self.trade_to(single_target(float(a[0]), float(a[1]), self.obs.max_lots, self.inst, current=acct.lots), i)
