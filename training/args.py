"""The command-line arguments every trainer shares: data periods and step budget (``RunPlan``, also what an ablation
or a walk-forward hands each run) and the common training settings (``TrainArgs``; tyro reads the field docstrings
as help)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from training.env_config import EnvConfig


@dataclass
class RunPlan:
    """Data periods and step budget: what one training run and an ablation over many runs share."""

    train_start: str = "2017-01-01"
    """first day of the training period (UTC)"""
    train_end: str = "2022-12-31"
    """last day of the training period"""
    val_start: str = "2023-01-01"
    """first day of the validation period"""
    val_end: str = "2023-12-31"
    """last day of the validation period"""
    total_steps: int = 300_000
    """environment steps (M1 bars) to train for"""
    learning_starts: int = 10_000
    """random-action steps before learning"""
    eval_every: int = 50_000
    """steps between validation runs"""


@dataclass
class TrainArgs(RunPlan):
    """The fields every trainer's CLI shares (tyro reads the field docstrings as help)."""

    symbol: str = "EURUSD"
    """instrument to train on"""
    data: str = ""
    """M1 data file or folder; empty: $MTF_DATA_DIR or ../shared/data/fx"""
    update_every: int = 2
    """environment steps per gradient update (SB3's train_freq for td3)"""
    gamma: float = 0.995
    """discount per M1 step; 0.995 has a half-life of about 2.3 hours"""
    batch_size: int = 256
    """minibatch size"""
    buffer_size: int = 300_000
    """replay capacity (transitions)"""
    episode_bars: int = 1440 * 5
    """M1 bars per training episode"""
    max_exposure: float = 10.0
    """notional of a full-size position, multiple of equity"""
    eval_bars: int = 0
    """bars of each validation segment to use; 0: all"""
    seed: int = 0
    """seed of every random generator"""
    out: str = ""
    """output folder; empty: runs/train-<algorithm>-<UTC time>"""
    torch_threads: int = 1
    """torch CPU threads (1 is fastest for these small networks and keeps runs reproducible)"""
    tensorboard: bool = True
    """write TensorBoard logs to OUT/tb"""
    action_mode: Literal["free", "timing"] = "free"
    """MTF-MARL action design: free (the executor sizes inside the director's limit) or timing (the director
    decides direction and size, the executor only times entries and exits: risk/actions.py)"""
    min_hold_bars: int = 0
    """timing mode: M1 bars an entry is held before the executor may leave it"""
    turnover_penalty: float = 0.0
    """reward penalty per full-size position traded (on top of the real costs, which the P&L already holds)"""
    exec_minutes: int = 1
    """the M1 executor decides every EXEC_MINUTES minutes, on completed bars (1: every M1 bar; 5, 15: M5, M15)"""
    reward: Literal["pnl_vol", "dsr"] = "pnl_vol"
    """P&L part of the joint reward: pnl_vol (P&L over the market's volatility) or dsr (its differential Sharpe
    ratio, training/rewards.py); the drawdown penalties are the same"""
    market_features: bool = False
    """add the market block to every observation (features/market.py: sessions, rollover, the previous day's and
    week's high/low, H1/H4/D1 returns, volatility ratios, carry, macro changes)"""

    def env_config(self) -> EnvConfig:
        return EnvConfig(symbol=self.symbol, episode_bars=self.episode_bars, max_exposure=self.max_exposure,
                         action_mode=self.action_mode, min_hold_bars=self.min_hold_bars,
                         turnover_penalty=self.turnover_penalty, exec_minutes=self.exec_minutes, reward=self.reward,
                         market_features=self.market_features)
