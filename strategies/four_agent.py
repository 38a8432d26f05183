"""The four-agent system as a Backtrader strategy: Regime and Structure at each completed M30 bar, Tactical at each
completed M5 bar, Risk at every M1 bar with a proposed change or an open position, through the same decision rule
(``agents.four_agent.acting.JointBook``: consensus, then drawdown state and the pre-trade validator), the same
batch-1 acting (``Controller``, traced forwards), observations and broker core as the training env
(``training.four_agent_env``), so a checkpoint acts here exactly as in its validation.

Feeds: M1 + M5 + H4 + M30 (``timeframes``: data3 is M30). The agents read the four-agent matrices: precomputed once
over the backtest's bars (``features.matrices.build_matrices``, views per bar) when the backtest gives a
precomputed context, else ``IncrementalMatrices`` fed with each M1 bar in ``bar()`` (live, a user's own Cerebro;
bit-identical, ``tests/test_matrices.py``). The aggregator's stop-loss and take-profit ride on each order as broker
levels (``sl=``/``tp=``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import torch

from agents.four_agent.acting import Controller, JointBook
from agents.four_agent.checkpoint import four_agent_manifest, load_four_agent
from agents.four_agent.config import AGENTS, RISK_ACTIONS, TACTICAL_ACTIONS
from agents.four_agent.hub import VISIBLE
from features.engine import N_FEATURES
from features.matrices import IncrementalMatrices, MarketMatrices, MatrixSpec, build_matrices
from feeds.macro import load_macro
from feeds.paths import REPO_ROOT
from risk.consensus import REGIME_CLASSES, ConsensusConfig
from strategies.base import AgentStrategy

DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "four_agent_eurusd"
_EPOCH_NUM = bt.date2num(dt.datetime(1970, 1, 1))
_NS_PER_MIN = 60_000_000_000


class FourAgent(AgentStrategy):
    """:param checkpoint: folder with ``weights.pt`` + ``manifest.json`` (default: checkpoints/four_agent_eurusd)
    :param matrices: precomputed ``MarketMatrices`` over exactly the M1 feed's bars (default: built here from the
        precomputed context's bars; ignored on the incremental path)
    :param torch_threads: torch's intra-op threads for the batch-1 forwards (process-wide; 0 leaves torch's
        setting). One by default: at batch 1 a second thread only adds synchronisation, and with other work on the
        cores it made each forward ~20x slower (a year's backtest 23 min instead of minutes)"""

    timeframes = (5, 240, 30)
    default_checkpoint = DEFAULT_CHECKPOINT
    params = (("matrices", None), ("torch_threads", 1))

    @classmethod
    def read_manifest(cls, path: Path) -> dict:
        return four_agent_manifest(path)

    def load(self, path: Path) -> dict:
        if self.p.torch_threads:
            torch.set_num_threads(int(self.p.torch_threads))
        self.nets, manifest = load_four_agent(path)
        spec = MatrixSpec(**{k: manifest["matrix_spec"][k] for k in MatrixSpec.__dataclass_fields__})
        self.book = JointBook(self.inst, ConsensusConfig(**manifest["consensus"]))
        self.ctl = Controller(self.nets, 1, explore=False, traced=True,
                              risk_margin=float(manifest["dqn_config"]["override_margin"]))
        self.mm: MarketMatrices | None = None
        self.inc: IncrementalMatrices | None = None
        if self._incremental:
            self.inc = IncrementalMatrices(load_macro(), spec)
            self._new = (False, False)
        else:
            c = self.ctx
            self.mm = self.p.matrices if self.p.matrices is not None else build_matrices(
                pd.DataFrame({"open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": 0.0},
                             index=c.index), load_macro(), spec)
            if len(self.mm) != len(c):
                raise ValueError(f"matrices over {len(self.mm)} bars for an M1 feed of {len(c)}")
        self._one = np.zeros(1, np.int64)
        # what the run reports (agents_summary, regime.png, risk_overrides.png): counts, and rows only at changes
        self.counts = dict.fromkeys(AGENTS, 0)
        self.risk_counts = dict.fromkeys(RISK_ACTIONS, 0)
        self.regime_bars = dict.fromkeys(REGIME_CLASSES, 0)
        self.regime_decisions: list[tuple[int, int, float]] = []  # (minute, class, confidence) at each decision
        self.targets: list[tuple[int, float, float, float]] = []  # (minute, proposed, decided, validated) fractions
        self.overrides: list[tuple[int, int]] = []  # (minute, risk action) where the Risk agent changed the target
        self.tactical_counts = dict.fromkeys(TACTICAL_ACTIONS, 0)
        self.reads = 0
        self.checks = {"risk_loosened": 0, "validator_exceeded": 0, "position_exceeded": 0, "checked_bars": 0}
        self._last_verdict: float | None = None
        return manifest

    def bar(self) -> int:
        """The base class's bar, and on the incremental path the matrices are given the bar too (once)."""
        i = super().bar()
        if self.inc is not None and len(self.inc) <= i:
            d = self.m1
            minute = round((d.datetime[0] - _EPOCH_NUM) * 1440.0)
            self._new = self.inc.append(minute * _NS_PER_MIN, d.open[0], d.high[0], d.low[0], d.close[0])
        return i

    @property
    def bias(self) -> float:
        """The Structure agent's direction bias in force (NaN before its first decision): with ``limit``, the
        analogue of the MTF-MARL director's decision that ``reports.stress`` records."""
        return float("nan") if self.book.structure is None else self.book.structure[0]

    @property
    def limit(self) -> float:
        """The largest position the consensus now allows, as a fraction of full size: Structure's size x the
        regime's scale, 0 when either confidence gate is shut (``risk.consensus``; NaN before the first decision)."""
        book, cfg = self.book, self.book.consensus
        if book.structure is None or book.regime_class < 0:
            return float("nan")
        _, size, conf = book.structure
        regime = REGIME_CLASSES[book.regime_class] if book.regime_confidence >= cfg.min_regime_confidence \
            else "transition"
        return 0.0 if conf < cfg.min_structure_confidence else size * cfg.regime_scale[regime]

    def _matrices(self, i: int):
        """(ready, new M5, new M30, matrices) at bar ``i``."""
        if self.mm is not None:
            mm = self.mm
            return mm.ready_at(i), bool(mm.new_m5[i]), bool(mm.new_m30[i]), mm.at(i)
        return self.inc.ready, self._new[0], self._new[1], self.inc.matrices()

    def decide(self, i: int, acct) -> None:
        ready, new5, new30, m = self._matrices(i)
        if not ready:
            return
        book, ctl, one, obs = self.book, self.ctl, self._one, self.obs
        self._check_position(acct.lots)
        minute = int(self.ctx.minutes[i])
        for agent in book.due(new5, new30):
            self.counts[agent] += 1
            self.reads += len(VISIBLE[agent])
            if agent == "regime":
                book.set_regime(ctl.regime(one, m.regime[None], m.regime_mask[None]).action[0])
                self.regime_decisions.append((minute, book.regime_class, book.regime_confidence))
            elif agent == "structure":
                book.set_structure(ctl.structure(one, m.structure[None], m.structure_mask[None]).action[0])
            else:
                a = int(ctl.tactical(one, m.tactical[None], m.tactical_mask[None],
                                     book.tactical_mask(acct.lots)[None]).action[0])
                book.set_tactical(a)
                self.tactical_counts[TACTICAL_ACTIONS[a]] += 1
        atr = float(self.ctx.h4_atr[i])
        state = book.account_state(acct, obs.max_lots, atr)
        p = book.propose(state)
        risk = 0
        if p.risk_due:
            account = obs.shared(i, acct, acct.guard)[N_FEATURES:]
            risk = int(ctl.risk(one, book.risk_features(p, obs.max_lots)[None], account[None]).action[0])
            self.counts["risk"] += 1
            self.reads += len(VISIBLE["risk"])
            self.risk_counts[RISK_ACTIONS[risk]] += 1
        decision = book.decide(state, risk)
        verdict = book.guard(decision, self.validator, acct, atr)
        order = book.order(decision, verdict, acct.lots)
        self.target_of_last_decision = verdict.lots
        if order is not None:
            lots, sl, tp = order
            self.target_lots(lots, sl=sl, tp=tp)
        book.end_bar()
        self._record(minute, p.lots, decision.lots, verdict.lots, risk, obs.max_lots)

    def _check_position(self, lots: float) -> None:
        """The position after the last decision's fills never exceeds what the aggregator and validator allowed."""
        v = self._last_verdict
        if v is None:
            return
        self.checks["checked_bars"] += 1
        self.checks["position_exceeded"] += abs(lots) > abs(v) + 1e-9 or lots * v < 0

    def _record(self, minute: int, proposed: float, decided: float, validated: float, risk: int,
                max_lots: float) -> None:
        self.regime_bars[REGIME_CLASSES[self.book.regime_class]] += 1
        self.checks["risk_loosened"] += abs(decided) > abs(proposed) + 1e-9 or decided * proposed < 0
        self.checks["validator_exceeded"] += abs(validated) > abs(decided) + 1e-9 or validated * decided < 0
        self._last_verdict = validated
        if decided != proposed:
            self.overrides.append((minute, risk))
        f = 1.0 / max_lots if max_lots > 0 else 0.0
        row = (minute, proposed * f, decided * f, validated * f)
        if not self.targets or self.targets[-1][1:] != row[1:]:
            self.targets.append(row)

    def agents_summary(self) -> dict:
        """The run's ``agents`` block of summary.json (see ``reports.output``)."""
        total = max(1, sum(self.regime_bars.values()))
        published = dict(self.counts)
        return {"decisions": dict(self.counts), "regime_share": {c: n / total for c, n in self.regime_bars.items()},
                "risk": dict(self.risk_counts), "risk_overrides": len(self.overrides),
                "tactical": dict(self.tactical_counts),
                "messages": {"published": published, "total_published": sum(published.values()),
                             "slots_read": self.reads},
                "constraints": dict(self.checks), "regime_mode": self.manifest.get("regime", {}).get("mode")}
