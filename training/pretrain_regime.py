"""Supervised pretraining of the Regime agent on real M30 bars: regime matrices in, future-window labels out.

    python -m training.pretrain_regime --train-start 2017-01-01 --train-end 2022-12-31 \\
        --val-start 2023-01-01 --val-end 2023-12-31 --preset small --epochs 8 --samples-per-epoch 12288 \\
        --seed 0 --out runs/regime

(the run behind ``docs/regime/``: 591 s on a shared 2-core CPU; the design preset is 10-15x slower per sample here).

Inputs at M30 bar t: the 96 x 19 regime matrix of ``features.matrices`` (bars <= t only); targets: the labels of
``training.regime_labels`` (bars t+1..t+K). Samples are the M30 bars whose matrix is ready and whose label is
defined; the validation period's matrices use ``features.context.HISTORY_DAYS`` of history before it (features
only; no label before ``--val-start`` is used). Cross-entropy with class weights n / (4 x count) of the training
labels ("balanced"), so the rarer trending / volatile classes are not drowned by transition; AdamW with a cosine
learning-rate decay; deterministic with ``--seed`` (torch threads 1, numpy Generator for the sample order).
No model selection on the validation year: the checkpoint is the last epoch's. Writes ``OUT/checkpoint``
(``agents.common.checkpoint``: tensors + manifest, loadable with ``weights_only=True``), ``OUT/regime_report.md``,
``OUT/regime_confusion.png`` and ``OUT/regime_summary.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import tyro

from agents.common.checkpoint import save_checkpoint
from agents.four_agent.config import REGIME_CLASSES, preset
from agents.four_agent.networks import REGIME_ALGORITHM, RegimeNet, n_params
from features.context import HISTORY_DAYS, history_start
from features.matrices import DEFAULT_MATRIX_SPEC, M30_MINUTES, M30_SPEC, RowWindows, m30_windows
from feeds.errors import DataError
from feeds.loaders import load_bars, to_utc
from feeds.macro import MacroTable, load_macro
from feeds.paths import REPO_ROOT, fx_data_dir
from feeds.resample import htf_bars
from training.data import segments
from training.regime_labels import UNLABELLED, LabelConfig, labels_for_bars, previous_label

log = logging.getLogger(__name__)
N_CLASSES = len(REGIME_CLASSES)


@dataclass
class Args:
    train_start: str = "2017-01-01"
    """first day of the training period (UTC)"""
    train_end: str = "2022-12-31"
    """last day of the training period"""
    val_start: str = "2023-01-01"
    """first day of the validation period"""
    val_end: str = "2023-12-31"
    """last day of the validation period"""
    symbol: str = "EURUSD"
    """instrument"""
    data: str = ""
    """M1 data file or folder; empty: $MTF_DATA_DIR or ../shared/data/fx"""
    preset: Literal["small", "design"] = "small"
    """network sizes (agents.four_agent.config)"""
    epochs: int = 8
    """passes of --samples-per-epoch samples"""
    samples_per_epoch: int = 0
    """training samples drawn (without replacement, fresh each epoch) per epoch; 0: all. Neighbouring M30 windows
    share 95 of 96 rows, so a subset per epoch loses little and fits a CPU budget"""
    batch_size: int = 256
    """minibatch size"""
    lr: float = 1e-3
    """AdamW learning rate (cosine decay to 5 % over the run)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    class_weights: bool = True
    """weight the cross-entropy by n / (4 x count) of the training labels"""
    horizon: int = LabelConfig.horizon
    """M30 bars of the label's future window"""
    seed: int = 0
    """seed of torch and of the sample order"""
    torch_threads: int = 1
    """torch CPU threads (1: reproducible, and the machine is shared)"""
    out: str = ""
    """output folder; empty: runs/pretrain-regime-<UTC time>"""


@dataclass(frozen=True)
class Samples:
    """Regime matrices and labels of one period: rows of all its segments concatenated (each segment keeps its own
    zero padding, so no window crosses a segment), one entry per sample."""

    windows: RowWindows
    pos: np.ndarray  # sample -> row in the concatenated windows
    labels: np.ndarray
    previous: np.ndarray  # the causal "previous label" baseline (UNLABELLED where none)
    times: np.ndarray  # M30 bar open, UTC ns

    def __len__(self) -> int:
        return len(self.pos)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.windows.batch(self.pos[idx])  # ready windows: every row real
        return torch.from_numpy(x), torch.from_numpy(self.labels[idx])


def period_samples(m1: pd.DataFrame, macro: MacroTable, start: pd.Timestamp, cfg: LabelConfig) -> Samples:
    """Samples of the M30 bars opening at or after ``start`` in each contiguous segment of ``m1`` (bars before
    ``start`` are feature history)."""
    rows, valid, pos, labels, prev, times = [], [], [], [], [], []
    offset = 0
    L = DEFAULT_MATRIX_SPEC.regime_rows
    for seg in segments(m1):
        m30 = htf_bars(seg, M30_MINUTES)
        if len(m30) == 0:
            continue
        _, regime = m30_windows(m30, macro)
        lab = labels_for_bars(m30, cfg).labels
        t = m30.index.as_unit("ns").asi8
        k = np.arange(len(m30))
        use = regime.ready(k) & (lab != UNLABELLED) & (t >= start.value)
        rows.append(regime.rows)
        valid.append(regime.valid)
        pos.append(offset + k[use])
        labels.append(lab[use])
        prev.append(previous_label(lab, cfg.horizon)[use])
        times.append(t[use])
        offset += regime.n_bars + L  # this segment's padding and rows
    if not rows or not sum(len(p) for p in pos):
        raise ValueError(f"no labelled M30 bar with a ready regime matrix from {start:%Y-%m-%d}: the period is too "
                         "short (a matrix needs 215 M30 bars, a label 24 more)")
    # segment s's padding starts at row offset_s; a window ending at its bar k is [offset_s + k + 1, + L)
    windows = RowWindows(np.concatenate(rows), np.concatenate(valid), L, M30_SPEC.warmup_bars)
    return Samples(windows, np.concatenate(pos), np.concatenate(labels), np.concatenate(prev), np.concatenate(times))


def load_period(args: Args, start: str, end: str, history: bool, macro: MacroTable, cfg: LabelConfig) -> Samples:
    data = Path(args.data) if args.data else fx_data_dir()
    first = history_start(start) if history else start
    m1 = load_bars(data, symbol=args.symbol, start=first, end=end)
    return period_samples(m1, macro, to_utc(start, "start", whole_day_end=False), cfg)


def confusion(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """4 x 4 counts, rows = true class, columns = predicted."""
    return np.bincount(y * N_CLASSES + p, minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    cm = confusion(y, p)
    recall = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    return {"accuracy": float(np.diag(cm).sum() / max(len(y), 1)), "balanced_accuracy": float(recall.mean()),
            **{f"recall_{c}": float(r) for c, r in zip(REGIME_CLASSES, recall, strict=True)}}


@torch.no_grad()
def predict(model: RegimeNet, s: Samples, batch: int = 1024) -> np.ndarray:
    model.eval()
    out = [model(s.batch(np.arange(a, min(a + batch, len(s))))[0]).logits.argmax(dim=1).numpy()
           for a in range(0, len(s), batch)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def write_report(out: Path, summary: dict, cm: np.ndarray) -> None:
    """``regime_report.md`` and ``regime_confusion.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for ax, m, title in ((axes[0], cm, "counts"), (axes[1], norm, "row-normalised (recall)")):
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(N_CLASSES):
            for j in range(N_CLASSES):
                txt = f"{m[i, j]:,}" if m is cm else f"{m[i, j]:.2f}"
                ax.text(j, i, txt, ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(N_CLASSES), REGIME_CLASSES, rotation=20)
        ax.set_yticks(range(N_CLASSES), REGIME_CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true (future-window label)")
        ax.set_title(title)
    v = summary["validation"]
    fig.suptitle(f"Regime agent ({summary['preset']}) on {summary['symbol']} {summary['val_period'][0]}.."
                 f"{summary['val_period'][1]}: accuracy {v['model']['accuracy']:.3f}, balanced "
                 f"{v['model']['balanced_accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(out / "regime_confusion.png", dpi=110)
    plt.close(fig)

    def row(name: str, d: dict) -> str:
        return (f"| {name} | {d['accuracy']:.3f} | {d['balanced_accuracy']:.3f} | "
                + " | ".join(f"{d[f'recall_{c}']:.3f}" for c in REGIME_CLASSES) + " |")

    lab = summary["labels"]
    lines = [
        f"# Regime agent pretraining: {summary['symbol']}, preset `{summary['preset']}`",
        "",
        f"Generated by `python -m training.pretrain_regime {summary['command']}` "
        f"({summary['finished_utc']} UTC, {summary['elapsed_s']:.0f} s wall, {summary['torch_threads']} torch thread).",
        "",
        f"- Train: {summary['train_period'][0]}..{summary['train_period'][1]} ({summary['n_train']:,} M30 samples; "
        f"{summary['samples_seen']:,} drawn over {summary['epochs']} epochs). Validation: "
        f"{summary['val_period'][0]}..{summary['val_period'][1]} ({summary['n_val']:,} samples), matrices with "
        f"{HISTORY_DAYS} days of feature history before it.",
        f"- Inputs: the 96 x {len(summary['matrix_columns'])} regime matrix at M30 bar t (bars <= t). Labels: "
        f"the next {lab['horizon']} M30 bars (t+1..t+{lab['horizon']}): volatile if realised vol > the "
        f"{lab['vol_quantile']:.0%} quantile of the last {lab['vol_lookback']} finished windows, trending if "
        f"|z| >= {lab['trend_z']}, ranging if |z| < {lab['range_z']} and efficiency < {lab['range_efficiency']}, "
        "else transition (`training/regime_labels.py`).",
        f"- Network: `RegimeNet`, {summary['n_params']:,} parameters; cross-entropy with class weights "
        f"{', '.join(f'{c} {w:.2f}' for c, w in zip(REGIME_CLASSES, summary['class_weights'], strict=True))}; "
        f"AdamW lr {summary['args']['lr']}, batch {summary['args']['batch_size']}, seed {summary['seed']}. "
        "The checkpoint is the last epoch (nothing selected on the validation year).",
        "",
        "## Validation",
        "",
        "| predictor | accuracy | balanced accuracy | " + " | ".join(f"recall {c}" for c in REGIME_CLASSES) + " |",
        "|---|---|---|" + "---|" * N_CLASSES,
        row("Regime network", v["model"]),
        row(f"majority class of train ({summary['majority_class']})", v["majority"]),
        row(f"previous label (bar t-{lab['horizon']}, causal)", v["previous_label"]),
        "",
        "Class shares: " + "; ".join(
            f"{c} train {a:.1%} / val {b:.1%}" for c, a, b in
            zip(REGIME_CLASSES, summary["train_class_share"], summary["val_class_share"], strict=True)) + ".",
        "",
        "Confusion matrix of the network (rows true, columns predicted):",
        "",
        "| true \\ predicted | " + " | ".join(REGIME_CLASSES) + " | total |",
        "|---|" + "---|" * (N_CLASSES + 1),
        *(f"| {c} | " + " | ".join(f"{x:,}" for x in cm[i]) + f" | {cm[i].sum():,} |"
          for i, c in enumerate(REGIME_CLASSES)),
        "",
        "![confusion matrix](regime_confusion.png)",
        "",
        "## Per epoch",
        "",
        "| epoch | train loss | val accuracy | val balanced accuracy | seconds |",
        "|---|---|---|---|---|",
        *(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_accuracy']:.3f} | {h['val_balanced_accuracy']:.3f} | "
          f"{h['seconds']:.0f} |" for h in summary["history"]),
        "",
    ]
    (out / "regime_report.md").write_text("\n".join(lines))


def main(args: Args) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = preset(args.preset)
    label_cfg = LabelConfig(horizon=args.horizon)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else REPO_ROOT / "runs" / f"pretrain-regime-{stamp}"
    out.mkdir(parents=True, exist_ok=True)

    macro = MacroTable.from_frame(load_macro())
    train = load_period(args, args.train_start, args.train_end, False, macro, label_cfg)
    val = load_period(args, args.val_start, args.val_end, True, macro, label_cfg)
    if train.times.max() >= val.times.min():
        raise ValueError("the validation period must begin after the training period")
    log.info("samples: train %d, validation %d", len(train), len(val))
    counts = np.bincount(train.labels, minlength=N_CLASSES)
    if (counts == 0).any():
        lacking = [c for c, n in zip(REGIME_CLASSES, counts, strict=True) if not n]
        raise ValueError(f"training labels lack classes {lacking}: use a longer training period")
    weights = len(train) / (N_CLASSES * counts) if args.class_weights else np.ones(N_CLASSES)

    model = RegimeNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    per_epoch = len(train) if args.samples_per_epoch <= 0 else min(args.samples_per_epoch, len(train))
    steps = args.epochs * ((per_epoch + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps), eta_min=0.05 * args.lr)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    history = []
    for epoch in range(1, args.epochs + 1):
        te = time.perf_counter()
        model.train()
        order = rng.permutation(len(train))[:per_epoch]
        total, seen = 0.0, 0
        for a in range(0, per_epoch, args.batch_size):
            x, y = train.batch(order[a:a + args.batch_size])
            loss = loss_fn(model(x).logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(y)
            seen += len(y)
        val_scores = scores(val.labels, predict(model, val))
        history.append({"epoch": epoch, "train_loss": total / max(seen, 1), "val_accuracy": val_scores["accuracy"],
                        "val_balanced_accuracy": val_scores["balanced_accuracy"],
                        "seconds": time.perf_counter() - te})
        log.info("epoch %d: train loss %.4f, val accuracy %.3f (balanced %.3f), %.0f s", epoch,
                 history[-1]["train_loss"], val_scores["accuracy"], val_scores["balanced_accuracy"],
                 history[-1]["seconds"])

    pred = predict(model, val)
    cm = confusion(val.labels, pred)
    majority = int(np.argmax(counts))
    prev = np.where(val.previous == UNLABELLED, majority, val.previous)
    validation = {"model": scores(val.labels, pred), "majority": scores(val.labels, np.full(len(val), majority)),
                  "previous_label": scores(val.labels, prev)}
    argv = sys.argv[1:] if Path(sys.argv[0]).stem == "pretrain_regime" else []
    summary = {
        "algorithm": REGIME_ALGORITHM, "symbol": args.symbol, "preset": cfg.name, "n_params": n_params(model),
        "train_period": [args.train_start, args.train_end], "val_period": [args.val_start, args.val_end],
        "n_train": len(train), "n_val": len(val), "epochs": args.epochs, "samples_seen": per_epoch * args.epochs,
        "labels": label_cfg.to_dict(), "class_weights": [float(w) for w in weights],
        "train_class_share": (counts / counts.sum()).tolist(),
        "val_class_share": (np.bincount(val.labels, minlength=N_CLASSES) / len(val)).tolist(),
        "majority_class": REGIME_CLASSES[majority], "validation": validation, "confusion": cm.tolist(),
        "history": history, "seed": args.seed, "torch_threads": args.torch_threads, "args": asdict(args),
        "matrix_columns": list(DEFAULT_MATRIX_SPEC.to_dict()["regime_columns"]),
        "command": " ".join(argv), "elapsed_s": time.perf_counter() - t0,
        "finished_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
    }
    manifest = {
        "algorithm": REGIME_ALGORITHM, "feature_spec": M30_SPEC.to_dict(), "matrix_spec": DEFAULT_MATRIX_SPEC.to_dict(),
        "config": cfg.to_dict(), "preset": cfg.name, "symbol": args.symbol,
        "train_period": summary["train_period"], "val_period": summary["val_period"], "history_days": HISTORY_DAYS,
        "label_config": summary["labels"], "class_weights": summary["class_weights"], "seed": args.seed,
        "epochs": args.epochs, "args": asdict(args), "validation": validation,
    }
    save_checkpoint(out / "checkpoint", {"regime": model.state_dict()}, manifest)
    write_report(out, summary, cm)
    (out / "regime_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("wrote %s", out)
    return summary


def cli() -> None:
    args = tyro.cli(Args)
    try:
        s = main(args)
    except (ValueError, KeyError, FileNotFoundError, DataError) as e:
        print(f"pretrain_regime: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    v = s["validation"]
    print(f"regime ({s['preset']}, {s['n_params']:,} params): validation accuracy {v['model']['accuracy']:.3f} "
          f"(balanced {v['model']['balanced_accuracy']:.3f}); majority {v['majority']['accuracy']:.3f}, previous "
          f"label {v['previous_label']['accuracy']:.3f}; {s['elapsed_s']:.0f} s -> {args.out or 'runs/'}")


if __name__ == "__main__":
    cli()
