"""Shared fixtures: the bundled FSDD subset, a local Ray instance, generated dataset layouts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # for tests/layouts.py

REPO = TESTS.parent
FSDD_MINI = REPO / "data" / "fsdd-mini"


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    return FSDD_MINI


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (2 CPUs, no dashboard), shut down at the end."""
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
