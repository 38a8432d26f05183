"""The four-agent networks and the hub: shapes, policies (CleanRL's get_action_and_value), action masks, who may
read whom, the update order, parameter counts of both presets, seeds, state-dict round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributions import Beta

from agents.common.checkpoint import load_checkpoint, save_checkpoint
from agents.four_agent import (
    AGENTS,
    DESIGN,
    RISK_ACTIONS,
    RISK_PROPOSAL_FIELDS,
    SMALL,
    TACTICAL_ACTIONS,
    CommHub,
    FourAgentConfig,
    FourAgentNetworks,
    RegimeObs,
    RiskObs,
    StructureObs,
    TacticalObs,
    acting_agents,
    n_params,
    preset,
    proposal_features,
)

B = 5
# the docstring table of agents/four_agent/config.py
COUNTS = {
    "design": {"regime": 845_861, "structure": 1_233_736, "tactical": 335_238, "risk": 328_484, "hub": 19_584},
    "small": {"regime": 23_637, "structure": 82_744, "tactical": 15_462, "risk": 25_812, "hub": 5_184},
}


@pytest.fixture(scope="module")
def nets() -> FourAgentNetworks:
    torch.manual_seed(0)
    return FourAgentNetworks(SMALL).eval()


def _hub(nets: FourAgentNetworks, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hub = nets.hub
    s = hub.initial_state(B)
    for a in AGENTS:
        s = hub.publish(s, a, torch.rand(B, SMALL.message_dim, generator=g) * 2 - 1)
    return s


def _obs(nets: FourAgentNetworks, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = _hub(nets, seed)
    r = RegimeObs(torch.randn(B, 96, 19, generator=g), torch.ones(B, 96, dtype=torch.bool))
    st = StructureObs(torch.randn(B, 48, 8, generator=g), torch.ones(B, 48, dtype=torch.bool),
                      nets.hub.view(s, "structure"))
    ta = TacticalObs(torch.randn(B, 60, 7, generator=g), torch.ones(B, 60, dtype=torch.bool),
                     nets.hub.view(s, "tactical"), torch.ones(B, 5, dtype=torch.bool))
    prop = proposal_features(torch.full((B, 4), 0.25), torch.full((B,), 0.25), torch.zeros(B, 3),
                             torch.zeros(B, dtype=torch.long), torch.zeros(B), torch.zeros(B))
    ri = RiskObs(prop, torch.zeros(B, 8), nets.hub.view(s, "risk"))
    return r, st, ta, ri, s


@pytest.mark.parametrize("name", ["small", "design"])
def test_parameter_counts_match_the_docstring(name: str) -> None:
    n = FourAgentNetworks(preset(name))
    got = {k: n_params(getattr(n, k)) for k in COUNTS[name]}
    assert got == COUNTS[name]
    assert n_params(n) == sum(COUNTS[name].values())


def test_design_preset_is_the_design_documents() -> None:
    assert (DESIGN.regime.d_model, DESIGN.regime.n_layers, DESIGN.regime.n_heads) == (128, 4, 8)
    assert DESIGN.structure.kernels == (3, 5, 7) and DESIGN.structure.conv_channels == (64, 128)
    assert (DESIGN.structure.lstm_hidden, DESIGN.structure.lstm_layers) == (256, 2)
    assert (DESIGN.tactical.d_model, DESIGN.tactical.n_heads) == (128, 8)
    assert DESIGN.risk.hidden == (256, 512, 256)
    assert FourAgentConfig.from_dict(DESIGN.to_dict()) == DESIGN and FourAgentConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(KeyError, match="known"):
        preset("huge")
    with pytest.raises(ValueError, match="divisible"):
        FourAgentConfig(message_dim=10, read_heads=4)


def test_design_forward_at_batch_two() -> None:
    torch.manual_seed(0)
    n = FourAgentNetworks(DESIGN).eval()
    with torch.no_grad():
        out = n.regime(torch.randn(2, 96, 19))
        s = n.hub.publish(n.hub.initial_state(2), "regime", out.message)
        step = n.structure.get_action_and_value(StructureObs(torch.randn(2, 48, 8), None, n.hub.view(s, "structure")))
    assert out.logits.shape == (2, 4) and out.message.shape == (2, DESIGN.message_dim)
    assert step.action.shape == (2, 3)


def test_regime_outputs(nets: FourAgentNetworks) -> None:
    r, *_ = _obs(nets)
    with torch.no_grad():
        out = nets.regime(r.matrix, r.mask)
        step = nets.regime.get_action_and_value(r)
    assert out.logits.shape == (B, 4) and out.value.shape == (B,) and out.message.shape == (B, SMALL.message_dim)
    torch.testing.assert_close(out.probs.sum(dim=1), torch.ones(B))
    assert torch.equal(out.confidence, out.probs.max(dim=1).values)
    assert out.message.abs().max() <= 1.0
    assert step.action.shape == (B,) and step.log_prob.shape == step.entropy.shape == step.value.shape == (B,)
    with pytest.raises(ValueError, match="regime matrix"):
        nets.regime(torch.zeros(B, 95, 19))


def test_structure_beta_policy(nets: FourAgentNetworks) -> None:
    _, st, *_ = _obs(nets)
    torch.manual_seed(1)
    with torch.no_grad():
        a, logp, ent, v = nets.structure.get_action_and_value(st)
        again = nets.structure.get_action_and_value(st, a)
        out = nets.structure(st)
    assert a.shape == (B, 3) and (a[:, 0].abs() <= 1).all() and ((a[:, 1:] >= 0) & (a[:, 1:] <= 1)).all()
    torch.testing.assert_close(again.log_prob, logp)
    torch.testing.assert_close(again.value, v)
    # the log-prob is in the action's units: bias = 2u - 1 adds -log 2
    u = torch.cat([(a[:, :1] + 1) / 2, a[:, 1:]], dim=1).clamp(1e-6, 1 - 1e-6)
    manual = Beta(out.alpha, out.beta).log_prob(u).sum(dim=1) - torch.log(torch.tensor(2.0))
    torch.testing.assert_close(logp, manual)
    assert torch.isfinite(ent).all() and (out.alpha >= 1).all() and (out.beta >= 1).all()
    mean = nets.structure.deterministic_action(st)
    torch.testing.assert_close(mean[:, 1:], out.alpha[:, 1:] / (out.alpha[:, 1:] + out.beta[:, 1:]))
    # the extreme actions have a finite log-prob (clamped inside the support)
    edge = nets.structure.get_action_and_value(st, torch.tensor([[1.0, 0.0, 1.0]] * B))
    assert torch.isfinite(edge.log_prob).all()


def test_tactical_action_mask(nets: FourAgentNetworks) -> None:
    _, _, ta, *_ = _obs(nets)
    allowed = torch.zeros(B, 5, dtype=torch.bool)
    allowed[:, TACTICAL_ACTIONS.index("exit")] = allowed[:, TACTICAL_ACTIONS.index("hold")] = True
    masked = ta._replace(action_mask=allowed)
    torch.manual_seed(2)
    with torch.no_grad():
        for _ in range(50):
            step = nets.tactical.get_action_and_value(masked)
            assert allowed[torch.arange(B), step.action].all()
            assert torch.isfinite(step.entropy).all() and (step.entropy <= torch.log(torch.tensor(2.0)) + 1e-6).all()
        free = nets.tactical.get_action_and_value(ta)
    assert free.log_prob.shape == (B,)
    with pytest.raises(ValueError, match="allows no action"):
        nets.tactical(ta._replace(action_mask=torch.zeros(B, 5, dtype=torch.bool)))


def test_all_masked_rows_give_no_nan(nets: FourAgentNetworks) -> None:
    r, st, ta, *_ = _obs(nets)
    none = torch.zeros(B, 96, dtype=torch.bool)
    with torch.no_grad():
        assert torch.isfinite(nets.regime(torch.zeros(B, 96, 19), none).logits).all()
        assert torch.isfinite(nets.structure(st._replace(mask=torch.zeros(B, 48, dtype=torch.bool))).alpha).all()
        assert torch.isfinite(nets.tactical(ta._replace(mask=torch.zeros(B, 60, dtype=torch.bool))).logits).all()
        # and a masked row does not matter: changing it leaves the output unchanged
        m = torch.ones(B, 96, dtype=torch.bool)
        m[:, :10] = False
        x2 = r.matrix.clone()
        x2[:, :10] = 99.0
        torch.testing.assert_close(nets.regime(r.matrix, m).logits, nets.regime(x2, m).logits)


def test_risk_dqn(nets: FourAgentNetworks) -> None:
    *_, ri, _ = _obs(nets)
    assert ri.proposal.shape == (B, len(RISK_PROPOSAL_FIELDS))
    with torch.no_grad():
        q = nets.risk.q_values(ri)
        assert q.shape == (B, len(RISK_ACTIONS))
        assert torch.equal(nets.risk.act(ri), q.argmax(dim=1))
        a1 = nets.risk.act(ri, 1.0, torch.Generator().manual_seed(4))
        a2 = nets.risk.act(ri, 1.0, torch.Generator().manual_seed(4))
    assert torch.equal(a1, a2) and ((a1 >= 0) & (a1 < 4)).all()


def test_visibility_rules(nets: FourAgentNetworks) -> None:
    """Structure reads Regime only, Tactical Regime and Structure, Risk all; the memory held fixed."""
    _, st, ta, ri, s = _obs(nets)
    other = s._replace(messages=s.messages.clone())
    other.messages[:, AGENTS.index("tactical")] += 0.5
    other.messages[:, AGENTS.index("risk")] -= 0.5
    hub = nets.hub
    with torch.no_grad():
        torch.testing.assert_close(nets.structure(st._replace(hub=hub.view(other, "structure"))).alpha,
                                   nets.structure(st).alpha, rtol=0, atol=0)
        torch.testing.assert_close(nets.tactical(ta._replace(hub=hub.view(other, "tactical"))).logits,
                                   nets.tactical(ta).logits, rtol=0, atol=0)
        assert not torch.equal(nets.risk(ri._replace(hub=hub.view(other, "risk"))).q, nets.risk(ri).q)
        # what an agent may see does reach it
        seen = s._replace(messages=s.messages.clone())
        seen.messages[:, AGENTS.index("regime")] *= -1
        assert not torch.equal(nets.structure(st._replace(hub=hub.view(seen, "structure"))).alpha,
                               nets.structure(st).alpha)
        seen.messages[:, AGENTS.index("structure")] *= -1
        assert not torch.equal(nets.tactical(ta._replace(hub=hub.view(seen, "tactical"))).logits,
                               nets.tactical(ta).logits)
    view = hub.view(s, "structure")
    assert view.visible.tolist() == [[True, False, False, False]] * B
    assert not view.messages[:, 1:].any()
    assert hub.view(s, "regime").visible.sum() == 0 and hub.view(s, "risk").visible.all()


def test_publish_and_memory(nets: FourAgentNetworks) -> None:
    hub: CommHub = nets.hub
    s = hub.initial_state(B)
    assert not s.present.any() and not s.memory.any()
    msg = torch.ones(B, SMALL.message_dim) * 0.3
    where = torch.tensor([True, False, True, False, False])
    with torch.no_grad():
        s2 = hub.publish(s, "regime", msg, where)
    assert s2.present[:, 0].tolist() == where.tolist() and not s2.present[:, 1:].any()
    assert torch.equal(s2.messages[~where], s.messages[~where]) and torch.equal(s2.memory[~where], s.memory[~where])
    assert (s2.memory[where] != 0).any()
    with pytest.raises(ValueError, match="shape"):
        hub.publish(s, "regime", torch.zeros(B, 3))
    with pytest.raises(KeyError, match="unknown agent"):
        hub.view(s, "macro")
    # the order matters: the memory is a sequence model of the publications
    with torch.no_grad():
        a = hub.publish(hub.publish(s, "regime", msg), "structure", -msg)
        b = hub.publish(hub.publish(s, "structure", -msg), "regime", msg)
    assert torch.equal(a.messages, b.messages) and not torch.equal(a.memory, b.memory)


def test_acting_order() -> None:
    assert acting_agents(True, True, True, False) == ("regime", "structure", "tactical", "risk")
    assert acting_agents(True, False, False, False) == ("tactical",)
    assert acting_agents(False, False, False, True) == ("risk",)
    assert acting_agents(False, False, False, False) == ()


def test_gradients_reach_every_parameter(nets: FourAgentNetworks) -> None:
    torch.manual_seed(3)
    n = FourAgentNetworks(SMALL)
    r, st, ta, ri, _ = _obs(n)
    s = n.hub.initial_state(B)
    reg = n.regime(r.matrix, r.mask)
    s = n.hub.publish(s, "regime", reg.message)
    step_s, out_s = n.structure.step(st._replace(hub=n.hub.view(s, "structure")))
    s = n.hub.publish(s, "structure", out_s.message)
    step_t, out_t = n.tactical.step(ta._replace(hub=n.hub.view(s, "tactical")))
    s = n.hub.publish(s, "tactical", out_t.message)
    risk = n.risk(ri._replace(hub=n.hub.view(s, "risk")))
    s = n.hub.publish(s, "risk", risk.message)
    loss = (reg.logits.sum() + reg.value.sum() - step_s.log_prob.sum() + step_s.value.sum() - step_t.log_prob.sum()
            + step_t.value.sum() + risk.q.sum() + s.memory.sum())
    loss.backward()
    missing = [k for k, p in n.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_seed_and_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(7)
    a = FourAgentNetworks(SMALL)
    torch.manual_seed(7)
    b = FourAgentNetworks(SMALL)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    save_checkpoint(tmp_path / "ck", {"four_agent": a.state_dict()}, {"algorithm": "four_agent_test",
                                                                      "config": SMALL.to_dict()})
    tensors, man = load_checkpoint(tmp_path / "ck", algorithm="four_agent_test")  # weights_only=True
    c = FourAgentNetworks(FourAgentConfig.from_dict(man["config"]))
    c.load_state_dict(tensors["four_agent"])
    a.eval()
    c.eval()
    r, st, *_ = _obs(a)
    with torch.no_grad():
        assert torch.equal(a.regime(r.matrix).logits, c.regime(r.matrix).logits)
