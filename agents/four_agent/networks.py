"""The four agents' networks: plain ``nn.Module``s over the matrices of ``features.matrices`` and the hub.

* ``RegimeNet``: input embedding N -> d, learned (or sinusoidal) positional encoding, ``nn.TransformerEncoder``
  (pre-norm), masked mean of the rows concatenated with the newest row -> logits over ``REGIME_CLASSES``,
  a value head and a message. Confidence = the largest softmax probability (no separate head: it is then
  calibrated by the same cross-entropy that trains the classes).
* ``StructureNet``: one branch per kernel (3/5/7) of two 1-D convolutions (8 -> 64 -> 128), concatenated and mixed
  back to 128 by a 1x1 convolution, a 2-layer LSTM (256), additive attention over time (masked), an attention read
  of the hub (it sees Regime), then actor and critic heads. Policy: three independent Beta distributions
  (bounded support, no squashing correction): bias = 2 u - 1 with u ~ Beta, size ~ Beta, confidence ~ Beta;
  the actor head gives (alpha, beta) = 1 + softplus(.) per action (unimodal). Log-probs are in the action's own
  units (the bias's includes the -log 2 of its change of variable). Initialisation of the confidence head:
  Beta(3, 1.25) (``CONFIDENCE_PRIOR``, by the biases of its two actor outputs; mean 0.71), not the default's
  Beta(~1.7, ~1.7) (mean 0.5). The consensus gate (``risk.consensus``: no new exposure below a structure
  confidence of 0.5) sat at the centre of the default: a fresh policy's mean confidence (what evaluation and
  backtests act on) passed or failed it by a coin flip of the initialisation, the same everywhere (its outputs
  barely depend on the input at first), and half the sampled decisions were gated, so rollouts traded little, the
  Risk agent (it acts only on a proposed change or an open position) saw few transitions, and the first drift of
  the mean below 0.5 switched the deterministic policy off entirely. Now a fresh Structure agent lets the others
  trade (83 % of sampled decisions, and its mean) and must *learn* where to withhold its confidence.
* ``TacticalNet``: projection 7 -> d, sinusoidal positional encoding, self-attention encoder layers (8 heads),
  masked mean + newest row, a hub read (Regime and Structure) -> a Categorical over ``TACTICAL_ACTIONS`` with an
  action mask (masked logits are the float minimum, so they are never sampled and add no entropy), a critic head,
  a message.
* ``RiskNet``: DQN, an MLP (256 -> 512 -> 256) over the proposed decision (``RISK_PROPOSAL_FIELDS``), the account
  features, the four hub slots' messages with their visibility flags and the memory -> Q over ``RISK_ACTIONS``, and
  a message from its last hidden layer.

Acting and learning share one forward: ``get_action_and_value(obs, action=None)`` returns
``(action, log_prob, entropy, value)`` as in CleanRL's PPO (sampled when ``action`` is None, else evaluated), for
Regime (its class as a Categorical action; the trainer keeps Regime frozen, so no MAPPO update uses it), Structure and
Tactical; ``step`` is the same forward returning the network outputs too (the message to publish), so a rollout
acts and publishes with one forward. Risk has ``q_values`` and epsilon-greedy ``act``.
Masks: True = a real row (``features.matrices``); a row of the batch with no real row at all attends to its zeros
rather than producing NaN.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.distributions import Beta, Categorical

from agents.four_agent.config import (
    AGENTS,
    REGIME_CLASSES,
    RISK_ACTIONS,
    RISK_PROPOSAL_FIELDS,
    STRUCTURE_ACTIONS,
    TACTICAL_ACTIONS,
    FourAgentConfig,
)
from agents.four_agent.hub import CommHub, HubView

_LOG2 = math.log(2.0)
_BETA_EPS = 1e-6
CONFIDENCE_PRIOR: tuple[float, float] = (3.0, 1.25)
"""(alpha, beta) of a fresh Structure agent's confidence: mean 0.71, above the consensus gate (0.5) with
probability 0.83 (module docstring)"""


def _inv_softplus(y: float) -> float:
    """x with softplus(x) = y (> 0)."""
    return y + math.log(-math.expm1(-y))


# ------------------------------------------------------------------ building blocks
class PositionalEncoding(nn.Module):
    """Adds a position code to (B, T, d): learned (one vector per row) or the fixed sinusoids of Vaswani et al."""

    def __init__(self, seq_len: int, d_model: int, kind: str = "learned") -> None:
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        elif kind == "sinusoidal":
            pos = torch.arange(seq_len, dtype=torch.float32)[:, None]
            freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model))
            pe = torch.zeros(seq_len, d_model)
            pe[:, 0::2] = torch.sin(pos * freq)
            pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
            self.register_buffer("table", pe, persistent=False)
        else:
            raise ValueError(f"positional encoding must be 'learned' or 'sinusoidal', got {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.table.shape[0]:
            raise ValueError(f"sequence of {x.shape[1]} rows, the encoding is for {self.table.shape[0]}")
        return x + self.table


def _checked_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T) bool of rows to attend to; a batch row with none attends to all (its zeros) instead of giving NaN."""
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} for a matrix of shape {tuple(x.shape)}")
    m = mask.to(torch.bool)
    return m | ~m.any(dim=1, keepdim=True)


def _masked_mean(h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    w = m.to(h.dtype)[..., None]
    return (h * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


def _encoder(d: int, heads: int, ff: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class HubReader(nn.Module):
    """An agent's attention read of the hub: its own encoding queries the visible messages and the memory (one
    token each, plus a learned slot embedding saying who spoke); invisible slots are masked out.

    :param query_dim: width of the agent's encoding
    :param message_dim: hub message width (the read's output width)
    :param memory_dim: hub memory width
    :param heads: attention heads
    """

    def __init__(self, query_dim: int, message_dim: int, memory_dim: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_dim, message_dim)
        self.memory = nn.Linear(memory_dim, message_dim)
        self.slots = nn.Parameter(torch.randn(len(AGENTS) + 1, message_dim) * 0.02)
        self.attn = nn.MultiheadAttention(message_dim, heads, batch_first=True)

    def forward(self, query: torch.Tensor, view: HubView) -> torch.Tensor:
        tokens = torch.cat([view.messages, self.memory(view.memory)[:, None]], dim=1) + self.slots
        ignore = torch.cat([~view.visible, torch.zeros_like(view.visible[:, :1])], dim=1)  # memory always seen
        out, _ = self.attn(self.query(query)[:, None], tokens, tokens, key_padding_mask=ignore, need_weights=False)
        return out[:, 0]


# ------------------------------------------------------------------ observations and outputs
class RegimeObs(NamedTuple):
    matrix: torch.Tensor  # (B, 96, N)
    mask: torch.Tensor | None = None  # (B, 96) bool


class StructureObs(NamedTuple):
    matrix: torch.Tensor  # (B, 48, 8)
    mask: torch.Tensor | None
    hub: HubView


class TacticalObs(NamedTuple):
    matrix: torch.Tensor  # (B, 60, 7)
    mask: torch.Tensor | None
    hub: HubView
    action_mask: torch.Tensor | None = None  # (B, 5) bool, True = allowed


class RiskObs(NamedTuple):
    proposal: torch.Tensor  # (B, len(RISK_PROPOSAL_FIELDS)), ``proposal_features``
    account: torch.Tensor  # (B, account_features)
    hub: HubView


class PolicyStep(NamedTuple):
    """CleanRL's ``(action, log_prob, entropy, value)``; unpacks like its tuple."""

    action: torch.Tensor
    log_prob: torch.Tensor  # (B,)
    entropy: torch.Tensor  # (B,)
    value: torch.Tensor  # (B,)


class RegimeOutput(NamedTuple):
    logits: torch.Tensor  # (B, 4)
    probs: torch.Tensor
    confidence: torch.Tensor  # (B,) the largest probability
    value: torch.Tensor  # (B,)
    message: torch.Tensor  # (B, M)


class StructureOutput(NamedTuple):
    alpha: torch.Tensor  # (B, 3) Beta parameters per STRUCTURE_ACTIONS
    beta: torch.Tensor
    value: torch.Tensor
    message: torch.Tensor


class TacticalOutput(NamedTuple):
    logits: torch.Tensor  # (B, 5), masked
    value: torch.Tensor
    message: torch.Tensor


class RiskOutput(NamedTuple):
    q: torch.Tensor  # (B, 4)
    message: torch.Tensor


# ------------------------------------------------------------------ Regime
class RegimeNet(nn.Module):
    """:param cfg: the system's sizes (``cfg.regime``, ``cfg.message_dim``)"""

    def __init__(self, cfg: FourAgentConfig) -> None:
        super().__init__()
        r = cfg.regime
        self.cfg = r
        self.embed = nn.Linear(r.n_features, r.d_model)
        self.pos = PositionalEncoding(r.seq_len, r.d_model, r.positional)
        self.encoder = _encoder(r.d_model, r.n_heads, r.ff_dim, r.n_layers, r.dropout)
        self.norm = nn.LayerNorm(r.d_model)
        self.pool = nn.Sequential(nn.Linear(2 * r.d_model, r.d_model), nn.GELU())
        self.classes = nn.Linear(r.d_model, len(REGIME_CLASSES))
        self.critic = nn.Linear(r.d_model, 1)
        self.message = nn.Linear(r.d_model, cfg.message_dim)

    def encode(self, matrix: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d) summary of the (B, T, N) matrix."""
        if matrix.shape[1:] != (self.cfg.seq_len, self.cfg.n_features):
            raise ValueError(f"regime matrix of shape {tuple(matrix.shape)}, expected (B, {self.cfg.seq_len}, "
                             f"{self.cfg.n_features})")
        m = _checked_mask(matrix, mask)
        h = self.encoder(self.pos(self.embed(matrix)), src_key_padding_mask=~m)
        h = self.norm(h)
        return self.pool(torch.cat([_masked_mean(h, m), h[:, -1]], dim=1))

    def forward(self, matrix: torch.Tensor, mask: torch.Tensor | None = None) -> RegimeOutput:
        z = self.encode(matrix, mask)
        logits = self.classes(z)
        probs = torch.softmax(logits, dim=-1)
        return RegimeOutput(logits, probs, probs.max(dim=-1).values, self.critic(z)[:, 0],
                            torch.tanh(self.message(z)))

    def step(self, obs: RegimeObs, action: torch.Tensor | None = None) -> tuple[PolicyStep, RegimeOutput]:
        """One forward for acting and publishing: the policy step and the outputs (message, confidence)."""
        out = self(obs.matrix, obs.mask)
        dist = Categorical(logits=out.logits)
        if action is None:
            action = dist.sample()
        return PolicyStep(action, dist.log_prob(action), dist.entropy(), out.value), out

    def get_action_and_value(self, obs: RegimeObs, action: torch.Tensor | None = None) -> PolicyStep:
        """``action`` (B,) indices into ``REGIME_CLASSES``."""
        return self.step(obs, action)[0]


# ------------------------------------------------------------------ Structure
class StructureNet(nn.Module):
    """:param cfg: the system's sizes (``cfg.structure``, hub widths)"""

    def __init__(self, cfg: FourAgentConfig) -> None:
        super().__init__()
        s = cfg.structure
        self.cfg = s
        c1, c2 = s.conv_channels
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv1d(s.n_features, c1, k, padding=k // 2), nn.GELU(),
                          nn.Conv1d(c1, c2, k, padding=k // 2), nn.GELU())
            for k in s.kernels)
        self.mix = nn.Conv1d(len(s.kernels) * c2, c2, 1)
        self.lstm = nn.LSTM(c2, s.lstm_hidden, s.lstm_layers, batch_first=True)
        self.score = nn.Sequential(nn.Linear(s.lstm_hidden, s.lstm_hidden // 2), nn.Tanh(),
                                   nn.Linear(s.lstm_hidden // 2, 1))
        self.reader = HubReader(s.lstm_hidden, cfg.message_dim, cfg.memory_dim, cfg.read_heads)
        self.trunk = nn.Sequential(nn.Linear(s.lstm_hidden + cfg.message_dim, s.head_hidden), nn.GELU())
        self.actor = nn.Linear(s.head_hidden, 2 * len(STRUCTURE_ACTIONS))
        self.critic = nn.Linear(s.head_hidden, 1)
        self.message = nn.Linear(s.head_hidden, cfg.message_dim)
        self._init_confidence(*CONFIDENCE_PRIOR)

    @torch.no_grad()
    def _init_confidence(self, alpha: float, beta: float) -> None:
        """Start the confidence head at Beta(``alpha``, ``beta``) (module docstring: ``CONFIDENCE_PRIOR``): the
        biases of its two actor outputs are set so that 1 + softplus(bias) = alpha, beta (the weights keep their
        default initialisation, which moves them little at first)."""
        k, n = STRUCTURE_ACTIONS.index("confidence"), len(STRUCTURE_ACTIONS)
        self.actor.bias[k] = _inv_softplus(alpha - 1.0)
        self.actor.bias[n + k] = _inv_softplus(beta - 1.0)

    def encode(self, obs: StructureObs) -> torch.Tensor:
        """The matrix's encoding (B, lstm_hidden), before the hub read (the MAPPO update reads the hub twice)."""
        x = obs.matrix
        if x.shape[1:] != (self.cfg.seq_len, self.cfg.n_features):
            raise ValueError(f"structure matrix of shape {tuple(x.shape)}, expected (B, {self.cfg.seq_len}, "
                             f"{self.cfg.n_features})")
        m = _checked_mask(x, obs.mask)
        xt = x.transpose(1, 2)  # (B, F, T)
        conv = self.mix(torch.cat([b(xt) for b in self.branches], dim=1)).transpose(1, 2)  # (B, T, c2)
        h, _ = self.lstm(conv)  # padding rows are the oldest, so the LSTM meets the real rows last
        score = self.score(h)[..., 0].masked_fill(~m, float("-inf"))
        return (torch.softmax(score, dim=1)[..., None] * h).sum(dim=1)

    def forward(self, obs: StructureObs, encoded: torch.Tensor | None = None) -> StructureOutput:
        """:param encoded: ``encode(obs)`` when already computed"""
        ctx = self.encode(obs) if encoded is None else encoded
        z = self.trunk(torch.cat([ctx, self.reader(ctx, obs.hub)], dim=1))
        ab = 1.0 + nn.functional.softplus(self.actor(z))
        n = len(STRUCTURE_ACTIONS)
        return StructureOutput(ab[:, :n], ab[:, n:], self.critic(z)[:, 0], torch.tanh(self.message(z)))

    @staticmethod
    def _to_unit(action: torch.Tensor) -> torch.Tensor:
        u = torch.cat([(action[:, :1] + 1.0) * 0.5, action[:, 1:]], dim=1)
        return u.clamp(_BETA_EPS, 1.0 - _BETA_EPS)

    @staticmethod
    def _from_unit(u: torch.Tensor) -> torch.Tensor:
        return torch.cat([2.0 * u[:, :1] - 1.0, u[:, 1:]], dim=1)

    def step(self, obs: StructureObs, action: torch.Tensor | None = None,
             encoded: torch.Tensor | None = None) -> tuple[PolicyStep, StructureOutput]:
        """One forward for acting and publishing: the policy step and the outputs (message)."""
        out = self(obs, encoded)
        dist = Beta(out.alpha, out.beta)
        if action is None:
            action = self._from_unit(dist.sample())
        u = self._to_unit(action)
        log_prob = dist.log_prob(u).sum(dim=1) - _LOG2  # d(bias)/du = 2
        entropy = dist.entropy().sum(dim=1) + _LOG2
        return PolicyStep(action, log_prob, entropy, out.value), out

    def get_action_and_value(self, obs: StructureObs, action: torch.Tensor | None = None) -> PolicyStep:
        """``action`` (B, 3): bias in [-1, 1], size and confidence in [0, 1]."""
        return self.step(obs, action)[0]

    def deterministic_action(self, obs: StructureObs) -> torch.Tensor:
        """The policy's mean action (evaluation, backtests)."""
        out = self(obs)
        return self._from_unit(out.alpha / (out.alpha + out.beta))


# ------------------------------------------------------------------ Tactical
class TacticalNet(nn.Module):
    """:param cfg: the system's sizes (``cfg.tactical``, hub widths)"""

    def __init__(self, cfg: FourAgentConfig) -> None:
        super().__init__()
        t = cfg.tactical
        self.cfg = t
        self.proj = nn.Linear(t.n_features, t.d_model)
        self.pos = PositionalEncoding(t.seq_len, t.d_model, t.positional)
        self.encoder = _encoder(t.d_model, t.n_heads, t.ff_dim, t.n_layers, 0.0)
        self.norm = nn.LayerNorm(t.d_model)
        self.pool = nn.Sequential(nn.Linear(2 * t.d_model, t.d_model), nn.GELU())
        self.reader = HubReader(t.d_model, cfg.message_dim, cfg.memory_dim, cfg.read_heads)
        self.trunk = nn.Sequential(nn.Linear(t.d_model + cfg.message_dim, t.d_model), nn.GELU())
        self.actor = nn.Linear(t.d_model, len(TACTICAL_ACTIONS))
        self.critic = nn.Linear(t.d_model, 1)
        self.message = nn.Linear(t.d_model, cfg.message_dim)

    def encode(self, obs: TacticalObs) -> torch.Tensor:
        """The matrix's encoding (B, d_model), before the hub read (the MAPPO update reads the hub twice)."""
        x = obs.matrix
        if x.shape[1:] != (self.cfg.seq_len, self.cfg.n_features):
            raise ValueError(f"tactical matrix of shape {tuple(x.shape)}, expected (B, {self.cfg.seq_len}, "
                             f"{self.cfg.n_features})")
        m = _checked_mask(x, obs.mask)
        h = self.norm(self.encoder(self.pos(self.proj(x)), src_key_padding_mask=~m))
        return self.pool(torch.cat([_masked_mean(h, m), h[:, -1]], dim=1))

    def forward(self, obs: TacticalObs, encoded: torch.Tensor | None = None) -> TacticalOutput:
        """:param encoded: ``encode(obs)`` when already computed"""
        q = self.encode(obs) if encoded is None else encoded
        z = self.trunk(torch.cat([q, self.reader(q, obs.hub)], dim=1))
        logits = self.actor(z)
        if obs.action_mask is not None:
            allowed = obs.action_mask.to(torch.bool)
            if not allowed.any(dim=1).all():
                raise ValueError("a tactical action mask allows no action")
            logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
        return TacticalOutput(logits, self.critic(z)[:, 0], torch.tanh(self.message(z)))

    def step(self, obs: TacticalObs, action: torch.Tensor | None = None,
             encoded: torch.Tensor | None = None) -> tuple[PolicyStep, TacticalOutput]:
        """One forward for acting and publishing: the policy step and the outputs (message)."""
        out = self(obs, encoded)
        dist = Categorical(logits=out.logits)
        if action is None:
            action = dist.sample()
        return PolicyStep(action, dist.log_prob(action), dist.entropy(), out.value), out

    def get_action_and_value(self, obs: TacticalObs, action: torch.Tensor | None = None) -> PolicyStep:
        """``action`` (B,) indices into ``TACTICAL_ACTIONS``."""
        return self.step(obs, action)[0]


# ------------------------------------------------------------------ Risk
class RiskNet(nn.Module):
    """:param cfg: the system's sizes (``cfg.risk``, hub widths)"""

    def __init__(self, cfg: FourAgentConfig) -> None:
        super().__init__()
        r = cfg.risk
        self.cfg = r
        self.in_dim = (len(RISK_PROPOSAL_FIELDS) + r.account_features
                       + len(AGENTS) * (cfg.message_dim + 1) + cfg.memory_dim)
        layers: list[nn.Module] = []
        d = self.in_dim
        for h in r.hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.body = nn.Sequential(*layers)
        self.q = nn.Linear(d, len(RISK_ACTIONS))
        self.message = nn.Linear(d, cfg.message_dim)

    def encode(self, obs: RiskObs) -> torch.Tensor:
        """The last hidden layer (B, hidden[-1]), under both heads."""
        v = obs.hub
        x = torch.cat([obs.proposal, obs.account, v.messages.flatten(1), v.visible.to(obs.proposal.dtype),
                       v.memory], dim=1)
        if x.shape[1] != self.in_dim:
            raise ValueError(f"risk input of {x.shape[1]} values, expected {self.in_dim} (proposal "
                             f"{len(RISK_PROPOSAL_FIELDS)}, account {self.cfg.account_features}, hub)")
        return self.body(x)

    def forward(self, obs: RiskObs) -> RiskOutput:
        z = self.encode(obs)
        return RiskOutput(self.q(z), torch.tanh(self.message(z)))

    def message_only(self, obs: RiskObs) -> torch.Tensor:
        """The message with a graph into the message head only: the body is the DQN's, which MAPPO's losses (they
        train this head through the hub: ``agents.four_agent.mappo``) must not move."""
        with torch.no_grad():
            z = self.encode(obs)
        return torch.tanh(self.message(z))

    def q_values(self, obs: RiskObs) -> torch.Tensor:
        return self(obs).q

    def act(self, obs: RiskObs, epsilon: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Epsilon-greedy actions (B,) (indices into ``RISK_ACTIONS``); seeded through ``generator``."""
        greedy = self.q_values(obs).argmax(dim=1)
        if epsilon <= 0.0:
            return greedy
        b = greedy.shape[0]
        explore = torch.rand(b, generator=generator) < epsilon
        random = torch.randint(len(RISK_ACTIONS), (b,), generator=generator)
        return torch.where(explore, random, greedy)


def proposal_features(regime_probs: torch.Tensor, regime_confidence: torch.Tensor, structure_action: torch.Tensor,
                      tactical_action: torch.Tensor, proposed_position: torch.Tensor,
                      current_position: torch.Tensor) -> torch.Tensor:
    """(B, len(RISK_PROPOSAL_FIELDS)) in that slot order; positions are signed fractions of max lots."""
    onehot = nn.functional.one_hot(tactical_action.long(), len(TACTICAL_ACTIONS)).to(regime_probs.dtype)
    return torch.cat([regime_probs, regime_confidence[:, None], structure_action, onehot,
                      proposed_position[:, None], current_position[:, None]], dim=1)


# ------------------------------------------------------------------ all four
class FourAgentNetworks(nn.Module):
    """The four networks and the hub, built from one config (so one state dict holds the whole system).

    :param cfg: the system's sizes (a preset of ``agents.four_agent.config``)
    """

    def __init__(self, cfg: FourAgentConfig) -> None:
        super().__init__()
        self.config = cfg
        self.regime = RegimeNet(cfg)
        self.structure = StructureNet(cfg)
        self.tactical = TacticalNet(cfg)
        self.risk = RiskNet(cfg)
        self.hub = CommHub(cfg)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------ checkpoints
REGIME_ALGORITHM = "regime"


def regime_manifest_checks(manifest: dict[str, Any], path: Path) -> None:
    """Refuse a regime checkpoint whose matrix columns or lengths are not this code's."""
    from agents.common.checkpoint import CheckpointError
    from features.matrices import DEFAULT_MATRIX_SPEC, REGIME_COLUMNS

    ms = manifest.get("matrix_spec", {})
    if ms.get("regime_columns") != list(REGIME_COLUMNS) or ms.get("regime_rows") != DEFAULT_MATRIX_SPEC.regime_rows:
        raise CheckpointError(f"{path} was trained on other regime matrices ({ms.get('regime_rows')} rows of "
                              f"{ms.get('regime_columns')}); this code builds {DEFAULT_MATRIX_SPEC.regime_rows} rows "
                              f"of {list(REGIME_COLUMNS)}")


def load_regime_network(path: str | Path) -> tuple[RegimeNet, dict[str, Any]]:
    """The pretrained Regime network of a ``training.pretrain_regime`` checkpoint (``weights_only=True``), in eval
    mode; refused if its feature spec, matrix columns or algorithm are not this code's."""
    from agents.common.checkpoint import load_checkpoint
    from features.matrices import M30_SPEC

    path = Path(path)
    tensors, manifest = load_checkpoint(path, M30_SPEC.to_dict(), REGIME_ALGORITHM)
    regime_manifest_checks(manifest, path)
    net = RegimeNet(FourAgentConfig.from_dict(manifest["config"]))
    net.load_state_dict(tensors["regime"])
    return net.eval(), manifest
