"""Acting: the four agents' decisions at one M1 bar, shared by the four-agent env and the Backtrader strategy.

Two pieces, so that a checkpoint decides identically in training, validation, backtests and live trading:

* ``JointBook`` (pure Python, no torch): the actions in force and the rule around them, for one account. Who acts
  at a bar is ``agents.four_agent.hub.acting_agents`` (Regime and Structure at a completed M30 bar, Tactical at a
  completed M5 bar, Risk where the consensus proposes a change or a position is open), with one addition: at the
  first decision bar of an episode (or of a backtest) Regime, Structure and Tactical act, since no action is in
force yet (Risk still acts only where it is due). The
  proposal is ``risk.consensus.propose`` with the Risk action ``allow``; the final decision is
  ``risk.consensus.decide`` with the Risk agent's action; ``risk.consensus.guarded_target`` (drawdown state, then
  the pre-trade validator) gives the lots to trade; the aggregator's stop-loss and take-profit ride on that order
  as real broker levels (``order``). Between Tactical decisions its action counts as ``hold``. ATR = the H4 ATR
  (``features.context``), the validator's, so a stop hit from a fill loses the validator's 2-ATR worst case.
* ``Controller`` (torch): the networks and the communication hub for B accounts at once (B = vectorised envs in a
  rollout, 1 in a backtest). Each agent runs *one* forward per decision (``step``: action, log-prob and message;
  CleanRL's ``get_action_and_value``, shared with the MAPPO update) and publishes its message, in the hub's order
  regime -> structure -> tactical -> risk. With ``explore`` the policies sample (Beta / Categorical) and Risk is
  epsilon-greedy; without, each takes its mode (Beta mean, arg-max, greedy Q): evaluation, backtests, live.
  The Regime network is frozen (pretrained, ``training.pretrain_regime``) and acts by its arg-max class; its
  confidence is its largest probability.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from agents.four_agent.config import AGENTS, RISK_ACTIONS, RISK_PROPOSAL_FIELDS, TACTICAL_ACTIONS
from agents.four_agent.hub import HubState, HubView, acting_agents
from agents.four_agent.networks import (
    FourAgentNetworks,
    RegimeObs,
    RiskObs,
    StructureNet,
    StructureObs,
    TacticalObs,
)
from brokers.account import AccountView
from brokers.instruments import Instrument
from risk.consensus import (
    DEFAULT_CONSENSUS,
    REGIME_CLASSES,
    AccountState,
    AgentActions,
    ConsensusConfig,
    Decision,
    decide,
    guarded_target,
    propose,
)
from risk.validator import PreTradeValidator, Verdict

HOLD = TACTICAL_ACTIONS.index("hold")
ALLOW = RISK_ACTIONS.index("allow")
_SLOT = {name: k for k, name in enumerate(RISK_PROPOSAL_FIELDS)}
_REGIME_SLOTS = [_SLOT[f"regime_{c}"] for c in REGIME_CLASSES]
_TACTICAL_SLOTS = [_SLOT[f"tactical_{a}"] for a in TACTICAL_ACTIONS]
_STRUCTURE_SLOTS = [_SLOT["structure_bias"], _SLOT["structure_size"], _SLOT["structure_confidence"]]
_EXIT_REDUCE = [TACTICAL_ACTIONS.index("exit"), TACTICAL_ACTIONS.index("reduce")]


class Proposal(NamedTuple):
    """The consensus before the Risk agent at one bar."""

    lots: float  # proposed target (Risk ``allow``)
    cap: float
    branch: str
    current: float  # position now, lots
    risk_due: bool  # the Risk agent acts at this bar


class JointBook:
    """The agents' actions in force on one account and the decision rule around them (module docstring).

    :param inst: the traded instrument
    :param consensus: the aggregator's thresholds (``risk.consensus.ConsensusConfig``)
    """

    def __init__(self, inst: Instrument, consensus: ConsensusConfig = DEFAULT_CONSENSUS) -> None:
        self.inst, self.consensus = inst, consensus
        self.reset()

    def reset(self) -> None:
        self.regime_probs = np.zeros(len(REGIME_CLASSES))
        self.regime_class = -1  # none yet
        self.regime_confidence = 0.0
        self.structure: tuple[float, float, float] | None = None
        self.tactical = HOLD  # in force at this bar: the decision taken at it, else hold
        self.last_tactical = HOLD  # the last Tactical decision (for the critic's state)

    def due(self, new_m5: bool, new_m30: bool) -> tuple[str, ...]:
        """The upper agents acting at this bar, in order (Risk is decided after the proposal)."""
        first = self.structure is None
        return acting_agents(new_m5 or first, new_m30 or first, False, False)

    def set_regime(self, probs: np.ndarray) -> None:
        """The Regime agent's class probabilities: its class is the arg-max, its confidence the largest one."""
        p = np.asarray(probs, dtype=np.float64)
        total = float(p.sum())
        if p.shape != (len(REGIME_CLASSES),) or not total > 0 or (p < 0).any():
            raise ValueError(f"regime probabilities must be {len(REGIME_CLASSES)} non-negative values, got {p}")
        self.regime_probs = p / total
        self.regime_class = int(np.argmax(p))
        self.regime_confidence = float(self.regime_probs[self.regime_class])

    def set_structure(self, action: np.ndarray) -> None:
        """(bias in [-1, 1], size in [0, 1], confidence in [0, 1]), clipped to those ranges."""
        b, s, c = (float(x) for x in action)
        self.structure = (min(1.0, max(-1.0, b)), min(1.0, max(0.0, s)), min(1.0, max(0.0, c)))

    def set_tactical(self, action: int) -> None:
        if not 0 <= int(action) < len(TACTICAL_ACTIONS):
            raise ValueError(f"tactical action {action} outside 0..{len(TACTICAL_ACTIONS) - 1}")
        self.tactical = self.last_tactical = int(action)

    def end_bar(self) -> None:
        """After the bar's decision: an entry is an event, so the Tactical action in force becomes ``hold``."""
        self.tactical = HOLD

    def tactical_mask(self, current_lots: float) -> np.ndarray:
        """Allowed Tactical actions: flat, ``exit`` and ``reduce`` would be ``hold`` under another name."""
        m = np.ones(len(TACTICAL_ACTIONS), bool)
        if current_lots == 0:
            m[_EXIT_REDUCE] = False
        return m

    def actions(self, risk: int = ALLOW) -> AgentActions:
        if self.structure is None or self.regime_class < 0:
            raise RuntimeError("no Regime or Structure action in force yet: the first decision bar must run them")
        b, s, c = self.structure
        return AgentActions(REGIME_CLASSES[self.regime_class], self.regime_confidence, b, s, c,
                            TACTICAL_ACTIONS[self.tactical], RISK_ACTIONS[risk])

    @staticmethod
    def account_state(acct: AccountView, max_lots: float, atr: float) -> AccountState:
        return AccountState(acct.lots, max_lots, acct.equity, acct.bid, acct.spread, atr)

    def propose(self, state: AccountState) -> Proposal:
        lots, cap, branch = propose(self.actions(), state, self.inst, self.consensus)
        current = self.inst.round_lots(state.current_lots)
        due = "risk" in acting_agents(False, False, lots != current, current != 0)
        return Proposal(lots, cap, branch, current, due)

    def risk_features(self, p: Proposal, max_lots: float) -> np.ndarray:
        """The Risk agent's view of the proposal, by the named slots of ``RISK_PROPOSAL_FIELDS``."""
        out = np.zeros(len(RISK_PROPOSAL_FIELDS), np.float32)
        out[_REGIME_SLOTS] = self.regime_probs
        out[_SLOT["regime_confidence"]] = self.regime_confidence
        if self.structure is not None:
            out[_STRUCTURE_SLOTS] = self.structure
        out[_TACTICAL_SLOTS[self.tactical]] = 1.0
        if max_lots > 0:
            out[_SLOT["proposed_position"]] = p.lots / max_lots
            out[_SLOT["current_position"]] = p.current / max_lots
        return out

    def decide(self, state: AccountState, risk: int = ALLOW) -> Decision:
        return decide(self.actions(risk), state, self.inst, self.consensus)

    @staticmethod
    def guard(decision: Decision, validator: PreTradeValidator | None, acct: AccountView, atr: float) -> Verdict:
        """The hard rules after the agents: drawdown state, then the pre-trade validator."""
        return guarded_target(decision, validator, acct, atr)

    @staticmethod
    def order(decision: Decision, verdict: Verdict, current: float) -> tuple[float, float | None, float | None] | None:
        """(lots, stop-loss, take-profit) to send, or None when the position stays. The aggregator's levels go with
        the order when the validated target is on the decision's side (a shrink keeps them; a flat target has
        none); a held position keeps the levels it was opened with."""
        if verdict.lots == current:
            return None
        if verdict.lots != 0 and verdict.lots * decision.lots > 0:
            return verdict.lots, decision.stop_loss, decision.take_profit
        return verdict.lots, None, None


# ------------------------------------------------------------------ torch side
class HubRead(NamedTuple):
    """What an agent read from the hub at its decision (NumPy copies, stored with rollout samples)."""

    messages: np.ndarray  # (b, 4, M)
    visible: np.ndarray  # (b, 4) bool
    memory: np.ndarray  # (b, S)

    def torch(self) -> HubView:
        return HubView(torch.from_numpy(self.messages), torch.from_numpy(self.visible), torch.from_numpy(self.memory))


class Acted(NamedTuple):
    """One agent's decision for some rows of the batch."""

    action: np.ndarray  # (b, 3) structure, (b,) tactical / risk, (b, 4) regime class probabilities
    log_prob: np.ndarray | None  # (b,) under the sampling policy; None when not sampled
    read: HubRead | None  # the hub view it acted on (None for Regime: it reads nothing)
    message: np.ndarray | None = None  # (b, M) Regime's published message when exploring (rollouts log it)


class _RegimeFwd(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x, m)
        return out.probs, out.message


class _StructureFwd(_RegimeFwd):
    def forward(self, x, m, msg, vis, mem):  # type: ignore[override]
        out = self.net(StructureObs(x, m, HubView(msg, vis, mem)))
        return out.alpha / (out.alpha + out.beta), out.message


class _TacticalFwd(_RegimeFwd):
    def forward(self, x, m, msg, vis, mem, am):  # type: ignore[override]
        out = self.net(TacticalObs(x, m, HubView(msg, vis, mem), am))
        return out.logits, out.message


class _RiskFwd(_RegimeFwd):
    def forward(self, p, a, msg, vis, mem):  # type: ignore[override]
        out = self.net(RiskObs(p, a, HubView(msg, vis, mem)))
        return out.q, out.message


class _PublishFwd(nn.Module):
    def __init__(self, hub: nn.Module, agent: str) -> None:
        super().__init__()
        self.hub, self.agent = hub, agent

    def forward(self, messages, present, memory, message):  # type: ignore[override]
        return tuple(self.hub.publish(HubState(messages, present, memory), self.agent, message))


def _trace(module: nn.Module, *example: torch.Tensor) -> torch.jit.ScriptModule:
    """A frozen TorchScript trace of a deterministic forward at batch 1 (the same numbers as eager up to float
    rounding, about half its Python overhead)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the trace drops Python-side checks on values (e.g. an empty action mask)
        traced = torch.jit.freeze(torch.jit.trace(module.eval(), example, check_trace=False))
        for _ in range(3):  # the profiling executor specialises on its first runs
            traced(*example)
    return traced


def risk_greedy(q: torch.Tensor, margin: float) -> torch.Tensor:
    """The Risk agent's greedy action: ``allow`` (the consensus unchanged) unless the best action's Q-value exceeds
    Q(allow) by more than ``margin``. Most of its actions do nothing most of the time (``block`` on a hold keeps the
    position, as ``allow`` does), so their Q-values tie up to noise; without a margin the arg-max of a young
    Q-network flips between them from one update to the next, and a flip to ``block`` stops every entry."""
    best = q.argmax(dim=1)
    gain = q.gather(1, best[:, None])[:, 0] - q[:, ALLOW]
    return torch.where(gain > margin, best, torch.full_like(best, ALLOW))


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(x, requirements=["C", "W"]))


class Controller:
    """The four networks and the hub acting for ``batch`` accounts (module docstring).

    :param nets: the system's networks (evaluation mode is set here: no dropout while acting)
    :param batch: accounts acted for (rows of the hub state)
    :param explore: sample the policies and act epsilon-greedy (rollouts); else their modes
    :param traced: batch-1 TorchScript traces of the deterministic forwards and hub publications (not exploring)
    :param risk_margin: the Risk agent overrides ``allow`` only where the Q gain exceeds this (``risk_greedy``)
    """

    def __init__(self, nets: FourAgentNetworks, batch: int, explore: bool, traced: bool = False,
                 risk_margin: float = 0.0) -> None:
        if traced and (explore or batch != 1):
            raise ValueError("traced forwards are for deterministic acting at batch 1 (backtests, validation, live)")
        self.nets, self.batch, self.explore, self.risk_margin = nets, batch, explore, risk_margin
        nets.eval()
        self.state: HubState = nets.hub.initial_state(batch)
        self._fwd = self._traces() if traced else None

    def _traces(self) -> dict[str, torch.jit.ScriptModule]:
        n, c = self.nets, self.nets.config
        hub = (torch.zeros(1, 4, c.message_dim), torch.ones(1, 4, dtype=torch.bool), torch.zeros(1, c.memory_dim))
        r, s, t = c.regime, c.structure, c.tactical
        return {
            "regime": _trace(_RegimeFwd(n.regime), torch.zeros(1, r.seq_len, r.n_features),
                             torch.ones(1, r.seq_len, dtype=torch.bool)),
            "structure": _trace(_StructureFwd(n.structure), torch.zeros(1, s.seq_len, s.n_features),
                                torch.ones(1, s.seq_len, dtype=torch.bool), *hub),
            "tactical": _trace(_TacticalFwd(n.tactical), torch.zeros(1, t.seq_len, t.n_features),
                               torch.ones(1, t.seq_len, dtype=torch.bool), *hub,
                               torch.ones(1, len(TACTICAL_ACTIONS), dtype=torch.bool)),
            "risk": _trace(_RiskFwd(n.risk), torch.zeros(1, len(RISK_PROPOSAL_FIELDS)),
                           torch.zeros(1, c.risk.account_features), *hub),
            **{f"publish_{a}": _trace(_PublishFwd(n.hub, a), *n.hub.initial_state(1), torch.zeros(1, c.message_dim))
               for a in AGENTS},
        }

    def reset(self, rows: np.ndarray | None = None) -> None:
        """A fresh hub for these rows (all when None): a new episode."""
        fresh = self.nets.hub.initial_state(self.batch)
        if rows is None:
            self.state = fresh
            return
        w = torch.zeros(self.batch, dtype=torch.bool)
        w[torch.as_tensor(rows, dtype=torch.long)] = True
        self.state = HubState(torch.where(w[:, None, None], fresh.messages, self.state.messages),
                              torch.where(w[:, None], fresh.present, self.state.present),
                              torch.where(w[:, None], fresh.memory, self.state.memory))

    def _read(self, agent: str, rows: np.ndarray) -> tuple[HubView, HubRead | None]:
        """The hub view of ``agent`` in these rows, and (when exploring: rollouts store it) a NumPy copy."""
        v = self.nets.hub.view(self.state, agent)
        if len(rows) == self.batch and (self.batch == 1 or (rows == np.arange(self.batch)).all()):
            view = v
        else:
            idx = torch.as_tensor(rows, dtype=torch.long)
            view = HubView(v.messages[idx], v.visible[idx], v.memory[idx])
        if not self.explore:
            return view, None
        return view, HubRead(view.messages.numpy().copy(), view.visible.numpy().copy(), view.memory.numpy().copy())

    def read(self, agent: str, rows: np.ndarray) -> HubRead:
        """What ``agent`` would read now in these rows, without acting (NumPy copies)."""
        v = self._read(agent, rows)[0]
        return HubRead(v.messages.numpy().copy(), v.visible.numpy().copy(), v.memory.numpy().copy())

    def publish(self, agent: str, rows: np.ndarray, message: torch.Tensor) -> None:
        if self._fwd is not None:  # batch 1, its one row
            self.state = HubState(*self._fwd[f"publish_{agent}"](*self.state, message))
            return
        idx = torch.as_tensor(rows, dtype=torch.long)
        full = torch.zeros(self.batch, self.nets.hub.message_dim)
        full[idx] = message
        where = torch.zeros(self.batch, dtype=torch.bool)
        where[idx] = True
        self.state = self.nets.hub.publish(self.state, agent, full, where)

    @torch.inference_mode()
    def regime(self, rows: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> Acted:
        """The frozen Regime network: class probabilities (the book takes their arg-max and maximum)."""
        if self._fwd is not None:
            probs, message = self._fwd["regime"](_t(matrix), _t(mask))
        else:
            out = self.nets.regime(*RegimeObs(_t(matrix), _t(mask)))
            probs, message = out.probs, out.message
        self.publish("regime", rows, message)
        return Acted(probs.numpy().astype(np.float64), None, None,
                     message.numpy().copy() if self.explore else None)

    @torch.inference_mode()
    def regime_cached(self, rows: np.ndarray, probs: np.ndarray, message: np.ndarray) -> Acted:
        """The same, from outputs computed beforehand (the frozen network reads nothing else: ``RegimeCache``)."""
        self.publish("regime", rows, _t(message))
        return Acted(probs, None, None, np.array(message, np.float32) if self.explore else None)

    @torch.inference_mode()
    def structure(self, rows: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> Acted:
        view, read = self._read("structure", rows)
        obs = StructureObs(_t(matrix), _t(mask), view)
        logp = None
        if self.explore:
            step, out = self.nets.structure.step(obs)
            action, logp, message = step.action, step.log_prob.numpy().copy(), out.message
        elif self._fwd is not None:
            mean, message = self._fwd["structure"](obs.matrix, obs.mask, *view)
            action = StructureNet._from_unit(mean)
        else:
            out = self.nets.structure(obs)
            action, message = StructureNet._from_unit(out.alpha / (out.alpha + out.beta)), out.message
        self.publish("structure", rows, message)
        return Acted(action.numpy().astype(np.float64), logp, read)

    @torch.inference_mode()
    def tactical(self, rows: np.ndarray, matrix: np.ndarray, mask: np.ndarray, action_mask: np.ndarray) -> Acted:
        view, read = self._read("tactical", rows)
        obs = TacticalObs(_t(matrix), _t(mask), view, _t(action_mask))
        logp = None
        if not obs.action_mask.any(dim=1).all():
            raise ValueError("a tactical action mask allows no action")
        if self.explore:
            step, out = self.nets.tactical.step(obs)
            action, logp, message = step.action, step.log_prob.numpy().copy(), out.message
        elif self._fwd is not None:
            logits, message = self._fwd["tactical"](obs.matrix, obs.mask, *view, obs.action_mask)
            action = logits.argmax(dim=1)
        else:
            out = self.nets.tactical(obs)
            action, message = out.logits.argmax(dim=1), out.message
        self.publish("tactical", rows, message)
        return Acted(action.numpy().astype(np.int64), logp, read)

    @torch.inference_mode()
    def risk(self, rows: np.ndarray, proposal: np.ndarray, account: np.ndarray, epsilon: float = 0.0,
             rng: np.random.Generator | None = None, default: int | None = None) -> Acted:
        """Greedy Q actions (``risk_greedy``: ``allow`` unless another action's Q exceeds it by ``risk_margin``),
        with probability ``epsilon`` a uniform one (``rng``); ``default`` (e.g. ``allow``) replaces the greedy
        action, for a warm-up before the Q-network has learned anything."""
        view, read = self._read("risk", rows)
        if self._fwd is not None:
            q, message = self._fwd["risk"](_t(proposal), _t(account), *view)
        else:
            out = self.nets.risk(RiskObs(_t(proposal), _t(account), view))
            q, message = out.q, out.message
        action = risk_greedy(q, self.risk_margin).numpy().astype(np.int64)
        if default is not None:
            action[:] = default
        if epsilon > 0.0:
            if rng is None:
                raise ValueError("epsilon-greedy acting needs a numpy Generator")
            explore = rng.random(len(rows)) < epsilon
            action = np.where(explore, rng.integers(0, len(RISK_ACTIONS), len(rows)), action)
        self.publish("risk", rows, message)
        return Acted(action, None, read)
