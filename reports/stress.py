"""Stress tests of the agents on real bars (design Task 3.3): a macro shock, a day already near the daily
drawdown limit with a losing position open, and a regime change.

    python -m reports.stress [--strategies mtf_marl] [--checkpoint mtf_marl=DIR] --out docs/stress.md

Every scenario is a backtest through ``strategies.backtest.run_backtest`` (the engine ``run_backtest.py`` drives)
of a recording subclass of the agent strategy (``stress_class``): it notes, on every M1 bar, the director's limit
and bias, the position, the equity and the drawdowns, and every order the agent sends with the validator's
verdict. Nothing in the strategies, the broker or the drawdown rules is changed; each scenario is built on top:

(a) **macro shock**: a copy of the FRED series with fed funds +2 percentage points from a chosen day on and a VIX
    spike (+25 points on that day, fading linearly over 5 days) is read through ``$MTF_MACRO_DIR``, so the shock
    goes through the same publication rules as the real series (visible from the next day: fed funds at 9:00 New
    York, VIX at 00:00 UTC); the same bars run with the real series as the baseline.
(b) **drawdown approach**: a scripted set-up (``DrawdownScript``) opens, on a real day with a large move, the
    position that loses on it, sized so that the loss reaches 4.5 % of the balance before the day's extreme, and
    hands the account to the agent at the first bar whose daily drawdown is 4.5 % or more, with that losing
    position open. Until then the agent runs as usual but its orders are not sent.
(c) **regime change**: the most trending two real weeks of one year spliced onto the most ranging two weeks of
    another (whole weeks later, so sessions and rollovers stay on their hours; prices scaled to join at the last
    close; macro values are those of the new dates).

For each: the director's limit and the position before and after the event, the P&L around it, the CMDP
events, and two checks that must hold: no unreported breach (every bar whose worst-price drawdown passed a limit
has a breach recorded that day) and no new order past a floor (every agent order that adds exposure fits the
validator's worst case: 2 ATR against the whole new position plus costs stays above the equity floor). Whether the
director cuts its limit near 4.5 % is reported, not asserted: the design does not promise it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brokers.instruments import Instrument, get_instrument
from features.context import HISTORY_DAYS
from feeds.calendar import trading_days
from feeds.loaders import load_bars
from feeds.macro import MACRO_FILES, load_macro, macro_asof
from feeds.paths import REPO_ROOT, fx_data_dir, macro_data_dir
from risk.validator import Verdict

_TOL = 1e-9
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def _minute(t: pd.Timestamp) -> int:
    return int((pd.Timestamp(t).tz_convert("UTC") - _EPOCH) // pd.Timedelta(minutes=1))


def _time(minute: int) -> pd.Timestamp:
    return _EPOCH + pd.Timedelta(minutes=int(minute))


# ------------------------------------------------------------------------------------ the recording strategy

@dataclass
class DrawdownScript:
    """Scripted set-up of scenario (b): at ``entry`` open ``lots`` (signed, unchecked: the set-up, not the agent)
    and keep them until the daily drawdown reaches ``handover_dd``; then the agent trades."""

    entry: pd.Timestamp
    lots: float
    handover_dd: float = 0.045
    handed_over_at: int | None = None
    state: str = "wait"

    def in_control(self, strat: Any, i: int) -> bool:
        acct, m = strat.account, int(strat.ctx.minutes[i])
        if self.state == "wait" and m >= _minute(self.entry):
            strat.target_lots(self.lots)
            self.state = "holding"
        elif self.state == "holding" and acct.lots == self.lots and acct.guard.daily_dd >= self.handover_dd:
            self.state, self.handed_over_at = "handed", m
        elif self.state == "holding" and acct.guard.breaches:
            raise RuntimeError("the scripted position breached before reaching the hand-over drawdown: the bar "
                               "jumped past it; pick another day")
        return self.state != "handed"


def stress_class(base: type) -> type:
    """``base`` (an agent strategy) that records every bar and every order, and can run a ``DrawdownScript``."""

    class Stress(base):
        params = (("script", None),)

        def __init__(self) -> None:
            super().__init__()
            self.trace: list[tuple] = []
            self.orders: list[dict[str, float]] = []
            self._scripting = False

        def next(self) -> None:
            i = len(self.m1) - 1
            script = self.p.script
            self._scripting = bool(script is not None and self.trading() and script.in_control(self, i))
            super().next()
            if self.trading():
                a, g = self.account, self.account.guard
                self.trace.append((int(self.ctx.minutes[i]), getattr(self, "limit", np.nan),
                                   getattr(self, "bias", np.nan), a.lots, a.equity, min(a.worst_equity, a.equity),
                                   g.daily_dd, g.total_dd, a.equity_floor, self._scripting))

        def trade_to(self, target: float, i: int) -> Verdict:
            acct = self.account
            if self._scripting:  # the agent decides as usual; the set-up keeps the account
                return Verdict("block", acct.lots, "stress script in control")
            before = {"minute": int(self.ctx.minutes[i]), "current": acct.lots, "target": target,
                      "equity": acct.equity, "floor": acct.equity_floor, "bid": acct.bid, "spread": acct.spread,
                      "atr": float(self.ctx.h4_atr[i])}
            v = super().trade_to(target, i)
            if v.lots != before["current"]:
                self.orders.append(before | {"lots": v.lots, "outcome": v.outcome})
            return v

    Stress.__name__ = Stress.__qualname__ = f"Stress{base.__name__}"
    return Stress


TRACE = ["minute", "limit", "bias", "lots", "equity", "worst_equity", "daily_dd", "total_dd", "floor", "scripted"]


# ------------------------------------------------------------------------------------ checks and measures

def unreported_breaches(trace: pd.DataFrame, breaches: list[dict], daily_limit: float, total_limit: float) -> int:
    """Bars whose worst-price drawdown passed a limit without a breach recorded at or before them that day (a
    daily one) or at all (a total one)."""
    times = sorted(_minute(pd.Timestamp(b["time"])) for b in breaches)
    total = sorted(_minute(pd.Timestamp(b["time"])) for b in breaches if b["kind"] == "total")
    bad = 0
    for m, d, t in trace[["minute", "daily_dd", "total_dd"]].itertuples(index=False):
        if t > total_limit + _TOL and not (total and total[0] <= m):
            bad += 1
        elif d > daily_limit + _TOL and not any(m - 1440 < b <= m for b in times):
            bad += 1
    return bad


def orders_past_floor(orders: list[dict], inst: Instrument, atr_mult: float = 2.0) -> list[dict]:
    """Agent orders that add exposure and whose worst case (``atr_mult`` ATR against the whole new position plus
    spread and both commissions, the validator's rule recomputed here) ends below the equity floor."""
    bad = []
    for o in orders:
        cur, new = o["current"], o["lots"]
        adds = abs(new) > abs(cur) + 1e-12 or (new * cur < 0 and new != 0)
        if not adds:
            continue
        per_lot = (inst.to_account(inst.contract_size * (atr_mult * o["atr"] + o["spread"]), o["bid"])
                   + 2 * inst.commission_per_lot)
        if o["equity"] - abs(new) * per_lot < o["floor"] - 1e-6:
            bad.append(o)
    return bad


DAY_BARS = 1440
"""M1 bars in a trading day: "the day before / after" an event are the 1,440 bars before / after it (a weekend
between them does not count)"""


def around(trace: pd.DataFrame, decisions: list[tuple[int, float, float]], event: int,
           label: str = "event") -> dict[str, Any]:
    """The director and the position before and after ``event`` (a minute), and the P&L around it; a day is
    ``DAY_BARS`` traded bars."""
    before, after = trace[trace["minute"] < event], trace[trace["minute"] >= event]
    if before.empty or after.empty:
        raise ValueError(f"the {label} at {_time(event)} is not inside the traded bars")
    prev = [d for d in decisions if d[0] < event][-3:]
    nxt = [d for d in decisions if d[0] >= event][:3]
    e0 = float(before["equity"].iloc[-1])

    def eq_after(bars: int) -> float:
        return float(after["equity"].iloc[min(bars, len(after)) - 1])

    day_before, day_after = before.iloc[-DAY_BARS:], after.iloc[:DAY_BARS]
    return {
        f"{label}_time": _time(event).isoformat(),
        "director_before": [{"time": _time(m).isoformat(), "limit": round(lim, 4), "bias": round(b, 4)}
                            for m, lim, b in prev],
        "director_after": [{"time": _time(m).isoformat(), "limit": round(lim, 4), "bias": round(b, 4)}
                           for m, lim, b in nxt],
        "limit_mean_day_before": _mean(day_before["limit"]),
        "limit_mean_day_after": _mean(day_after["limit"]),
        "lots_before": float(before["lots"].iloc[-1]),
        "abs_lots_mean_day_before": _mean(day_before["lots"].abs()),
        "abs_lots_mean_day_after": _mean(day_after["lots"].abs()),
        "abs_lots_max_after": float(after["lots"].abs().max()),
        "equity_before_event": e0,
        "pnl_day_before": e0 - float(day_before["equity"].iloc[0]),
        "pnl_day_after": eq_after(DAY_BARS) - e0,
        "pnl_5_days_after": eq_after(5 * DAY_BARS) - e0,
        "pnl_to_end": float(after["equity"].iloc[-1]) - e0,
        "daily_dd_before_event": float(before["daily_dd"].iloc[-1]),
        "daily_dd_at_event": float(after["daily_dd"].iloc[0]),
        "max_daily_dd_after": float(after["daily_dd"].max()),
    }


def _mean(s: pd.Series) -> float | None:
    return None if s.dropna().empty else float(s.mean())


# ------------------------------------------------------------------------------------ running a scenario

@dataclass(frozen=True)
class Run:
    """What a scenario keeps of one backtest."""

    trace: pd.DataFrame
    decisions: list[tuple[int, float, float]]
    orders: list[dict[str, float]]
    cmdp: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def macro_folder(frame: pd.DataFrame | None) -> Iterator[None]:
    """``$MTF_MACRO_DIR`` pointing at a copy of the macro series written from ``frame`` (None: unchanged)."""
    if frame is None:
        yield
        return
    old = os.environ.get("MTF_MACRO_DIR")
    with tempfile.TemporaryDirectory(prefix="stress-macro-") as tmp:
        for name, col in MACRO_FILES.items():
            s = frame[col].dropna()
            pd.DataFrame({"date": s.index.strftime("%Y-%m-%d"), "value": s.to_numpy()}).to_csv(
                Path(tmp) / name, index=False)
        os.environ["MTF_MACRO_DIR"] = tmp
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("MTF_MACRO_DIR", None)
            else:
                os.environ["MTF_MACRO_DIR"] = old


def run_agent(strategy: str, m1: pd.DataFrame, symbol: str, trade_from: pd.Timestamp, checkpoint: Path | None,
              script: DrawdownScript | None = None, macro: pd.DataFrame | None = None) -> Run:
    """One backtest of the recording ``strategy`` over ``m1`` (trading from ``trade_from``)."""
    from reports.output import summarise
    from strategies import STRATEGIES
    from strategies.backtest import BacktestConfig, run_backtest

    cls = stress_class(STRATEGIES[strategy])
    params: dict[str, Any] = {"script": script, "allow_symbol_mismatch": True}
    if checkpoint is not None:
        params["checkpoint"] = checkpoint
    cfg = BacktestConfig(symbol=symbol, strategy_params=params, trade_from=trade_from)
    with macro_folder(macro):
        res = run_backtest(cls, m1, cfg)
    s = res.strategy_obj
    trace = pd.DataFrame(s.trace, columns=TRACE)
    decisions = getattr(s, "decisions", None)
    if not (isinstance(decisions, list) and all(len(d) == 3 for d in decisions)):  # not MtfMarl's (minute, limit,
        changed = trace[["limit", "bias"]].diff().abs().sum(axis=1) > 0           # bias): the changes of the trace
        decisions = list(trace.loc[changed, ["minute", "limit", "bias"]].itertuples(index=False, name=None))
    return Run(trace, list(decisions), s.orders, res.cmdp,
               {k: v for k, v in summarise(res).items() if k in ("total_return", "sharpe", "max_drawdown", "trades",
                                                                  "fills", "costs")})


def checks(run: Run, inst: Instrument) -> dict[str, Any]:
    c = run.cmdp
    bad = orders_past_floor(run.orders, inst)
    return {"unreported_breaches": unreported_breaches(run.trace, c["breaches"], c["daily_limit"], c["total_limit"]),
            "orders_past_floor": len(bad), "agent_orders": len(run.orders),
            "breaches": c["breaches"], "soft_zone_entries": c["soft_zone_entries"],
            "blocked_actions": c["blocked_actions"], "shrunk_actions": c["shrunk_actions"],
            "max_daily_dd": c["max_daily_dd"], "max_total_dd": c["max_total_dd"], "halted": c["halted"]}


def _bars(symbol: str, start: str, end: str, history_days: int, data: Path | None) -> pd.DataFrame:
    first = pd.Timestamp(start) - pd.Timedelta(days=history_days)
    return load_bars(data or fx_data_dir(), symbol=symbol, start=first, end=end)


# (a) ---------------------------------------------------------------------------------------- macro shock

def shocked_macro(macro: pd.DataFrame, day: pd.Timestamp, fed_funds_pp: float = 2.0, vix_points: float = 25.0,
                  vix_days: int = 5) -> pd.DataFrame:
    """Fed funds + ``fed_funds_pp`` from observation day ``day`` on; VIX + ``vix_points`` on that day, fading
    linearly to 0 over ``vix_days`` days (missing observations stay missing)."""
    out = macro.copy()
    day = pd.Timestamp(day).normalize()
    out.loc[out.index >= day, "fed_funds"] += fed_funds_pp
    for k in range(vix_days):
        sel = out.index == day + pd.Timedelta(days=k)
        out.loc[sel, "vix"] += vix_points * (vix_days - k) / vix_days
    return out


def macro_shock(strategy: str, checkpoint: Path | None, symbol: str = "EURUSD", start: str = "2024-03-04",
                end: str = "2024-03-29", shock_day: str = "2024-03-13", history_days: int = HISTORY_DAYS,
                data: Path | None = None) -> dict[str, Any]:
    m1 = _bars(symbol, start, end, history_days, data)
    real = load_macro(macro_data_dir())
    shocked = shocked_macro(real, pd.Timestamp(shock_day))
    idx = m1.index[m1.index >= pd.Timestamp(start, tz="UTC")]
    diff = np.any(macro_asof(idx, shocked) != macro_asof(idx, real), axis=1)
    if not diff.any():
        raise ValueError(f"the shock of {shock_day} is not visible to any bar of {start}..{end}")
    event = _minute(idx[int(np.argmax(diff))])  # the first bar that can see it (the publication rules)
    base = run_agent(strategy, m1, symbol, pd.Timestamp(start, tz="UTC"), checkpoint)
    hit = run_agent(strategy, m1, symbol, pd.Timestamp(start, tz="UTC"), checkpoint, macro=shocked)
    inst = get_instrument(symbol)
    return {"scenario": "macro_shock", "symbol": symbol, "period": [start, end],
            "shock": {"observation_day": shock_day, "fed_funds_pp": 2.0, "vix_points": 25.0, "vix_days": 5},
            "visible_from": _time(event).isoformat(),
            "shocked": around(hit.trace, hit.decisions, event) | checks(hit, inst) | hit.summary,
            "baseline": around(base.trace, base.decisions, event) | checks(base, inst) | base.summary,
            "_runs": {"shocked": hit, "baseline": base}, "_event": event}


# (b) ---------------------------------------------------------------------------------------- drawdown approach

def pick_loss_day(m1: pd.DataFrame, inst: Instrument, start: str, end: str, cash: float = 100_000.0,
                  target_loss: float = 0.06, entry_hour: int = 7) -> tuple[pd.Timestamp, float, pd.Timestamp]:
    """(entry bar time, signed lots, time of the day's extreme) for the day in [start, end] whose largest move
    against a position opened at ``entry_hour`` UTC is largest: the side that loses it, sized to lose
    ``target_loss`` of ``cash`` at the extreme (leverage 30 caps it)."""
    bars = m1[(m1.index >= pd.Timestamp(start, tz="UTC")) & (m1.index <= pd.Timestamp(end, tz="UTC"))]
    best = None
    for _, day in bars.groupby(bars.index.normalize()):
        day = day[day.index.hour >= entry_hour]
        day = day[day.index.hour < 20]  # same Prague day, before the evening rollover hours
        if len(day) < 60:
            continue
        p0 = float(day["open"].iloc[0])
        down, up = p0 - float(day["low"].min()), float(day["high"].max()) - p0
        move, side = (down, 1.0) if down >= up else (up, -1.0)
        if best is None or move / p0 > best[0]:
            extreme = day["low"].idxmin() if side > 0 else day["high"].idxmax()
            best = (move / p0, day.index[0], side, move, p0, extreme)
    if best is None:
        raise ValueError(f"no full trading day in {start}..{end}")
    _, entry, side, move, p0, extreme = best
    per_lot = inst.to_account(inst.contract_size * move, p0)
    cap = 30.0 * cash / inst.to_account(inst.contract_size * p0, p0) * 0.95
    lots = inst.round_lots(min(target_loss * cash / per_lot, cap))
    if lots * per_lot < 0.045 * cash:
        raise ValueError(f"the largest move in {start}..{end} cannot take a 30:1 account to 4.5 %: "
                         "pick a longer period")
    return entry, side * lots, extreme


def drawdown_approach(strategy: str, checkpoint: Path | None, symbol: str = "EURUSD", start: str = "2024-04-01",
                      end: str = "2024-04-26", history_days: int = HISTORY_DAYS,
                      data: Path | None = None) -> dict[str, Any]:
    m1 = _bars(symbol, start, end, history_days, data)
    inst = get_instrument(symbol)
    lo = str((pd.Timestamp(start) + pd.Timedelta(days=7)).date())
    hi = str((pd.Timestamp(end) - pd.Timedelta(days=3)).date())
    entry, lots, extreme = pick_loss_day(m1, inst, lo, hi)
    script = DrawdownScript(entry, lots)
    run = run_agent(strategy, m1, symbol, pd.Timestamp(start, tz="UTC"), checkpoint, script=script)
    if script.handed_over_at is None:
        raise RuntimeError(f"the scripted {lots:+} lots from {entry} never reached 4.5 % daily drawdown")
    ev = script.handed_over_at
    out = around(run.trace, run.decisions, ev, "handover")
    before = [d["limit"] for d in out["director_before"]]
    after = [d["limit"] for d in out["director_after"]]
    cut = (after[0] < before[-1] - 0.05) if before and after else None
    return {"scenario": "drawdown_approach", "symbol": symbol, "period": [start, end],
            "setup": {"entry": entry.isoformat(), "lots": lots, "day_extreme": pd.Timestamp(extreme).isoformat(),
                      "handover_daily_dd": float(run.trace.set_index("minute").loc[ev, "daily_dd"])},
            "director_cuts_limit": cut, "agent": out | checks(run, inst) | run.summary,
            "_runs": {"agent": run}, "_event": ev}


# (c) ---------------------------------------------------------------------------------------- regime change

def week_windows(m1: pd.DataFrame, weeks: int = 2) -> pd.DataFrame:
    """Every run of ``weeks`` whole FX weeks (Monday-labelled trading weeks): start, end, efficiency ratio (|net
    move| / sum of |daily moves|: 1 a straight trend, near 0 a range) and net move."""
    close = m1["close"].groupby(trading_days(m1.index)).last()
    week = close.index.to_period("W-SUN").start_time
    rows = []
    starts = sorted(set(week))
    for k in range(len(starts) - weeks + 1):
        sel = close[(week >= starts[k]) & (week <= starts[k + weeks - 1])]
        if len(sel) < 4 * weeks:
            continue
        d = np.abs(np.diff(sel.to_numpy())).sum()
        net = float(sel.iloc[-1] - sel.iloc[0])
        rows.append({"week": starts[k], "efficiency": abs(net) / d if d > 0 else 0.0, "net": net})
    return pd.DataFrame(rows)


def _week_bars(m1: pd.DataFrame, monday: pd.Timestamp, weeks: int) -> pd.DataFrame:
    """Bars of the trading weeks from ``monday``: from the Sunday 20:00 UTC before it (the session opens at
    21:00 or 22:00) to that many weeks later."""
    lo = pd.Timestamp(monday, tz="UTC") - pd.Timedelta(hours=4)
    return m1[(m1.index >= lo) & (m1.index < lo + pd.Timedelta(weeks=weeks))]


def splice(ranging: pd.DataFrame, trending: pd.DataFrame, r_monday: pd.Timestamp, t_monday: pd.Timestamp,
           weeks: int) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The trending weeks moved to right after the ranging ones (whole weeks, so hours and weekdays keep their
    meaning) and scaled to open at the ranging segment's last close; returns the bars and the splice time."""
    shift = (pd.Timestamp(r_monday) + pd.Timedelta(weeks=weeks)) - pd.Timestamp(t_monday)
    t = trending.copy()
    t.index = t.index + shift
    scale = float(ranging["close"].iloc[-1]) / float(t["open"].iloc[0])
    t[["open", "high", "low", "close"]] *= scale
    out = pd.concat([ranging, t])
    if not out.index.is_monotonic_increasing or out.index.has_duplicates:
        raise ValueError("the spliced bars overlap: the trending weeks must come after the ranging ones")
    out.attrs = dict(ranging.attrs)
    return out, t.index[0]


def regime_change(strategy: str, checkpoint: Path | None, symbol: str = "EURUSD", range_year: int = 2024,
                  trend_year: int = 2022, weeks: int = 2, history_days: int = HISTORY_DAYS,
                  data: Path | None = None) -> dict[str, Any]:
    src = data or fx_data_dir()
    r_all = load_bars(src, symbol=symbol, start=f"{range_year}-01-01", end=f"{range_year}-12-31")
    t_all = load_bars(src, symbol=symbol, start=f"{trend_year}-01-01", end=f"{trend_year}-12-31")
    rw, tw = week_windows(r_all, weeks), week_windows(t_all, weeks)
    # the ranging weeks need the weeks of feature history before them inside the same data
    rw = rw[rw["week"] >= r_all.index[0].tz_localize(None).normalize() + pd.Timedelta(days=history_days + 7)]
    r_pick, t_pick = rw.loc[rw["efficiency"].idxmin()], tw.loc[tw["efficiency"].idxmax()]
    ranging = _week_bars(r_all, r_pick["week"], weeks)
    history = r_all[(r_all.index < ranging.index[0])
                    & (r_all.index >= ranging.index[0] - pd.Timedelta(days=history_days))]
    trending = _week_bars(t_all, t_pick["week"], weeks)
    m1, at = splice(pd.concat([history, ranging]), trending, r_pick["week"], t_pick["week"], weeks)
    run = run_agent(strategy, m1, symbol, ranging.index[0], checkpoint)
    inst = get_instrument(symbol)
    ev = _minute(at)
    tr = run.trace.set_index("minute")
    seg = {"ranging": tr[tr.index < ev], "trending": tr[tr.index >= ev]}
    return {"scenario": "regime_change", "symbol": symbol,
            "ranging": {"weeks_from": str(r_pick["week"].date()), "efficiency": round(float(r_pick["efficiency"]), 3),
                        "net_move": float(r_pick["net"])},
            "trending": {"weeks_from": str(t_pick["week"].date()), "efficiency": round(float(t_pick["efficiency"]), 3),
                         "net_move": float(t_pick["net"]), "moved_to": at.isoformat()},
            "segments": {k: {"pnl": float(v["equity"].iloc[-1] - v["equity"].iloc[0]) if len(v) else None,
                             "limit_mean": _mean(v["limit"]), "bias_mean": _mean(v["bias"]),
                             "abs_lots_mean": _mean(v["lots"].abs())} for k, v in seg.items()},
            "agent": around(run.trace, run.decisions, ev, "splice") | checks(run, inst) | run.summary,
            "_runs": {"agent": run}, "_event": ev}


# ------------------------------------------------------------------------------------ report

def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = _time(result["_event"])
    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True)
    for name, run in result["_runs"].items():
        t = pd.to_datetime(run.trace["minute"], unit="m", utc=True)
        axes[0].step(t, run.trace["limit"], where="post", lw=0.8, label=f"limit ({name})")
        axes[0].step(t, run.trace["bias"], where="post", lw=0.6, alpha=0.6, label=f"bias ({name})")
        axes[1].step(t, run.trace["lots"], where="post", lw=0.8, label=name)
        axes[2].plot(t, 100 * run.trace["daily_dd"], lw=0.8, label=name)
    for ax in axes:
        ax.axvline(ev, color="k", ls="--", lw=0.8)
    axes[0].set_ylabel("director")
    axes[1].set_ylabel("position, lots")
    axes[2].set_ylabel("daily DD, %")
    axes[2].axhline(5.0, color="grey", ls="-.", lw=0.8)
    axes[2].axhline(4.5, color="grey", ls=":", lw=0.8)
    axes[0].legend(fontsize=7, ncol=4, loc="upper left")
    axes[1].legend(fontsize=7)
    axes[0].set_title(f"{result['scenario']}: event at {ev:%Y-%m-%d %H:%M} UTC (dashed)", loc="left", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.0f}"
    if isinstance(v, list):
        return "; ".join(f"{d['time'][5:16]} {d['limit']:.2f}/{d['bias']:+.2f}" if isinstance(d, dict) and
                         {"limit", "bias"} <= set(d) else str(d) for d in v) or "none"
    return "n/a" if v is None else str(v)


def markdown(results: dict[str, list[dict]], command: str, pngs: dict[str, str]) -> str:
    out = ["# Stress tests (design Task 3.3)", "", __doc__.split("\n\n", 2)[2].strip(), "", "    " + command, ""]
    keys = ["director_before", "director_after", "limit_mean_day_before", "limit_mean_day_after", "lots_before",
            "abs_lots_mean_day_before", "abs_lots_mean_day_after", "abs_lots_max_after", "daily_dd_before_event",
            "daily_dd_at_event", "max_daily_dd_after", "pnl_day_before", "pnl_day_after", "pnl_5_days_after",
            "pnl_to_end", "total_return", "trades", "agent_orders", "blocked_actions", "shrunk_actions",
            "soft_zone_entries", "breaches", "max_daily_dd", "max_total_dd", "unreported_breaches", "orders_past_floor"]
    for strategy, res in results.items():
        for r in res:
            runs = [k for k in ("shocked", "baseline", "agent") if k in r]
            out += [f"## {strategy}: {r['scenario'].replace('_', ' ')}", ""]
            info = {k: v for k, v in r.items() if not k.startswith("_") and k not in runs + ["scenario"]}
            out += [f"* {k}: `{json.dumps(v, default=str)}`" for k, v in info.items()] + [""]
            out += ["| | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
            out += [f"| {k} | " + " | ".join(_fmt(r[x].get(k)) for x in runs) + " |" for k in keys
                    if any(k in r[x] for x in runs)]
            out += ["", f"![{r['scenario']}]({pngs[strategy + r['scenario']]})", ""]
    out += ["Director entries read `MM-DD HH:MM limit/bias` (the three director decisions before and after the "
            "event). P&L in USD on a $100,000 account. `unreported_breaches` and `orders_past_floor` must be 0 "
            "(asserted in `tests/test_stress.py`)."]
    return "\n".join(out) + "\n"


STRESSED = ("mtf_marl", "four_agent")
"""agent strategies the stress tests are for (those registered)"""
SCENARIOS = {"macro_shock": macro_shock, "drawdown_approach": drawdown_approach, "regime_change": regime_change}


def main(argv: list[str] | None = None) -> int:
    from strategies import STRATEGIES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    agents = [s for s in STRESSED if s in STRATEGIES]
    p.add_argument("--strategies", default=None,
                   help=f"agent strategies (default: those of {', '.join(agents)} with a committed checkpoint)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="STRATEGY=DIR",
                   help="an agent strategy's checkpoint (repeatable; default: the committed one)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    p.add_argument("--history-days", type=int, default=HISTORY_DAYS, help="feature history before each period")
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "stress.md")
    args = p.parse_args(argv)
    from agents.common.checkpoint import CheckpointError

    checkpoints = {k: Path(v) for k, v in (c.split("=", 1) for c in args.checkpoint)}
    if args.strategies is None:
        chosen = []
        for s in agents:
            ck = STRATEGIES[s].default_checkpoint
            if s in checkpoints or (ck / "manifest.json").is_file():
                chosen.append(s)
            else:
                print(f"{s}: no checkpoint at {ck}: skipped (pass --strategies {s} --checkpoint {s}=DIR)")
    else:
        chosen = [s for s in args.strategies.split(",") if s]
    results: dict[str, list[dict]] = {}
    pngs: dict[str, str] = {}
    png_dir = args.out.parent / args.out.stem
    png_dir.mkdir(parents=True, exist_ok=True)
    try:
        for strategy in chosen:
            results[strategy] = []
            for name in [s for s in args.scenarios.split(",") if s]:
                r = SCENARIOS[name](strategy, checkpoints.get(strategy), history_days=args.history_days,
                                    data=args.data)
                results[strategy].append(r)
                png = plot(r, png_dir / f"{strategy}_{name}.png")
                pngs[strategy + name] = str(png.relative_to(args.out.parent))
                print(f"{strategy} {name}: unreported breaches {sum(checks_of(r, 'unreported_breaches'))}, "
                      f"orders past a floor {sum(checks_of(r, 'orders_past_floor'))}", flush=True)
    except (CheckpointError, ValueError, RuntimeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    command = "python -m reports.stress " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(markdown(results, command, pngs))
    clean = {s: [{k: v for k, v in r.items() if not k.startswith("_")} for r in rs] for s, rs in results.items()}
    (png_dir / "stress.json").write_text(json.dumps(clean, indent=2, default=str) + "\n")
    bad = sum(sum(checks_of(r, k)) for rs in results.values() for r in rs
              for k in ("unreported_breaches", "orders_past_floor"))
    return 1 if bad else 0


def checks_of(r: dict[str, Any], key: str) -> list[int]:
    return [r[x][key] for x in ("shocked", "baseline", "agent") if x in r]


if __name__ == "__main__":
    raise SystemExit(main())
