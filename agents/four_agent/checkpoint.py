"""Loading a four-agent checkpoint (``training.train_four_agent``) for acting: its manifest checked, its networks."""

from __future__ import annotations

from pathlib import Path

from agents.common.checkpoint import CheckpointError, load_checkpoint, read_manifest
from agents.four_agent.config import FourAgentConfig
from agents.four_agent.networks import FourAgentNetworks
from features.context import H4_SPEC
from features.engine import DEFAULT_SPEC
from features.matrices import DEFAULT_MATRIX_SPEC


def four_agent_manifest(path: Path) -> dict:
    """The manifest of a four-agent checkpoint (``training.train_four_agent``), refused (before any weights load)
    if its feature specs or matrix spec (columns, lengths, the M5 / M30 engine specs) are not this code's."""
    man = read_manifest(path, DEFAULT_SPEC.to_dict(), "four_agent")
    if man.get("h4_feature_spec") != H4_SPEC.to_dict():
        raise CheckpointError(f"{path} was trained on another H4 feature spec; retrain it")
    theirs, ours = man.get("matrix_spec", {}), DEFAULT_MATRIX_SPEC.to_dict()
    if theirs != ours:
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise CheckpointError(f"{path} was trained on other four-agent matrices (differs in {', '.join(diff[:5])}); "
                              "retrain it")
    return man


def load_four_agent(path: Path):
    """The four networks and hub of a four-agent checkpoint, in eval mode, and its manifest (refused if its specs
    are not this code's)."""
    man = four_agent_manifest(path)
    tensors, _ = load_checkpoint(path)
    nets = FourAgentNetworks(FourAgentConfig.from_dict(man["config"]))
    try:
        nets.load_state_dict(tensors["networks"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the weights do not fit the {man.get('preset')!r} networks: {e}") from e
    return nets.eval(), man
