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


def plot_h4_limit(index: pd.DatetimeIndex, decisions: list[tuple[int, float, float]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 3.5))
    if decisions:
        at = index[[d[0] for d in decisions]]
        ax.step(at, [d[1] for d in decisions], where="post", label="max position limit")
        ax.step(at, [d[2] for d in decisions], where="post", label="trend bias", alpha=0.7)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("H4 risk director: decisions at each completed H4 bar")
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_m1_vs_limit(index: pd.DatetimeIndex, entries: list[tuple[int, float, float]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 3.5))
    if entries:
        e = np.array(entries)
        s = pd.DataFrame({"entry": e[:, 1], "limit": e[:, 2]}, index=index[e[:, 0].astype(int)])
        h = s.resample("1h").last().dropna()
        ax.fill_between(h.index, -h["limit"], h["limit"], step="post", alpha=0.2, label="allowed by H4 limit")
        ax.step(h.index, h["entry"], where="post", lw=0.8, label="M1 target (fraction of max lots)")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("M1 executor: target position inside the H4 limit (hourly)")
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_drawdown(index: pd.DatetimeIndex, daily: np.ndarray, total: np.ndarray, daily_limit: float,
                  total_limit: float, soft_zone: float, mode: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 3.5))
    s = pd.DataFrame({"daily": daily, "total": total}, index=index[: len(daily)]).resample("1h").max().dropna()
    ax.plot(s.index, 100 * s["daily"], lw=0.8, label="daily drawdown")
    ax.plot(s.index, 100 * s["total"], lw=0.8, label="total drawdown")
    for y, style, lab in ((daily_limit, "--", "daily limit"), (total_limit, "-.", "total limit"),
                          (soft_zone, ":", "soft zone")):
        ax.axhline(100 * y, ls=style, color="grey", lw=1, label=lab)
    ax.set_ylabel("%")
    ax.set_title(f"Drawdown vs the CMDP limits ({mode} rules, hourly max of the worst-price value)")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)
