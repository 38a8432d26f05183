"""The four-agent system (Regime, Structure, Tactical, Risk) and its communication hub.

Networks and hub are plain ``nn.Module``s; sizes come from a frozen config (``DESIGN`` or ``SMALL``); the decision
aggregator that turns the agents' actions into a target position is ``risk.consensus``.
"""

from agents.four_agent.config import (
    AGENTS,
    DESIGN,
    PRESETS,
    REGIME_CLASSES,
    RISK_ACTIONS,
    RISK_PROPOSAL_FIELDS,
    SMALL,
    STRUCTURE_ACTIONS,
    TACTICAL_ACTIONS,
    FourAgentConfig,
    preset,
)
from agents.four_agent.hub import VISIBLE, CommHub, HubState, HubView, acting_agents
from agents.four_agent.networks import (
    FourAgentNetworks,
    PolicyStep,
    RegimeNet,
    RegimeObs,
    RiskNet,
    RiskObs,
    StructureNet,
    StructureObs,
    TacticalNet,
    TacticalObs,
    load_regime_network,
    n_params,
    proposal_features,
)

__all__ = [
    "AGENTS",
    "DESIGN",
    "PRESETS",
    "REGIME_CLASSES",
    "RISK_ACTIONS",
    "RISK_PROPOSAL_FIELDS",
    "SMALL",
    "STRUCTURE_ACTIONS",
    "TACTICAL_ACTIONS",
    "VISIBLE",
    "CommHub",
    "FourAgentConfig",
    "FourAgentNetworks",
    "PolicyStep",
    "HubState",
    "HubView",
    "RegimeNet",
    "RegimeObs",
    "RiskNet",
    "RiskObs",
    "StructureNet",
    "StructureObs",
    "TacticalNet",
    "TacticalObs",
    "acting_agents",
    "load_regime_network",
    "n_params",
    "preset",
    "proposal_features",
]
