"""training.sweep: Ray Tune + Optuna over a trainer, every trial kept, the selection's trial count in the manifest,
resumable after an interruption (tiny budgets on real EURUSD bars)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from feeds.paths import REPO_ROOT
from tests.ray_fixtures import ray_session  # noqa: F401

TINY = dict(train_start="2024-01-01", train_end="2024-01-20", val_start="2024-01-21", val_end="2024-01-31",
            total_steps=800, learning_starts=200, eval_every=400, episode_bars=400, buffer_size=5000,
            eval_bars=1500)


def _cli(**kw) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]


@pytest.mark.xdist_group("ray")  # one xdist worker holds the Ray session
@pytest.mark.usefixtures("ray_session")
def test_sweep_is_resumed_after_an_interruption_and_records_its_trials(tmp_path: Path, fx_dir: Path) -> None:
    from training import sweep

    out = tmp_path / "sweep"
    kw = TINY | {"trainer": "mtf_marl", "trials": 2, "workers": 1, "out": str(out)}
    # a sweep interrupted (Ctrl-C) after its first trial finished
    p = subprocess.Popen([sys.executable, "-m", "training.sweep", *_cli(**kw)], cwd=REPO_ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not list(out.glob("trials/*/train_summary.json")):
        assert p.poll() is None, p.stderr.read()
        assert time.monotonic() - t0 < 120, "the first trial did not finish"
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)
    first = next(out.glob("trials/*/train_summary.json"))
    stamp = first.stat().st_mtime_ns
    assert not (out / "best").exists()  # an interrupted sweep selects nothing
    # the same command resumes it: the finished trial is kept, the other one is trained
    res = sweep.main(sweep.Args(**kw))
    assert first.stat().st_mtime_ns == stamp
    assert [t["number"] for t in res["trials"]] == [1, 2] and all(t["error"] is None for t in res["trials"])
    for t in res["trials"]:
        assert {"gamma", "batch_size", "max_exposure", "update_every", "expl_noise", "balanced_h4"} <= set(t["config"])
        summary = json.loads((out / t["run"] / "train_summary.json").read_text())
        assert t["score"] == summary["best_score"] and (out / t["run"] / "best" / "manifest.json").is_file()
        assert summary["args"]["gamma"] == t["config"]["gamma"]
    best = max(res["trials"], key=lambda t: (t["score"], -t["number"]))
    man = json.loads((out / "best" / "manifest.json").read_text())
    assert man["trials"] == sum(t["validations"] for t in res["trials"]) == res["candidates"] >= 2
    assert man["sweep"]["trial"] == best["trial"] and man["algorithm"] == "mtf_marl"
    assert "| 2 |" in (out / "sweep.md").read_text()
    # a finished sweep is not run again; other settings in the same folder are refused
    again = sweep.main(sweep.Args(**kw))
    assert [t["score"] for t in again["trials"]] == [t["score"] for t in res["trials"]]
    with pytest.raises(ValueError, match="other settings"):
        sweep.main(sweep.Args(**(kw | {"trials": 3})))


def test_trainer_args_and_refusals() -> None:
    from training import sweep

    a = sweep.trainer_args("td3", {"net_arch": "128x128", "gamma": 0.99, "out": "x", "balanced_h4": True})
    assert a.net_arch == (128, 128) and a.gamma == 0.99 and not hasattr(a, "balanced_h4")
    with pytest.raises(ValueError, match="unknown trainer"):
        sweep.main(sweep.Args(trainer="nope"))
    p = subprocess.run([sys.executable, "-m", "training.sweep", "--help"], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=60)
    assert p.returncode == 0 and "--trials" in p.stdout and "--ray-address" in p.stdout
