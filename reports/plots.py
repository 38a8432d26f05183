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
