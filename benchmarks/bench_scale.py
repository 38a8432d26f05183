"""Scale-out benchmark: the same small backtest grid (``reports.evaluate``) with 1 worker in this process and with
2 Ray workers on this machine; speedup, Ray start-up and per-task overhead.

    python benchmarks/bench_scale.py [--days 20] [--years 2019 2020 2022 2024] [--workers 2]

Grid: ``sma_cross`` and ``buy_hold`` on the first ``--days`` days of each EURUSD year (10 days of feature history),
8 tasks by default. ``seq_s``: the grid in this process; ``ray_s``: the same grid as Ray tasks on a started
session whose workers have imported the backtest code (both runs start with the imports done); start-up is
reported apart: ``ray_init_s`` (``ray.init``) and ``worker_start_s`` (a worker process up with those imports);
``overhead_per_task_s``: the round trip of a no-op Ray task on the warm workers (submit, run, get), the cost Ray
adds to every task; ``grid_overhead_per_task_s``: (workers x ray_s - seq_s) / tasks, what the grid lost per task
against a perfect split (uneven tasks, other load on the machine). The rows of both runs must be
identical (elapsed times aside). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feeds.paths import fx_data_dir
from reports.evaluate import TIMING_KEYS, make_tasks, run_grid
from training.distributed import require
from training.periods import find_periods


def _noop(x: int) -> int:
    return x


def _warm(seconds: float) -> int:
    """Import what a backtest task imports (the cost of a worker's first task), then hold the worker a moment so
    the next warm-up lands on another one."""
    import run_backtest  # noqa: F401
    import strategies.backtest  # noqa: F401

    time.sleep(seconds)
    return os.getpid()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--days", type=int, default=20)
    p.add_argument("--years", type=int, nargs="+", default=[2019, 2020, 2022, 2024])
    p.add_argument("--strategies", default="sma_cross,buy_hold")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--noop-tasks", type=int, default=50)
    args = p.parse_args(argv)
    ray = require("ray", "bench_scale")
    periods = find_periods([fx_data_dir()], ["EURUSD"], args.years)
    with tempfile.TemporaryDirectory() as tmp:
        grid = {k: make_tasks(args.strategies.split(","), periods, Path(tmp) / k, args.days, history_days=10)
                for k in ("seq", "ray")}
        _warm(0.0)  # the in-process run starts with the imports done too
        t0 = time.perf_counter()
        seq = run_grid(grid["seq"], workers=1, progress=False)
        seq_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            warm = ray.remote(num_cpus=1)(_warm)
            pids = set(ray.get([warm.remote(1.0) for _ in range(args.workers)]))
            start_s = time.perf_counter() - t0 - 1.0
            if len(pids) != args.workers:
                raise SystemExit(f"the warm-up reached {len(pids)} of {args.workers} workers")
            t0 = time.perf_counter()
            par = run_grid(grid["ray"], workers=args.workers, progress=False)
            ray_s = time.perf_counter() - t0
            noop = ray.remote(num_cpus=1)(_noop)
            ray.get([noop.remote(i) for i in range(args.workers)])  # warm
            t0 = time.perf_counter()
            for i in range(args.noop_tasks):
                ray.get(noop.remote(i))
            per_task = (time.perf_counter() - t0) / args.noop_tasks
        finally:
            ray.shutdown()
    strip = [[{k: v for k, v in r["row"].items() if k not in TIMING_KEYS} for r in x] for x in (seq, par)]
    if strip[0] != strip[1]:
        raise SystemExit("the rows differ between 1 worker and Ray: the grid is not worker-independent")
    n = len(grid["seq"])
    out = {"tasks": n, "seq_s": round(seq_s, 2), "ray_s": round(ray_s, 2), "speedup": round(seq_s / ray_s, 2),
           "overhead_per_task_s": round(per_task, 4), "ray_init_s": round(init_s, 2),
           "worker_start_s": round(start_s, 2),
           "grid_overhead_per_task_s": round((args.workers * ray_s - seq_s) / n, 2), "workers": args.workers,
           "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(f"{n} tasks: in-process {seq_s:.1f} s, {args.workers} Ray workers {ray_s:.1f} s (speedup "
          f"{seq_s / ray_s:.2f}x; ray.init {init_s:.1f} s, worker start {start_s:.1f} s; no-op task round trip "
          f"{per_task * 1e3:.1f} ms)")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
