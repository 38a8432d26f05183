"""Risk: drawdown rules (the CMDP constraints), the pre-trade validator and the action -> position mapping."""
