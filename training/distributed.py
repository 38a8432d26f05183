"""Ray, the optional distributed engine (the ``[distributed]`` extra): one way to start or join a session.

Everything that fans out (``reports.evaluate``, ``training.ablation``, ``training.sweep``,
``training.walk_forward``) calls :func:`ray_session`; Ray is imported only there, so the rest of the project
works without the extra and a missing extra is one clear sentence (:class:`MissingExtraError`).

* Local (the default): ``ray.init(num_cpus=N, include_dashboard=False)`` on this machine, shut down afterwards.
* Cluster: ``address="auto"`` joins the cluster this node belongs to (``ray start --head`` / ``ray start
  --address ...``), ``ray://HOST:PORT`` connects as a client; the repository is shipped as the job's
  ``working_dir`` (without ``.venv``, ``runs``, ``.git``), every node needs the same Python environment
  (``pip install -e '.[distributed]'``) and the market data at the path given on the command line (or
  ``$MTF_DATA_DIR`` / ``$MTF_MACRO_DIR``, passed on to the workers).
* Already initialised (a test session, a notebook): used as it is and left running.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from feeds.paths import REPO_ROOT

EXTRA_HINT = "pip install -e '.[distributed]'  (ray[tune]==2.60.0, optuna==5.0.0)"
_ENV_VARS = ("MTF_DATA_DIR", "MTF_MACRO_DIR")
_EXCLUDES = [".venv", "venv", "runs", ".git", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"]


class MissingExtraError(RuntimeError):
    """Ray (or Optuna) is needed for this and is not installed."""


def require(module: str, what: str) -> Any:
    """Import ``module`` (``ray``, ``ray.tune``, ``optuna``) or fail with one sentence naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"{what} needs the [distributed] extra ({module} is not installed): "
                                f"{EXTRA_HINT}") from e


def runtime_env(address: str | None) -> dict[str, Any]:
    """What a Ray job needs besides the code: our data-folder variables, and for a remote client the code."""
    env: dict[str, Any] = {}
    if variables := {k: os.environ[k] for k in _ENV_VARS if k in os.environ}:
        env["env_vars"] = variables
    if address and address.startswith("ray://"):  # a client: the cluster has no copy of this checkout
        env["working_dir"] = str(REPO_ROOT)
        env["excludes"] = _EXCLUDES
    return env


@contextlib.contextmanager
def ray_session(workers: int | None, address: str | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module with a session: local with ``workers`` CPUs (default: this machine's), or joined
    at ``address``. A session this call starts is shut down when the block ends; one already running is kept."""
    ray = require("ray", "running tasks on Ray")
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, runtime_env=runtime_env(address) or None)
    else:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, runtime_env=runtime_env(None) or None)
    try:
        yield ray
    finally:
        ray.shutdown()


def run_ordered(fn: Callable[..., Any], calls: Sequence[tuple], workers: int | None, address: str | None = None,
                on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[fn(*c) for c in calls]``: in this process for ``workers`` 1 (or None) without an address, else one Ray
    task (1 CPU) per call with at most ``workers`` in flight (None: as many as the session has CPUs). Results
    come back in the order of ``calls`` whatever order the tasks finish in; ``on_done(k, result)`` is called as
    each one finishes (a progress bar). The first task that raises ends the run with its exception."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if (workers or 1) == 1 and not address:
        out = []
        for k, c in enumerate(calls):
            out.append(fn(*c))
            if on_done is not None:
                on_done(k, out[-1])
        return out
    with ray_session(workers, address) as ray:
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        results: list[Any] = [None] * len(calls)
        pending: dict[Any, int] = {}
        todo = list(enumerate(calls))[::-1]
        try:
            while todo or pending:
                while todo and len(pending) < workers:
                    k, c = todo.pop()
                    pending[remote.remote(*c)] = k
                done, _ = ray.wait(list(pending), num_returns=1)
                k = pending.pop(done[0])
                try:
                    results[k] = ray.get(done[0])
                except ray.exceptions.RayTaskError as e:  # re-raise the task's own exception, not Ray's wrapper
                    raise e.as_instanceof_cause() from None
                if on_done is not None:
                    on_done(k, results[k])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return results
