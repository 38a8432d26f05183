"""The training envs' settings: costs come from the instrument, everything else a run may vary is here."""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.mtf_marl.cadence import check_exec_minutes
from risk.drawdown import DrawdownRules


@dataclass(frozen=True)
class EnvConfig:
    """Env settings.

    :param symbol: instrument (costs, pip value)
    :param cash: initial balance, USD
    :param leverage: account leverage
    :param max_exposure: notional of a full-size action, as a multiple of equity
    :param episode_bars: M1 steps per episode (truncation after that many steps, or at the end of the data)
    :param random_start: random window starts (seeded by ``reset(seed=...)``); else consecutive windows
    :param rules: drawdown rules
    :param terminate_on_breach: end the episode on a breach (else go on, halted, as the backtest does)
    :param on_excess: validator behaviour for unsafe sizes
    :param vol_minutes: minutes per H4 bar: the H4 ATR / sqrt(this) is the typical one-minute move that
        scales the reward
    :param soft_penalty: reward penalty per unit of daily drawdown beyond the soft zone (design: 100)
    :param daily_breach_penalty: reward on a daily breach (design: -1000)
    :param total_breach_penalty: reward on a total breach (design: -10000)
    :param reward_clip: the P&L part of the reward is clipped to +-this
    :param action_mode: the MTF-MARL action design (``risk.actions.joint_target_for``)
    :param min_hold_bars: timing mode: bars an entry is held before the executor may leave it
    :param turnover_penalty: reward penalty per full-size position traded, beyond the costs in the P&L
    :param reward: the P&L part of the joint reward: ``pnl_vol`` (P&L over the market's volatility, design 2.D) or
        ``dsr`` (the differential Sharpe ratio of that same normalised P&L: ``training.rewards``); the penalties are
        the same for both
    :param dsr_eta: the differential Sharpe ratio's EMA rate per bar
    :param exec_minutes: the M1 executor's cadence (``agents.mtf_marl.cadence``): 1, every M1 bar; 5 / 15, each
        completed M5 / M15 bar
    :param market_features: the observations end with the market block (``features.market``: sessions, levels,
        slower returns and volatilities, carry, macro changes); the contexts must be built with it
    """

    symbol: str = "EURUSD"
    cash: float = 100_000.0
    leverage: float = 30.0
    max_exposure: float = 10.0
    episode_bars: int = 1440 * 5
    random_start: bool = True
    rules: DrawdownRules = field(default_factory=DrawdownRules.from_config)
    terminate_on_breach: bool = True
    on_excess: str = "shrink"
    vol_minutes: float = 240.0
    soft_penalty: float = 100.0
    daily_breach_penalty: float = -1000.0
    total_breach_penalty: float = -10000.0
    reward_clip: float = 10.0
    action_mode: str = "free"
    min_hold_bars: int = 0
    turnover_penalty: float = 0.0
    exec_minutes: int = 1
    reward: str = "pnl_vol"
    dsr_eta: float = 1.0 / 1440
    market_features: bool = False

    def __post_init__(self) -> None:
        check_exec_minutes(self.exec_minutes)
        if self.reward not in ("pnl_vol", "dsr"):
            raise ValueError(f"reward must be 'pnl_vol' or 'dsr', got {self.reward!r}")

    @classmethod
    def from_dict(cls, d: dict) -> EnvConfig:
        """The config a manifest recorded (``manifest["env_config"]``), so a policy is evaluated under the
        costs and drawdown rules it was trained with."""
        return cls(**{k: v for k, v in d.items() if k != "rules"}, rules=DrawdownRules(**d["rules"]))
