"""reports.stress on real bars with a tiny MTF-MARL checkpoint trained here: no unreported breach, no new order
past a floor, the macro shock invisible before its publication, the drawdown set-up handing over at 4.5 %."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from brokers.instruments import get_instrument
from reports import stress
from training.train_mtf_marl import Args, main

HISTORY = 30  # days of feature history: enough for the H4 warm-up, short enough for the suite


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, fx_dir) -> Path:
    out = tmp_path_factory.mktemp("stress") / "run"
    main(Args(train_start="2024-01-01", train_end="2024-01-20", val_start="2024-01-21", val_end="2024-01-31",
              learning_starts=200, update_every=2, batch_size=32, episode_bars=400, max_exposure=2.0,
              eval_bars=1500, buffer_size=5000, tensorboard=False, progress=False, total_steps=600, eval_every=300,
              checkpoint_every=10**9, seed=0, out=str(out)))
    return out / "last"


def _clean(r: dict, *runs: str) -> None:
    for k in runs:
        assert r[k]["unreported_breaches"] == 0 and r[k]["orders_past_floor"] == 0, (k, r[k])


def test_macro_shock_is_seen_only_from_its_publication(checkpoint: Path, macro_dir) -> None:
    r = stress.macro_shock("mtf_marl", checkpoint, start="2024-03-11", end="2024-03-19", shock_day="2024-03-13",
                           history_days=HISTORY)
    _clean(r, "shocked", "baseline")
    assert r["visible_from"] == "2024-03-14T00:00:00+00:00"  # VIX of the 13th is used from the next UTC midnight
    hit, base = r["_runs"]["shocked"].trace, r["_runs"]["baseline"].trace
    before = hit["minute"] < r["_event"]
    pd.testing.assert_frame_equal(hit[before], base[before])  # nothing of the shock leaks before it is published
    assert r["shocked"]["director_before"] == r["baseline"]["director_before"]
    assert r["shocked"]["director_after"] != r["baseline"]["director_after"]  # the director sees the shock


def test_drawdown_approach_hands_over_a_losing_position_at_4_5_percent(checkpoint: Path) -> None:
    r = stress.drawdown_approach("mtf_marl", checkpoint, start="2024-04-01", end="2024-04-16", history_days=HISTORY)
    _clean(r, "agent")
    a, s = r["agent"], r["setup"]
    assert 0.045 <= s["handover_daily_dd"] < 0.05 and a["lots_before"] == s["lots"] != 0
    assert a["pnl_day_before"] < -4000  # the position is losing when the agent takes over
    assert r["director_cuts_limit"] in (True, False, None)  # reported, not promised by the design
    trace = r["_runs"]["agent"].trace
    assert trace["scripted"].any() and not trace["scripted"].iloc[-1]
    assert a["max_daily_dd"] <= 0.05 + 1e-9 or a["breaches"]  # a pass beyond the limit is a reported breach


def test_regime_change_splices_a_trend_onto_a_range(checkpoint: Path) -> None:
    r = stress.regime_change("mtf_marl", checkpoint, weeks=1, history_days=HISTORY)
    _clean(r, "agent")
    assert r["trending"]["efficiency"] > 0.5 > 0.2 > r["ranging"]["efficiency"]
    assert pd.Timestamp(r["trending"]["moved_to"]).day_of_week == 6  # the week opens on Sunday evening, as real weeks


def test_the_checks_catch_what_they_look_for() -> None:
    trace = pd.DataFrame({"minute": [0, 1, 2], "daily_dd": [0.01, 0.051, 0.02], "total_dd": [0.01, 0.05, 0.02]})
    assert stress.unreported_breaches(trace, [], 0.05, 0.10) == 1
    assert stress.unreported_breaches(trace, [{"time": "1970-01-01T00:01:00+00:00", "kind": "daily"}],
                                      0.05, 0.10) == 0
    inst = get_instrument("EURUSD")
    order = {"current": 0.0, "lots": 10.0, "equity": 100_000.0, "floor": 95_000.0, "bid": 1.1, "spread": 0.00003,
             "atr": 0.003}  # 2 ATR x 10 lots = 6,000 USD > 5,000 of room
    assert len(stress.orders_past_floor([order], inst)) == 1
    assert stress.orders_past_floor([order | {"lots": 5.0}], inst) == []
    assert stress.orders_past_floor([order | {"current": 12.0}], inst) == []  # a reduction is always allowed


def test_the_four_agents_under_the_drawdown_approach(fx_dir: Path) -> None:
    """The committed four-agent checkpoint handed the losing position at 4.5 %: it does not act (its Tactical agent
    holds), and the hard rules end the day: flattened at the 5 % daily limit, a reported breach, no order past a
    floor; its director analogue (Structure's bias, the consensus cap) is recorded."""
    r = stress.drawdown_approach("four_agent", None, start="2024-04-01", end="2024-04-16", history_days=HISTORY)
    _clean(r, "agent")
    a = r["agent"]
    assert a["agent_orders"] == 0 and [b["kind"] for b in a["breaches"]] == ["daily"]
    assert a["max_daily_dd"] == pytest.approx(0.05, abs=1e-9) and a["abs_lots_max_after"] == r["setup"]["lots"]
    trace = r["_runs"]["agent"].trace
    assert trace["limit"].between(0, 1).all() and trace["bias"].between(-1, 1).all()
    assert trace["lots"].iloc[-1] == 0
