"""PNG plots of an agent run: the H4 director's limit, the M1 entries inside it, drawdown vs the CMDP limits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _changes(rows: np.ndarray) -> np.ndarray:
    """Rows where any column after the first (the bar) changes: a step plot of them is exact at decision
    resolution, however many decisions there were."""
    if len(rows) < 2:
        return rows
    keep = np.r_[True, (np.diff(rows[:, 1:], axis=0) != 0).any(axis=1)]
    keep[-1] = True
    return rows[keep]


def _times(minutes) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(minutes, dtype=np.int64), unit="m", utc=True)


def plot_h4_limit(decisions: list[tuple[int, float, float]], path: Path) -> Path:
    """The director's (limit, bias) at each decision, given as (minute since the epoch, limit, bias)."""
    fig, ax = plt.subplots(figsize=(12, 3.8))
    if decisions:
        at = _times([d[0] for d in decisions])
        ax.step(at, [d[1] for d in decisions], where="post", lw=0.9, label="max position limit [0, 1]")
        ax.step(at, [d[2] for d in decisions], where="post", lw=0.9, alpha=0.7, label="trend bias [-1, 1]")
    ax.axhline(0.3, color="grey", ls=":", lw=0.8)
    ax.axhline(-0.3, color="grey", ls=":", lw=0.8, label="bias threshold (longs only / shorts only beyond)")
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("limit (fraction of max lots) / bias")
    ax.set_title("H4 risk director: decision at each completed H4 bar", loc="left")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.08), ncol=3, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_m1_vs_limit(entries: list[tuple[int, float, float]], path: Path) -> Path:
    """The M1 executor's target at every M1 decision that changed it, given as (minute, fraction, limit) (drawn
    as steps, so a 1-minute trade shows as a spike) inside the band the director allows."""
    fig, ax = plt.subplots(figsize=(12, 3.8))
    if entries:
        e = _changes(np.asarray(entries, dtype=np.float64))
        at = _times(e[:, 0])
        ax.fill_between(at, -e[:, 2], e[:, 2], step="post", alpha=0.2, lw=0, label="allowed by the H4 limit")
        ax.step(at, e[:, 1], where="post", lw=0.6, color="C3", label="M1 target (fraction of max lots)")
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("fraction of max lots (+ long, - short)")
    ax.set_title("M1 executor: target position inside the H4 limit, at every decision", loc="left")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.08), ncol=2, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_drawdown(hours: list[list[float]], daily_limit: float, total_limit: float, soft_zone: float, mode: str,
                  path: Path) -> Path:
    """Hourly maxima of the daily and total drawdown (``analyzers.cmdp.CmdpAnalyzer.hours``) vs the limits."""
    fig, ax = plt.subplots(figsize=(11, 3.5))
    if hours:
        h = np.asarray(hours, dtype=np.float64)
        at = _times(h[:, 0])
        ax.plot(at, 100 * h[:, 1], lw=0.8, label="daily drawdown")
        ax.plot(at, 100 * h[:, 2], lw=0.8, label="total drawdown")
    for y, style, lab in ((daily_limit, "--", "daily limit"), (total_limit, "-.", "total limit"),
                          (soft_zone, ":", "soft zone")):
        ax.axhline(100 * y, ls=style, color="grey", lw=1, label=lab)
    ax.set_ylabel("drawdown, % of the initial balance" if mode == "prop" else "drawdown, % of the peak")
    ax.set_title(f"Drawdown vs the CMDP limits ({mode} rules, hourly max of the worst-price value)", loc="left")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.08), ncol=5, fontsize=8, frameon=False)
    return _save(fig, path)


_REGIME_COLOURS = {"trending": "tab:green", "ranging": "tab:blue", "volatile": "tab:red", "transition": "tab:grey"}


def plot_regime(decisions: list[tuple[int, int, float]], classes: tuple[str, ...], index: pd.DatetimeIndex,
                close: np.ndarray, path: Path) -> Path:
    """The price with the Regime agent's class in force shaded behind it; ``decisions`` are (minute, class index,
    confidence) at each Regime decision (each completed M30 bar), the price is drawn hourly."""
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(12, 4.6), sharex=True, height_ratios=(3, 1))
    px = pd.Series(np.asarray(close, dtype=np.float64), index=index).resample("1h").last().dropna()
    ax.plot(px.index, px.to_numpy(), lw=0.7, color="black", label="close (bid, hourly)")
    if decisions:
        d = _changes(np.asarray([(m, c) for m, c, _ in decisions], dtype=np.float64))
        at = list(_times(d[:, 0])) + [index[-1]]
        lo, hi = float(px.min()), float(px.max())
        for k, name in enumerate(classes):
            on = np.r_[d[:, 1] == k, False]
            ax.fill_between(at, lo, hi, where=on, step="post", color=_REGIME_COLOURS.get(name, f"C{k}"), alpha=0.25,
                            lw=0, label=name)
        conf = np.asarray(decisions, dtype=np.float64)
        axc.plot(_times(conf[:, 0]), conf[:, 2], lw=0.4, color="tab:purple")
    axc.axhline(0.4, color="grey", ls=":", lw=0.8)
    axc.set_ylabel("confidence")
    axc.set_ylim(0, 1)
    ax.set_ylabel("price")
    ax.set_title("Regime agent: class in force at each completed M30 bar (below: its confidence; under 0.4 the "
                 "consensus reads 'transition')", loc="left")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.1), ncol=5, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_risk_overrides(targets: list[tuple[int, float, float, float]], overrides: list[tuple[int, int]],
                        actions: tuple[str, ...], path: Path) -> Path:
    """The consensus's proposed target against the Risk agent's decision and the validated target (fractions of
    max lots, rows at changes: (minute, proposed, decided, validated)), and the cumulative count of the Risk agent's
    overrides by action (``overrides``: (minute, action index) where the decision differs from the proposal)."""
    fig, (ax, axo) = plt.subplots(2, 1, figsize=(12, 5.0), sharex=True, height_ratios=(3, 2))
    if targets:
        t = np.asarray(targets, dtype=np.float64)
        at = _times(t[:, 0])
        ax.step(at, t[:, 1], where="post", lw=0.6, color="grey", label="proposed (consensus, Risk 'allow')")
        ax.step(at, t[:, 2], where="post", lw=0.6, color="C3", label="after the Risk agent")
        ax.step(at, t[:, 3], where="post", lw=0.6, color="C0", alpha=0.8, label="validated (drawdown state, validator)")
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("target, fraction of max lots")
    ax.set_title("Risk agent: proposed vs decided vs validated target; below: its overrides, cumulative", loc="left")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.1), ncol=3, fontsize=8, frameon=False)
    if overrides:
        o = np.asarray(overrides, dtype=np.float64)
        at = _times(o[:, 0])
        for k, name in enumerate(actions):
            sel = o[:, 1] == k
            if sel.any():
                axo.step(at[sel], np.arange(1, int(sel.sum()) + 1), where="post", lw=0.9, label=name)
        axo.legend(loc="upper left", fontsize=8, frameon=False)
    axo.set_ylabel("overrides")
    return _save(fig, path)
