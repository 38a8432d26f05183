"""Sizes of the four-agent networks and the communication hub: one frozen config, two measured presets.

``DESIGN`` is the design document's architecture (design-docs/four-agent-marl-diagrams.md, section 5): Regime
transformer 19 -> 128, 4 layers x 8 heads over 96 M30 rows; Structure CNN with kernels 3/5/7 (8 -> 64 -> 128
channels) -> 2-layer LSTM 256 -> attention over time; Tactical 7 -> 128, positional encoding, self-attention with
8 heads; Risk DQN 256 -> 512 -> 256. ``SMALL`` keeps every component and shape contract with smaller widths, for
CPU tests and quick pretraining.

Measured here (``n_params``; latency at batch 1: torch 2.13 CPU, 1 thread, eval mode, no grad, ``step`` of each
policy, median / best of 300 forwards) on a shared 2-core CPU under a load average of 5-6 (other training runs):
the medians are upper bounds, the best-of figures are closer to an idle core. ``tests/test_four_agent_networks.py``
recounts the parameters.

======================  ===========  ====================  ===========  ====================
network                 DESIGN       DESIGN median / best  SMALL        SMALL median / best
======================  ===========  ====================  ===========  ====================
Regime (96 x 19)          845,861      9.9 / 5.0 ms          23,637       2.5 / 1.2 ms
Structure (48 x 8)      1,233,736      9.5 / 4.7 ms          82,744       2.9 / 1.4 ms
Tactical (60 x 7)         335,238      5.7 / 2.1 ms          15,462       2.3 / 0.9 ms
Risk (DQN)                328,484      0.19 / 0.12 ms        25,812       0.10 / 0.05 ms
Hub (memory cell)          19,584      0.12 / 0.06 ms         5,184       0.11 / 0.06 ms
one M30 decision        2,762,903     29 / 18 ms            152,839       9.5 / 4.6 ms
======================  ===========  ====================  ===========  ====================

Hub latency: one ``publish``; the message reads are inside each agent's forward. "One M30 decision" is the full
sequence at a bar where an M30 bar completes: Regime, Structure, Tactical and Risk each act and publish.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from features.matrices import REGIME_COLUMNS, STRUCTURE_COLUMNS, TACTICAL_COLUMNS
from risk.consensus import REGIME_CLASSES, RISK_ACTIONS, TACTICAL_ACTIONS

AGENTS: tuple[str, ...] = ("regime", "structure", "tactical", "risk")
"""hub slots, in the order agents publish within one M1 bar"""
STRUCTURE_ACTIONS: tuple[str, ...] = ("bias", "size", "confidence")
"""the Structure agent's continuous action: direction bias in [-1, 1], position size and confidence in [0, 1]"""
# REGIME_CLASSES, TACTICAL_ACTIONS, RISK_ACTIONS: defined once, with the rule that reads them (risk.consensus)
__all__ = ["AGENTS", "DESIGN", "PRESETS", "REGIME_CLASSES", "RISK_ACTIONS", "RISK_PROPOSAL_FIELDS", "SMALL",
           "STRUCTURE_ACTIONS", "TACTICAL_ACTIONS", "FourAgentConfig", "RegimeConfig", "RiskConfig",
           "StructureConfig", "TacticalConfig", "preset"]
RISK_PROPOSAL_FIELDS: tuple[str, ...] = (
    *(f"regime_{c}" for c in REGIME_CLASSES), "regime_confidence",
    *(f"structure_{a}" for a in STRUCTURE_ACTIONS),
    *(f"tactical_{a}" for a in TACTICAL_ACTIONS),
    "proposed_position", "current_position",
)
"""the decision proposed to the Risk agent, by named slot: the Regime's class probabilities and confidence, the
Structure's action, the Tactical action one-hot, and the consensus target and current position as signed fractions
of max lots (``agents.four_agent.networks.proposal_features`` builds it)"""


@dataclass(frozen=True)
class RegimeConfig:
    """:param d_model: embedding width (input embedding N -> d_model)
    :param n_layers: transformer encoder layers
    :param n_heads: attention heads
    :param ff_dim: feed-forward width inside each layer
    :param positional: learned or sinusoidal positional encoding
    :param dropout: dropout in the encoder (pretraining regularisation; 0 when acting)"""

    n_features: int = len(REGIME_COLUMNS)
    seq_len: int = 96
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 8
    ff_dim: int = 512
    positional: Literal["learned", "sinusoidal"] = "learned"
    dropout: float = 0.1


@dataclass(frozen=True)
class StructureConfig:
    """:param conv_channels: channels of the two convolutions in each kernel branch (8 -> 64 -> 128)
    :param kernels: one branch per kernel size; their outputs are concatenated and mixed back to the last width
    :param lstm_hidden: LSTM width
    :param lstm_layers: LSTM layers
    :param head_hidden: width of the trunk before the actor and critic heads"""

    n_features: int = len(STRUCTURE_COLUMNS)
    seq_len: int = 48
    conv_channels: tuple[int, int] = (64, 128)
    kernels: tuple[int, ...] = (3, 5, 7)
    lstm_hidden: int = 256
    lstm_layers: int = 2
    head_hidden: int = 256


@dataclass(frozen=True)
class TacticalConfig:
    """:param d_model: projection width (7 -> d_model)
    :param n_heads: self-attention heads
    :param n_layers: self-attention layers
    :param ff_dim: feed-forward width"""

    n_features: int = len(TACTICAL_COLUMNS)
    seq_len: int = 60
    d_model: int = 128
    n_heads: int = 8
    n_layers: int = 2
    ff_dim: int = 256
    positional: Literal["learned", "sinusoidal"] = "sinusoidal"


@dataclass(frozen=True)
class RiskConfig:
    """:param hidden: the DQN's hidden widths (state encoder -> ... ; design 256 -> 512 -> 256)
    :param account_features: account slots (``agents.common.observations.ACCOUNT_FEATURES``: the same 8 as the shared
        state of the MTF-MARL agents)"""

    hidden: tuple[int, ...] = (256, 512, 256)
    account_features: int = 8


@dataclass(frozen=True)
class FourAgentConfig:
    """The whole system's sizes.

    :param name: preset name (stored in manifests)
    :param message_dim: size of the message vector each agent publishes
    :param memory_dim: size of the hub's shared context memory (a GRU cell's state)
    :param read_heads: heads of each agent's attention read over the hub
    """

    name: str = "design"
    message_dim: int = 32
    memory_dim: int = 64
    read_heads: int = 4
    regime: RegimeConfig = field(default_factory=RegimeConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)
    tactical: TacticalConfig = field(default_factory=TacticalConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)

    def __post_init__(self) -> None:
        for what, d, h in (("regime", self.regime.d_model, self.regime.n_heads),
                           ("tactical", self.tactical.d_model, self.tactical.n_heads),
                           ("hub read", self.message_dim, self.read_heads)):
            if d % h:
                raise ValueError(f"{what}: width {d} is not divisible by {h} heads")
        if self.message_dim <= 0 or self.memory_dim <= 0:
            raise ValueError(f"message_dim and memory_dim must be positive, got {self.message_dim}, {self.memory_dim}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped (tuples as lists), so a config compares equal to the one a manifest recorded."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FourAgentConfig:
        """The config a manifest recorded (tuples come back from JSON as lists)."""
        def tup(x: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in x.items()}

        return cls(name=d["name"], message_dim=d["message_dim"], memory_dim=d["memory_dim"],
                   read_heads=d["read_heads"], regime=RegimeConfig(**tup(d["regime"])),
                   structure=StructureConfig(**tup(d["structure"])), tactical=TacticalConfig(**tup(d["tactical"])),
                   risk=RiskConfig(**tup(d["risk"])))


DESIGN = FourAgentConfig()
SMALL = FourAgentConfig(
    name="small", message_dim=16, memory_dim=32, read_heads=2,
    regime=RegimeConfig(d_model=32, n_layers=2, n_heads=4, ff_dim=64),
    structure=StructureConfig(conv_channels=(16, 32), lstm_hidden=64, lstm_layers=2, head_hidden=64),
    tactical=TacticalConfig(d_model=32, n_heads=4, n_layers=1, ff_dim=64),
    risk=RiskConfig(hidden=(64, 128, 64)),
)
PRESETS: dict[str, FourAgentConfig] = {"design": DESIGN, "small": SMALL}


def preset(name: str) -> FourAgentConfig:
    """A preset by name; unknown names fail with the list."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
