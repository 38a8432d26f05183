"""When each MTF-MARL agent decides: the one definition the env, the strategy, evaluation and the benchmarks share.

* The H4 director: at the first decision of a run, then at each M1 bar where a new H4 bar completed
  (``MarketContext.h4_pos`` changes; ``feeds.resample`` rule).
* The M1 executor: at every M1 bar (``exec_minutes`` = 1, the design), or, with a slower execution cadence
  (``exec_minutes`` = 5 or 15, a research lever against churn), at the first decision of a run and at each M1 bar
  where an M5 / M15 bar completed (bins from 00:00 UTC, the same completion rule), and wherever the director
  decides (its decision must reach the position: after a weekend the H4 bar of Friday's close completes at Sunday's
  first bar, where no M5 bar does). Between its decisions no order is sent; the orders it sends still fill at the
  next M1 bar's open. ``exec_minutes`` must divide 240.
"""

from __future__ import annotations

from collections.abc import Sequence

from feeds.resample import completes_at

H4_MINUTES = 240


def check_exec_minutes(exec_minutes: int) -> int:
    if exec_minutes < 1 or H4_MINUTES % exec_minutes:
        raise ValueError(f"exec_minutes must be a divisor of {H4_MINUTES} (1, 5, 15, ...), got {exec_minutes}")
    return exec_minutes


def director_due(h4_pos: Sequence[int], i: int, first: bool) -> bool:
    """The director decides at bar ``i``: the run's first decision, or an H4 bar completed at ``i``."""
    return first or h4_pos[i] != h4_pos[i - 1]


def executor_due(minutes: Sequence[int], i: int, exec_minutes: int, first: bool, director_decides: bool) -> bool:
    """The executor decides at bar ``i``: every bar at ``exec_minutes`` = 1, else its first decision, a director
    decision, or an ``exec_minutes`` bar completed at ``i``."""
    return (first or director_decides or exec_minutes == 1
            or completes_at(int(minutes[i]), int(minutes[i - 1]), exec_minutes))
