"""The drawdown CMDP inside a Backtrader run: synthetic bars with a known path, then real data.

Synthetic EURUSD bars fall steadily (or gap) under a scripted long position, so where the equity
floor lies, when it is crossed and at which price the position must close is known in advance.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brokers.account import TradingState
from brokers.sim import minute_of
from risk.drawdown import DrawdownRules
from risk.validator import validated_target
from strategies.backtest import BacktestConfig, run_backtest
from strategies.base import FxStrategy

REPO = Path(__file__).resolve().parents[1]
START = pd.Timestamp("2024-07-08 12:00", tz="UTC")  # a Monday; Prague midnight = 22:00 UTC (summer)
BOUNDARY = pd.Timestamp("2024-07-08 22:00", tz="UTC")
PIP = 0.0001


def bars(closes: np.ndarray, opens: np.ndarray | None = None, start: pd.Timestamp = START) -> pd.DataFrame:
    """M1 bid bars through ``closes``; each bar opens at the previous close unless ``opens`` says otherwise."""
    closes = np.round(np.asarray(closes, dtype=float), 6)
    if opens is None:
        opens = np.concatenate([[closes[0]], closes[:-1]])
    opens = np.round(np.asarray(opens, dtype=float), 6)
    idx = pd.date_range(start, periods=len(closes), freq="1min", tz="UTC", name="datetime")
    return pd.DataFrame({"open": opens, "high": np.maximum(opens, closes), "low": np.minimum(opens, closes),
                         "close": closes, "volume": np.full(len(closes), 100.0)}, index=idx)


def path(*legs: tuple[int, float]) -> np.ndarray:
    """Closes from 1.10000: each leg is (bars, pips per bar)."""
    steps = np.concatenate([np.full(n, pips * PIP) for n, pips in legs])
    return 1.10000 + np.cumsum(steps)


class Scripted(FxStrategy):
    """Trades a plan ``plan(i, strategy) -> target lots | None``; with ``validate`` every target goes through
    the pre-trade validator at a fixed ATR (no H4 warm-up needed). Records rejections with their minute."""

    params = (("plan", None), ("validate", False), ("atr", 10 * PIP))

    def __init__(self) -> None:
        super().__init__()
        self.rejected: list[tuple[int, str]] = []
        self.held: list[float] = []  # position after each bar
        self.verdicts: list = []

    def next(self) -> None:
        i = len(self.m1) - 1
        sim = self.broker.sim
        self.held.append(sim.lots)
        target = self.p.plan(i, self)
        if target is None:
            return
        if self.p.validate:
            verdict = validated_target(self.validator, sim, target, self.p.atr)
            self.verdicts.append(verdict)
            target = verdict.lots
        if target != sim.lots + sim.pending_lots:
            order = self.target_lots(target)
            if order is not None and order.status == order.Rejected:
                self.rejected.append((sim.minute, order.info.reject_reason))

    prenext = next  # trade before the first H4 bar completes: the synthetic runs are short


def run(m1: pd.DataFrame, plan, rules: DrawdownRules | None = None, validate: bool = False):
    cfg = BacktestConfig(symbol="EURUSD", rules=rules or DrawdownRules(),
                         strategy_params={"plan": plan, "validate": validate})
    res = run_backtest(Scripted, m1, cfg)
    return res, res.strategy_obj


def minute(ts: pd.Timestamp) -> int:
    return minute_of(ts.to_pydatetime())


# --------------------------------------------------------------------------- validator blocks / shrinks


def test_validator_blocks_and_shrinks_adds_near_the_daily_limit():
    # 20 lots long, then 180 bars falling 0.1 pip each (18 pips, ~3,600 USD) and flat; every 30 bars
    # from bar 5 the strategy asks for 10 more lots through the validator (ATR 10 pips: 210 USD a lot).
    m1 = bars(path((1, 0.0), (180, -0.1), (120, 0.0)))

    def plan(i, s):
        if i == 0:
            return 20.0
        if i >= 5 and i % 30 == 5:
            return s.broker.sim.lots + 10.0
        return None

    res, s = run(m1, plan, validate=True)
    c = res.cmdp
    assert c["shrunk_actions"] >= 1 and c["blocked_actions"] >= 1
    outcomes = [v.outcome for v in s.verdicts]
    assert outcomes[:2] == ["allow", "shrink"] and set(outcomes[2:]) == {"block"}
    # the first add was shrunk to the largest safe size: 4,770 USD of room at bar 5 (20 lots bought at
    # 1.10003, bid 1.09995, 70 USD commission) / 210 USD a lot (100,000 x (2 x 10 pips + 0.3 pip) + 2 x 3.5)
    first = s.verdicts[1]
    assert first.lots == 22.71
    assert max(s.held) == first.lots  # nothing beyond the shrunk size was ever held
    # the worst case was never realised: the run stays inside the daily limit, in the soft zone
    assert c["breaches"] == [] and 0.03 <= c["max_daily_dd"] < 0.05
    assert c["soft_zone_entries"] == 1 and c["halted"] is False


# --------------------------------------------------------------------------- daily limit: flatten at the floor


def test_daily_limit_flattens_at_the_floor_halts_for_the_day_and_resumes_next_day():
    # 25 lots long, 0.1 pip a bar down for 300 bars: the 5,000 USD of room is gone after ~19 pips.
    n = int((BOUNDARY - START).total_seconds() // 60) + 90  # into the next Prague day
    m1 = bars(path((1, 0.0), (300, -0.1), (n - 301, 0.0)))
    b_min = minute(BOUNDARY)

    def plan(i, s):
        if i == 0:
            return 25.0
        if i > 250 and i % 20 == 0 and s.broker.sim.lots == 0.0:
            return 5.0  # keeps trying to re-enter (straight to the broker, no validator)
        return None

    res, s = run(m1, plan)
    c = res.cmdp
    assert len(c["breaches"]) == 1
    b = c["breaches"][0]
    assert (b["kind"], b["gap"], b["limit"]) == ("daily", False, 0.05)
    assert c["max_daily_dd"] <= 0.05 + 1e-9 and b["drawdown"] == pytest.approx(0.05, abs=1e-9)
    assert c["halted"] is False
    stops = [f for f in res.fills if f.reason == "equity_stop"]
    assert len(stops) == 1 and stops[0].lots == -25.0
    stop_i = int(np.searchsorted(res.index.as_unit("s").asi8 // 60, stops[0].minute))
    assert pd.Timestamp(b["time"]) == res.index[stop_i]
    assert res.equity[stop_i] == pytest.approx(95_000.0, abs=1e-6)  # closed exactly at the floor
    assert m1["low"].iloc[stop_i] <= stops[0].price <= m1["open"].iloc[stop_i]
    first_new = int(np.searchsorted(res.index, BOUNDARY))
    assert all(lots == 0.0 for lots in s.held[stop_i:first_new + 1])  # flat until the new day's entry fills
    assert res.worst_equity[:first_new].min() >= 95_000.0 - 1e-6  # never below the day's floor
    # re-entries are refused for the rest of the Prague day, with the reason, then accepted
    refused = [t for t, why in s.rejected if "halted by the drawdown rules" in why]
    assert refused and all(stops[0].minute < t < b_min for t in refused)
    assert all("2024-07-08 22:00 UTC" in why for _, why in s.rejected)
    reentry = [f for f in res.fills if f.reason == "market" and f.lots == 5.0]
    assert len(reentry) == 1 and reentry[0].minute > b_min
    assert s.held[-1] == 5.0


def test_total_limit_breach_halts_for_good():
    # total limit 6 %: lose ~4.2 % on day one and close; on day two the total floor (94k) binds.
    rules = DrawdownRules(daily_limit=0.05, total_limit=0.06, soft_zone=0.03)
    day1 = int((BOUNDARY - START).total_seconds() // 60)
    m1 = bars(path((1, 0.0), (200, -0.1), (day1 - 201 + 60, 0.0), (300, -0.1), (600, 0.0)))
    b_min = minute(BOUNDARY)

    def plan(i, s):
        sim = s.broker.sim
        if i == 0:
            return 20.0
        if i == 210:
            return 0.0
        if sim.minute == b_min + 5:
            return 20.0
        if sim.minute > b_min + 400 and i % 30 == 0 and sim.lots == 0.0:
            return 1.0
        return None

    res, s = run(m1, plan, rules)
    c = res.cmdp
    assert [b["kind"] for b in c["breaches"]] == ["total"]
    b = c["breaches"][0]
    assert b["gap"] is False and b["drawdown"] == pytest.approx(0.06, abs=1e-9)
    assert c["halted"] is True and c["max_total_dd"] <= 0.06 + 1e-9
    assert res.equity[-1] == pytest.approx(94_000.0, abs=1e-6)
    assert s.held[-1] == 0.0 and res.strategy_obj.broker.sim.trading_state is TradingState.HALTED
    assert s.rejected and all("for good" in why for _, why in s.rejected)


# --------------------------------------------------------------------------- gap through the floor


@pytest.mark.parametrize(("gap_pips", "kind", "limit"), [(30, "daily", 0.05), (60, "total", 0.10)])
def test_gap_through_the_floor_closes_at_the_open(gap_pips, kind, limit):
    closes = path((1, 0.0), (60, 0.0), (1, -gap_pips), (60, 0.0))
    opens = np.concatenate([[closes[0]], closes[:-1]])
    opens[61] = closes[61]  # the bar opens at the gapped price
    m1 = bars(closes, opens)
    res, s = run(m1, lambda i, s: 20.0 if i == 0 else None)
    c = res.cmdp
    assert len(c["breaches"]) == 1
    b = c["breaches"][0]
    assert (b["kind"], b["gap"], b["limit"]) == (kind, True, limit)
    assert b["drawdown"] > limit and pd.Timestamp(b["time"]) == m1.index[61]
    stop = [f for f in res.fills if f.reason == "equity_stop"]
    assert len(stop) == 1 and stop[0].price == pytest.approx(opens[61])
    assert c["max_daily_dd"] > 0.05 and s.held[-1] == 0.0
    assert c["halted"] is (kind == "total")


# --------------------------------------------------------------------------- real data


def test_random_agent_respects_tight_limits_on_real_data(fx_dir, tmp_path):
    daily, total = 0.02, 0.04
    procs = {}
    for seed in (1, 2):
        cmd = [sys.executable, str(REPO / "run_backtest.py"), "--strategy", "random", "--seed", str(seed),
               "--no-tearsheet", "--no-progress", "--symbol", "EURUSD", "--data", str(fx_dir),
               "--start", "2024-03-01", "--end", "2024-03-28", "--daily-limit", str(daily),
               "--total-limit", str(total), "--out", str(tmp_path / f"s{seed}")]
        procs[seed] = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for seed, p in procs.items():
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
        c = json.loads((tmp_path / f"s{seed}" / "summary.json").read_text())["cmdp"]
        for key in ("mode", "daily_limit", "total_limit", "soft_zone_entries", "blocked_actions",
                    "shrunk_actions", "breaches", "halted", "max_daily_dd", "max_total_dd"):
            assert key in c, key
        assert (c["mode"], c["daily_limit"], c["total_limit"]) == ("prop", daily, total)
        gapped = any(b["gap"] for b in c["breaches"])
        if not gapped:
            assert c["max_daily_dd"] <= daily + 1e-9 and c["max_total_dd"] <= total + 1e-9, c
        events = c["soft_zone_entries"] + c["blocked_actions"] + c["shrunk_actions"] + len(c["breaches"])
        assert events > 0, c
        assert c["halted"] == any(b["kind"] == "total" for b in c["breaches"])
        assert not math.isnan(c["max_daily_dd"])
