"""The MTF-MARL agents as a Backtrader strategy: the H4 director decides on each completed H4 bar, the M1 executor on
every M1 bar (or at the cadence its checkpoint was trained with: ``agents.mtf_marl.cadence``), through the same
observations, action mapping, validator and broker core as the training env (``training.hier_env``), so a checkpoint
acts here exactly as it did in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from agents.mtf_marl.cadence import director_due, executor_due
from agents.mtf_marl.checkpoint import load_mtf_marl_actors, mtf_marl_manifest
from agents.mtf_marl.learner import h4_changes
from feeds.calendar import count_trading_days
from feeds.paths import REPO_ROOT
from risk.actions import director_decision, joint_target_for
from strategies.base import AgentStrategy

DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "mtf_marl_eurusd"


class MtfMarl(AgentStrategy):
    """:param checkpoint: folder with ``weights.pt`` + ``manifest.json`` (default: the committed one)"""

    default_checkpoint = DEFAULT_CHECKPOINT

    @classmethod
    def read_manifest(cls, path: Path) -> dict:
        return mtf_marl_manifest(path)

    def load(self, path: Path) -> dict:
        self.h4_actor, self.m1_actor, manifest = load_mtf_marl_actors(path)
        self.h4_pos = self.ctx.h4_pos.tolist()
        self.a_h4: np.ndarray | None = None
        self.m1_acted = False
        self.limit = self.bias = 0.0
        self.decisions: list[tuple[int, float, float]] = []  # (minute, limit, bias) at each H4 decision
        # (minute, target fraction, limit) of every M1 decision that changed either: the decisions at M1
        # resolution, without a row per bar (a live process must not grow with the bars it has seen)
        self.entries: list[tuple[int, float, float]] = []
        self.attempted_violations = self.violations = 0
        return manifest

    def decide(self, i: int, acct) -> None:
        director = director_due(self.h4_pos, i, self.a_h4 is None)
        if director:  # an H4 bar completed: the director acts
            self.a_h4 = self.h4_actor(self.obs.h4(i, acct, acct.guard))
            self.bias, self.limit = director_decision(self.a_h4)
            self.decisions.append((int(self.ctx.minutes[i]), self.limit, self.bias))
        env = self.manifest["env_config"]
        if not executor_due(self.ctx.minutes, i, env.get("exec_minutes", 1), not self.m1_acted, director):
            return  # between the executor's decisions nothing is ordered (the env does the same)
        self.m1_acted = True
        a_m1 = self.m1_actor(self.obs.m1(i, acct, self.limit, self.bias))
        jt = joint_target_for(env.get("action_mode", "free"), (float(self.a_h4[0]), float(self.a_h4[1])),
                              (float(a_m1[0]), float(a_m1[1])), self.obs.max_lots, self.inst, current=acct.lots,
                              held_bars=self.obs.held_bars(i, acct), min_hold_bars=env.get("min_hold_bars", 0))
        self.attempted_violations += jt.violation
        self.violations += abs(jt.fraction) > jt.limit + 1e-9
        if not self.entries or self.entries[-1][1:] != (jt.fraction, jt.limit):
            self.entries.append((int(self.ctx.minutes[i]), jt.fraction, jt.limit))
        self.trade_to(jt.lots, i)

    def coordination(self) -> dict[str, float | int]:
        """Director and executor together; per day = per FX trading day with a director decision."""
        minutes = pd.to_datetime([d[0] for d in self.decisions], unit="m", utc=True)
        days = max(1, count_trading_days(minutes))
        changes = h4_changes([(lim, b) for _, lim, b in self.decisions])
        return {"h4_decisions": len(self.decisions), "h4_changes_per_day": changes / days,
                "m1_constraint_violations": int(self.violations),
                "m1_attempted_violations": int(self.attempted_violations)}
