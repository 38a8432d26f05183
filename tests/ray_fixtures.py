"""The one Ray session of a test run: ``ray.init(num_cpus=2, include_dashboard=False)``, shared by every test
module that asks for it (``@pytest.mark.usefixtures("ray_session")`` after ``from tests.ray_fixtures import
ray_session  # noqa: F401``) and shut down when the test session ends.

Without the ``[distributed]`` extra these tests skip (and fail on CI, like missing data)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    try:
        import ray
    except ImportError:
        msg = "ray is not installed (pip install -e '.[distributed]')"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    started = not ray.is_initialized()
    if started:  # a module that imported this fixture may already have started the session
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
