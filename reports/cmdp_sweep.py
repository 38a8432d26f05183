"""Run the seeded random agent through the CMDP on every real data year and tabulate the drawdowns.

    python -m reports.cmdp_sweep [--seeds 0 1] [--out docs/cmdp_sweep.md]

The claim it checks: max total and daily drawdown stay within the limits in every run, except breaches
that a price gap jumped past (listed with ``gap: true``).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from feeds.paths import fx_data_dir
from run_backtest import main as run_backtest_main

_FILE = re.compile(r"^([A-Z]{6})_M1_(\d{4})\.csv\.gz$")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--dd-mode", default="prop")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    rows = ["| symbol | year | seed | return | max daily DD | max total DD | soft-zone entries | blocked | shrunk "
            "| breaches (gap) | within limits |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    ok_all = True
    for f in sorted(fx_data_dir().iterdir()):
        m = _FILE.match(f.name)
        if not m:
            continue
        sym, year = m.groups()
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                rc = run_backtest_main(["--strategy", "random", "--symbol", sym, "--start", f"{year}-01-01",
                                        "--end", f"{year}-12-31", "--seed", str(seed), "--dd-mode", args.dd_mode,
                                        "--no-tearsheet", "--no-progress", "--out", tmp])
                if rc != 0:
                    raise SystemExit(f"run failed for {sym} {year} seed {seed}")
                s = json.loads((Path(tmp) / "summary.json").read_text())
            c = s["cmdp"]
            gaps = sum(b["gap"] for b in c["breaches"])
            tol = 1e-9
            within = (c["max_daily_dd"] <= c["daily_limit"] + tol and c["max_total_dd"] <= c["total_limit"] + tol)
            ok = within or gaps > 0
            ok_all &= ok
            rows.append(f"| {sym} | {year} | {seed} | {s['total_return']:+.2%} | {c['max_daily_dd']:.4%} | "
                        f"{c['max_total_dd']:.4%} | {c['soft_zone_entries']} | {c['blocked_actions']} | "
                        f"{c['shrunk_actions']} | {len(c['breaches'])} ({gaps}) | "
                        f"{'yes' if within else ('gap breach' if gaps else 'NO')} |")
            print(rows[-1], flush=True)
    text = "\n".join(rows) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
