"""The four-agent decision aggregator: the agents' actions and the account -> one target position and its brackets.

One pure function, ``decide``, shared by the four-agent env and strategy (like ``risk.actions`` for MTF-MARL).
Inputs: the Regime class and confidence, the Structure action (direction bias in [-1, 1], size and confidence in
[0, 1]), the Tactical action, the Risk action, and the account: current position (signed lots), ``max_lots`` (a
full-size position, ``risk.actions.max_lots_for``), equity, bid, spread and an ATR (price units: H4 or M30, the
caller's choice). Defaults of ``ConsensusConfig`` in brackets.

The rule:

1. **Side** (the Structure agent directs, as the H4 director does in ``risk.actions``): with structure confidence
   below ``min_structure_confidence`` [0.5] no new exposure is allowed; otherwise a bias above ``bias_threshold``
   [0.3 = ``risk.actions.BIAS_THRESHOLD``] allows longs only, below minus it shorts only, in between both sides.
2. **Regime scale**: trending 1.0, ranging 0.5, transition 0.5, volatile 0.0 [``regime_scale``]; a regime whose
   confidence is below ``min_regime_confidence`` [0.4] counts as transition. Volatile is a veto of new exposure.
3. **Cap**: ``cap = round_lots(size x scale x max_lots)``, the largest |position| an entry may reach.
4. **Tactical action** (it times entries, exits and reductions inside what 1-3 allow; between its M5 decisions the
   caller passes ``hold``):

   * ``enter_long``, longs allowed and cap > 0: flat or long -> ``+cap``, but a long already at or above the cap is
     kept, and a top-up smaller than ``rebalance_band`` [0.1 = ``risk.actions.REBALANCE_BAND``] x max lots is
     skipped (no churn); short -> ``+cap`` (a flip). Longs not allowed, or cap 0: a short is closed (an entry long
     is at least a wish not to be short), anything else is kept (``entry_refused``). ``enter_short`` mirrors it.
   * ``exit``: 0. ``reduce``: ``current x (1 - reduce_fraction)`` [0.5], rounded towards zero. ``hold``: current.
5. **Against the bias**: a resulting position on the side the Structure agent forbids (bias beyond the threshold
   the other way, with enough confidence) is closed: 0 (``against_bias``).
6. **Risk agent**, on the proposal ``p`` of 1-5 (current ``c``): ``allow`` -> p; ``modify_size`` ->
   ``round_lots(p x modify_fraction)`` [0.5] (halves the proposed exposure; on a hold it halves the position);
   ``force_exit`` -> 0; ``block`` -> no increase: a larger p on c's side keeps c, an opening from flat or a flip
   gives 0 (a blocked flip still closes the old side, as ``PreTradeValidator`` does), a reduction or exit passes.
   Hence ``|final| <= |p|`` and the final side is p's or flat: the learned Risk agent can only make a decision
   stricter (``tests/test_consensus.py`` checks it by property). The hard rules come after it, in the caller
   (``guarded_target``): the drawdown state (a REDUCING or HALTED account only reduces) and the pre-trade validator.
7. **Brackets**, for a non-zero target, on the side the broker checks them (``brokers.sim``: a long's stop-loss and
   take-profit against the bid, a short's against the ask = bid + spread): long SL = bid - ``sl_atr`` [2.0] x ATR,
   TP = bid + ``tp_atr`` [3.0] x ATR; short SL = ask + sl_atr x ATR, TP = ask - tp_atr x ATR; rounded to the
   instrument's digits away from the price, at least one point from it. A stop hit from a fill now loses
   sl_atr x ATR + spread per unit: the validator's worst case with ``atr_mult = sl_atr``.

Outputs (``Decision``): target lots (a lot-step multiple), direction (its sign), confidence (structure confidence x
regime confidence: both must agree for a confident decision; informational, the thresholds above decide), leverage
(notional of the target / equity), the brackets, ``max_exposure`` (the cap, lots), ``risk_at_stop`` (USD lost if
the stop is hit from a fill at the current price, round-trip commission included), the proposal before the Risk
agent, and which branch of the rule decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from brokers.account import AccountView, TradingState
from brokers.instruments import Instrument
from risk.actions import BIAS_THRESHOLD, REBALANCE_BAND
from risk.validator import PreTradeValidator, Verdict, validated_target

RegimeClass = Literal["trending", "ranging", "volatile", "transition"]
TacticalAction = Literal["enter_long", "enter_short", "exit", "hold", "reduce"]
RiskAction = Literal["allow", "modify_size", "force_exit", "block"]
Branch = Literal["enter", "flip", "entry_refused", "exit", "reduce", "hold", "against_bias"]
REGIME_CLASSES: tuple[str, ...] = get_args(RegimeClass)
TACTICAL_ACTIONS: tuple[str, ...] = get_args(TacticalAction)
RISK_ACTIONS: tuple[str, ...] = get_args(RiskAction)


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """Thresholds and scales of the rule (see the module docstring)."""

    bias_threshold: float = BIAS_THRESHOLD
    min_structure_confidence: float = 0.5
    min_regime_confidence: float = 0.4
    regime_scale: dict[str, float] = field(default_factory=lambda: {
        "trending": 1.0, "ranging": 0.5, "volatile": 0.0, "transition": 0.5})
    reduce_fraction: float = 0.5
    modify_fraction: float = 0.5
    rebalance_band: float = REBALANCE_BAND
    sl_atr: float = 2.0
    tp_atr: float = 3.0

    def __post_init__(self) -> None:
        if set(self.regime_scale) != set(REGIME_CLASSES):
            raise ValueError(f"regime_scale must give each of {REGIME_CLASSES}, got {sorted(self.regime_scale)}")
        if not all(0.0 <= v <= 1.0 for v in self.regime_scale.values()):
            raise ValueError("regime scales must be in [0, 1]")
        for name in ("reduce_fraction", "modify_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not (self.sl_atr > 0 and self.tp_atr > 0 and 0 <= self.bias_threshold < 1):
            raise ValueError("sl_atr and tp_atr must be positive and bias_threshold in [0, 1)")


DEFAULT_CONSENSUS = ConsensusConfig()


@dataclass(frozen=True, slots=True)
class AgentActions:
    """What the four agents decided (their latest actions; the Tactical one is ``hold`` between its decisions)."""

    regime: RegimeClass
    regime_confidence: float
    bias: float
    size: float
    structure_confidence: float
    tactical: TacticalAction
    risk: RiskAction = "allow"

    def __post_init__(self) -> None:
        if self.regime not in REGIME_CLASSES:
            raise ValueError(f"unknown regime {self.regime!r}; known: {', '.join(REGIME_CLASSES)}")
        if self.tactical not in TACTICAL_ACTIONS:
            raise ValueError(f"unknown tactical action {self.tactical!r}; known: {', '.join(TACTICAL_ACTIONS)}")
        if self.risk not in RISK_ACTIONS:
            raise ValueError(f"unknown risk action {self.risk!r}; known: {', '.join(RISK_ACTIONS)}")
        if not -1.0 <= self.bias <= 1.0:
            raise ValueError(f"bias must be in [-1, 1], got {self.bias}")
        for name in ("size", "structure_confidence", "regime_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class AccountState:
    """:param current_lots: signed position now
    :param max_lots: lots of a full-size position (>= 0)
    :param equity: USD
    :param price: bid now
    :param spread: ask - bid now, price units
    :param atr: ATR in price units (> 0)"""

    current_lots: float
    max_lots: float
    equity: float
    price: float
    spread: float
    atr: float

    def __post_init__(self) -> None:
        if not (self.max_lots >= 0 and self.price > 0 and self.spread >= 0 and self.equity > 0):
            raise ValueError(f"bad account state: max_lots={self.max_lots}, price={self.price}, spread={self.spread}, "
                             f"equity={self.equity}")
        if not (self.atr > 0 and math.isfinite(self.atr)):
            raise ValueError(f"ATR must be positive and finite to place brackets, got {self.atr}")


@dataclass(frozen=True, slots=True)
class Decision:
    lots: float  # target position, signed, a multiple of the lot step
    direction: int  # -1, 0, +1
    confidence: float
    leverage: float  # notional of |lots| / equity
    stop_loss: float | None  # price (a long's against the bid, a short's against the ask); None when flat
    take_profit: float | None
    max_exposure: float  # the cap, lots
    risk_at_stop: float  # USD lost if the stop is hit from a fill now (commission included)
    proposed_lots: float  # before the Risk agent
    branch: Branch
    risk_action: RiskAction


def _side_allowed(a: AgentActions, cfg: ConsensusConfig) -> tuple[bool, bool]:
    """(longs allowed, shorts allowed) for new exposure."""
    if a.structure_confidence < cfg.min_structure_confidence:
        return False, False
    if a.bias > cfg.bias_threshold:
        return True, False
    if a.bias < -cfg.bias_threshold:
        return False, True
    return True, True


def _forbidden_side(a: AgentActions, cfg: ConsensusConfig) -> int:
    """The side a position may not hold (+1 long, -1 short, 0 none): against a confident bias."""
    if a.structure_confidence < cfg.min_structure_confidence or abs(a.bias) <= cfg.bias_threshold:
        return 0
    return -1 if a.bias > 0 else 1


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def propose(a: AgentActions, acc: AccountState, inst: Instrument,
            cfg: ConsensusConfig = DEFAULT_CONSENSUS) -> tuple[float, float, Branch]:
    """Steps 1-5: (proposed target lots, cap lots, branch), before the Risk agent."""
    c = inst.round_lots(acc.current_lots)
    long_ok, short_ok = _side_allowed(a, cfg)
    regime = a.regime if a.regime_confidence >= cfg.min_regime_confidence else "transition"
    cap = inst.round_lots(a.size * cfg.regime_scale[regime] * acc.max_lots)
    band = cfg.rebalance_band * acc.max_lots
    branch: Branch
    t = a.tactical
    if t in ("enter_long", "enter_short"):
        s = 1 if t == "enter_long" else -1
        if (long_ok if s > 0 else short_ok) and cap > 0:
            if c * s < 0:
                target, branch = s * cap, "flip"
            elif abs(c) >= cap or cap - abs(c) < band - 1e-9:
                target, branch = c, "enter"  # already there (or a top-up too small to pay for)
            else:
                target, branch = s * cap, "enter"
        else:
            target, branch = (0.0 if c * s < 0 else c), "entry_refused"
    elif t == "exit":
        target, branch = 0.0, "exit"
    elif t == "reduce":
        target, branch = inst.round_lots(c * (1.0 - cfg.reduce_fraction)), "reduce"
    else:
        target, branch = c, "hold"
    forbidden = _forbidden_side(a, cfg)
    if forbidden and _sign(target) == forbidden:
        target, branch = 0.0, "against_bias"
    return target, cap, branch


def apply_risk(proposed: float, current: float, action: RiskAction, inst: Instrument,
               cfg: ConsensusConfig = DEFAULT_CONSENSUS) -> float:
    """Step 6: the Risk agent's effect on the proposed target; never larger in size, never a side it did not see."""
    if action == "allow":
        return proposed
    if action == "modify_size":
        return inst.round_lots(proposed * cfg.modify_fraction)
    if action == "force_exit":
        return 0.0
    if action == "block":
        if proposed * current < 0 or current == 0:
            return 0.0  # no opening from flat, no flip (a blocked flip still closes the old side)
        return current if abs(proposed) > abs(current) else proposed  # no increase; reductions and exits pass
    raise ValueError(f"unknown risk action {action!r}; known: {', '.join(RISK_ACTIONS)}")


def _grid(x: float, point: float, digits: int, up: bool) -> float:
    """``x`` rounded to the price grid away from the market (up for prices above it, down below)."""
    n = x / point
    k = math.ceil(n - 1e-7) if up else math.floor(n + 1e-7)
    return round(k * point, digits)


def brackets(lots: float, acc: AccountState, inst: Instrument,
             cfg: ConsensusConfig = DEFAULT_CONSENSUS) -> tuple[float | None, float | None]:
    """Step 7: (stop loss, take profit) prices for a position of ``lots``; (None, None) when flat."""
    if lots == 0:
        return None, None
    point = 10.0 ** -inst.digits
    d_sl, d_tp = cfg.sl_atr * acc.atr, cfg.tp_atr * acc.atr
    if lots > 0:  # closes by selling at the bid
        ref = acc.price
        sl = min(_grid(ref - d_sl, point, inst.digits, up=False), _grid(ref - point, point, inst.digits, up=False))
        tp = max(_grid(ref + d_tp, point, inst.digits, up=True), _grid(ref + point, point, inst.digits, up=True))
    else:  # closes by buying at the ask
        ref = acc.price + acc.spread
        sl = max(_grid(ref + d_sl, point, inst.digits, up=True), _grid(ref + point, point, inst.digits, up=True))
        tp = min(_grid(ref - d_tp, point, inst.digits, up=False), _grid(ref - point, point, inst.digits, up=False))
        if tp <= 0:
            raise ValueError(f"take-profit {tp} would be at or below zero: ATR {acc.atr} is too large for price "
                             f"{acc.price}")
    return sl, tp


def decide(a: AgentActions, acc: AccountState, inst: Instrument,
           cfg: ConsensusConfig = DEFAULT_CONSENSUS) -> Decision:
    """The consensus of the four agents (module docstring, steps 1-7)."""
    proposed, cap, branch = propose(a, acc, inst, cfg)
    current = inst.round_lots(acc.current_lots)
    lots = apply_risk(proposed, current, a.risk, inst, cfg)
    sl, tp = brackets(lots, acc, inst, cfg)
    units = abs(lots) * inst.contract_size
    notional = inst.to_account(units * acc.price, acc.price)
    if sl is None:
        risk = 0.0
    else:  # a long buys at the ask and its stop sells at sl (a bid level); a short sells at the bid, buys back at sl
        loss = (acc.price + acc.spread - sl) if lots > 0 else (sl - acc.price)
        risk = inst.to_account(units * loss, acc.price) + 2.0 * inst.commission_per_lot * abs(lots)
    return Decision(lots=lots, direction=_sign(lots), confidence=a.structure_confidence * a.regime_confidence,
                    leverage=notional / acc.equity, stop_loss=sl, take_profit=tp, max_exposure=cap,
                    risk_at_stop=risk, proposed_lots=proposed, branch=branch, risk_action=a.risk)


def guarded_target(decision: Decision, validator: PreTradeValidator | None, account: AccountView,
                   atr: float) -> Verdict:
    """What happens after the agents, in order of authority: the drawdown state first (a REDUCING or HALTED account
    only reduces: an increase keeps the position, a flip closes it), then the pre-trade validator (shrinks or blocks
    a target whose 2-ATR worst case would breach the equity floor). The caller sends the verdict's lots."""
    target, current = decision.lots, account.lots
    reduces = target * current >= 0 and abs(target) <= abs(current)
    if account.trading_state is not TradingState.ACTIVE and not reduces:
        keep = 0.0 if target * current < 0 else current
        return Verdict("block", keep, f"account is {account.trading_state.name}: only reductions")
    return validated_target(validator, account, target, atr)
