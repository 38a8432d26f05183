"""training.walk_forward (folds from the data, train/select/test per fold, resumable) and reports.walk_forward
(the published table through run_backtest), on a tiny budget."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from reports import walk_forward as report
from tests.ray_fixtures import ray_session  # noqa: F401
from training import walk_forward
from training.evaluate import validation_score
from training.periods import Fold, walk_forward_folds


def test_folds_follow_the_data_years() -> None:
    folds = walk_forward_folds([2017, 2019, 2020, 2022, 2023, 2024])
    assert folds == [Fold(2020, 2019, (2017,)), Fold(2022, 2020, (2017, 2019)), Fold(2023, 2022, (2017, 2019, 2020)),
                     Fold(2024, 2023, (2017, 2019, 2020, 2022))]
    assert [f.adjacent for f in folds] == [True, False, True, True]
    assert walk_forward_folds([2017, 2019, 2020], test_years=[2020]) == [Fold(2020, 2019, (2017,))]
    with pytest.raises(ValueError, match="no walk-forward fold"):
        walk_forward_folds([2019, 2020])


@pytest.mark.xdist_group("ray")  # one xdist worker holds the Ray session
@pytest.mark.usefixtures("ray_session")
def test_tiny_walk_forward_trains_selects_tests_and_reports(tmp_path: Path, fx_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    args = walk_forward.Args(test_years=(2020,), seeds=(0, 1), trainers=("mtf_marl",), total_steps=400,
                             learning_starts=200, eval_every=200, days=40, other_symbols=("GBPUSD",),
                             data=str(fx_dir), workers=2, runs=str(tmp_path / "wf"), fallback_flat=False)
    plan = walk_forward.main(args)
    rows = plan["rows"]
    assert [(r["fold"], r["symbol"]) for r in rows] == [("test2020", "EURUSD"), ("test2020-on-GBPUSD2017", "GBPUSD")]
    r = rows[0]
    assert (r["train_years"], r["val_year"], r["test_start"], r["test_end"]) == ([2017], 2019, "2020-01-01",
                                                                                 "2020-02-09")
    man = json.loads((tmp_path / "wf" / r["checkpoint"] / "manifest.json").read_text())
    seeds = [json.loads((tmp_path / "wf" / "test2020" / f"mtf_marl-s{s}" / "train_summary.json").read_text())
             for s in (0, 1)]
    assert man["trials"] == sum(len(s["history"]) for s in seeds) == r["trials"]
    assert man["val_period"] == ["2019-01-01", "2019-02-09"] and man["train_period"] == ["2017-01-01", "2017-02-09"]
    assert r["score"] == max(s["best_score"] for s in seeds)
    assert rows[1]["out_of_sample"].startswith("instrument only") and rows[1]["checkpoint"] == r["checkpoint"]
    assert {"total_return", "sharpe", "max_daily_dd", "breaches"} <= set(r["test"])
    # resumable: a second call reuses every run and every test evaluation
    stamp = (tmp_path / "wf" / "test2020" / "mtf_marl-s0" / "train_summary.json").stat().st_mtime_ns
    again = walk_forward.main(args)
    assert [x["test"] for x in again["rows"]] == [x["test"] for x in rows]
    assert (tmp_path / "wf" / "test2020" / "mtf_marl-s0" / "train_summary.json").stat().st_mtime_ns == stamp
    # the published table: the selected agents and a baseline through run_backtest, with PSR/DSR and the target
    out = tmp_path / "walk_forward.md"
    assert report.main(["--runs", str(tmp_path / "wf"), "--baselines", "buy_hold", "--history-days", "10",
                        "--workers", "2", "--no-progress", "--out", str(out)]) == 0
    md = out.read_text()
    assert "| test2020 | EURUSD | 2017 | 2019 |" in md and "| buy_hold |" in md and "(trained" not in md
    assert "test2020-on-GBPUSD2017" in md and "Sharpe > 1.5" in md and "not by time" in md
    bt = json.loads((tmp_path / "wf" / "walk_forward_backtests.json").read_text())
    assert [(b["strategy"], b["symbol"]) for b in bt] == [("mtf_marl", "EURUSD"), ("buy_hold", "EURUSD"),
                                                           ("mtf_marl", "GBPUSD"), ("buy_hold", "GBPUSD")]
    assert bt[0]["trials"] == r["trials"] and bt[1]["trials"] == 1 and bt[2]["symbol_mismatch"] is not None

    # the seed ensemble as the fold's model: built from both seeds' best checkpoints, scored on validation as one
    # model, one more trial; a one-member ensemble scores exactly what its seed's own validation did
    fold = Fold(2020, 2019, (2017,))
    ens = walk_forward.main(replace(args, ensemble=True))["rows"]
    assert [x["seed"] for x in ens] == ["ensemble", "ensemble"] and ens[0]["trials"] == r["trials"] + 1
    ens_man = json.loads((tmp_path / "wf" / ens[0]["checkpoint"] / "manifest.json").read_text())
    assert ens_man["ensemble"]["members"] == 2 and ens_man["trials"] == ens[0]["trials"]
    assert ens_man["walk_forward"]["seed"] == "ensemble" and ens_man["seed"] == [0, 1]
    _, one = walk_forward.fold_ensemble([tmp_path / "wf" / "test2020" / "mtf_marl-s1"], (1,), tmp_path / "one",
                                        "EURUSD", fold, walk_forward.fold_plan(fold, args), str(fx_dir))
    assert one == seeds[1]["best_score"]
    with pytest.raises(ValueError, match="built for mtf_marl only"):
        walk_forward.main(replace(args, ensemble=True, trainers=("mtf_marl", "td3")))
    assert report.main(["--runs", str(tmp_path / "wf"), "--baselines", "", "--history-days", "10", "--workers", "2",
                        "--no-progress", "--out", str(out)]) == 0  # the strategy trades the ensemble checkpoint
    assert "--ensemble" in out.read_text()
    bt = json.loads((tmp_path / "wf" / "walk_forward_backtests.json").read_text())
    assert [b["strategy"] for b in bt] == ["mtf_marl", "mtf_marl"] and bt[0]["trials"] == ens[0]["trials"]

    # flat as the fold's choice: the same runs (reused), flat made unbeatable on validation; the fold then trades
    # nothing in its test period, on EURUSD and on the other instrument, in the envs and through run_backtest
    monkeypatch.setattr(walk_forward, "FLAT_SCORE", 1e9)
    flat = walk_forward.main(replace(args, fallback_flat=True))["rows"]  # best single seed against flat
    assert [x["checkpoint"] for x in flat] == [None, None] and [x["selected"] for x in flat] == ["flat", "flat"]
    assert flat[0]["model_score"] == r["score"] and flat[0]["trials"] == r["trials"] + 1
    assert not (tmp_path / "wf" / "test2020" / "mtf_marl-selected").exists()
    for x in flat:
        te = x["test"]
        assert validation_score(te) == 0.0  # what FLAT_SCORE stands for: the validation score flat earns
        assert (te["total_return"], te["sharpe"], te["active_days"], te["breaches"], te["max_total_dd"]) == (0, 0, 0,
                                                                                                          0, 0)
        assert te["bars"] > 0 and te["h4_decisions"] > 0
    assert report.main(["--runs", str(tmp_path / "wf"), "--baselines", "", "--history-days", "10", "--workers", "2",
                        "--no-progress", "--out", str(out)]) == 0
    md = out.read_text()
    assert md.count("| mtf_marl → flat (validation) | +0.00% | 0.00 |") == 2 and "--fallback-flat" in md
    assert "mtf_marl meets it in 0 of 2 test periods" in md
    bt = json.loads((tmp_path / "wf" / "walk_forward_backtests.json").read_text())
    assert [(b["strategy"], b["trades"], b["total_return"]) for b in bt] == [("flat", 0, 0.0), ("flat", 0, 0.0)]
    assert [b["trials"] for b in bt] == [flat[0]["trials"]] * 2  # flat won against every candidate: the DSR's count


def _run(folder: Path, best: float, history: int, elapsed: float = 10.0) -> Path:
    (folder / "best").mkdir(parents=True)
    (folder / "best" / "manifest.json").write_text(json.dumps({"symbol": "EURUSD"}))
    (folder / "train_summary.json").write_text(json.dumps(
        {"best_score": best, "elapsed_s": elapsed, "history": [{"score": best}] * history}))
    return folder


@pytest.mark.parametrize(("scores", "fallback", "want"), [
    ((-0.3, -0.1), True, "flat"),  # every candidate loses on validation: flat
    ((0.0, -0.1), True, "flat"),  # a tie with flat goes to flat
    ((-0.3, 0.2), True, 1),  # a candidate above flat: the best one
    ((-0.3, -0.1), False, 1),  # without the fallback: the best one, even below flat
    ((0.4, 0.4), True, 0),  # equal scores: the lowest seed
])
def test_selection_takes_flat_when_no_candidate_beats_it_on_validation(tmp_path: Path, scores: tuple[float, float],
                                                                       fallback: bool, want: str | int) -> None:
    runs = [_run(tmp_path / f"s{i}", sc, history=3) for i, sc in enumerate(scores)]
    dst = tmp_path / "selected"
    (dst / "stale").mkdir(parents=True)  # a selection left by an earlier call is replaced (or removed)
    sel = walk_forward.select("mtf_marl", runs, (0, 1), dst, Fold(2020, 2019, (2017,)), fallback)
    assert sel["trials"] == 6 + fallback and sel["train_s"] == 20.0
    if want == "flat":
        assert (sel["selected"], sel["seed"], sel["score"], sel["model_score"]) == ("flat", None, 0.0, max(scores))
        assert sel["model_checkpoint"] == str(runs[scores.index(max(scores))] / "best") and not dst.exists()
    else:
        assert (sel["selected"], sel["seed"], sel["score"]) == ("checkpoint", want, scores[want])
        man = json.loads((dst / "manifest.json").read_text())
        assert man["trials"] == 6 + fallback and man["walk_forward"]["seed"] == want and not (dst / "stale").exists()


@pytest.mark.parametrize(("score", "want"), [(-0.2, "flat"), (0.0, "flat"), (0.3, "ensemble")])
def test_an_ensemble_competes_with_flat_as_one_model(tmp_path: Path, score: float, want: str) -> None:
    runs = [_run(tmp_path / f"s{i}", sc, history=2) for i, sc in enumerate((0.5, 0.9))]  # its members scored well
    ens = _run(tmp_path / "ens", 0.0, history=0) / "best"
    sel = walk_forward.select("mtf_marl", runs, (0, 1), tmp_path / "selected", Fold(2020, 2019, (2017,)), True,
                              (ens, score))
    assert sel["trials"] == 4 + 1 + 1  # the seeds' validations, the ensemble, flat
    if want == "flat":  # the members' own scores do not count: the ensemble is what would trade
        assert (sel["selected"], sel["model_seed"], sel["model_score"]) == ("flat", "ensemble", score)
    else:
        assert (sel["selected"], sel["seed"], sel["score"]) == ("checkpoint", "ensemble", score)
        assert json.loads((tmp_path / "selected" / "manifest.json").read_text())["trials"] == 6


def test_a_finished_run_of_another_configuration_is_not_reused(tmp_path: Path) -> None:
    run = _run(tmp_path / "s0", 0.1, history=1)
    (run / "best" / "manifest.json").write_text(json.dumps({"args": {"action_mode": "free", "exec_minutes": 1}}))
    walk_forward.check_design(run, "mtf_marl", {"action_mode": "free", "extra_symbols": ()})  # predates the lever
    with pytest.raises(ValueError, match="exec_minutes: 1 there, 5 here"):
        walk_forward.check_design(run, "mtf_marl", {"exec_minutes": 5})
    with pytest.raises(ValueError, match="extra_symbols"):
        walk_forward.check_design(run, "mtf_marl", {"extra_symbols": ("GBPUSD",)})
    walk_forward.check_design(run, "td3", {"extra_symbols": ("GBPUSD",)})  # not a lever of that trainer
    walk_forward.check_design(run, "mtf_marl", {"market_features": False})  # predates it: the default
    with pytest.raises(ValueError, match="market_features: None there, True here"):
        walk_forward.check_design(run, "mtf_marl", {"market_features": True})
