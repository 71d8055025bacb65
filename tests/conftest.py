"""Shared fixtures: the bundled FSDD subset, a local Ray instance, generated dataset layouts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

REPO = TESTS.parent
FSDD_MINI = REPO / "data" / "fsdd-mini"


# The files that take longest in `make test` on a 2-core machine, longest first, are collected first: `make
# test` runs two pytest-xdist workers that take one file at a time in collection order (--no-loadscope-reorder:
# xdist would order files by test count), so the long files start early and neither worker is left alone with
# one at the end. Keep the list in step with the slowest files (`pytest --durations`) when they change.
LONGEST_FIRST = ["test_interrupts.py", "test_sweep.py", "test_quiet_output.py", "test_jobs_submit.py",
                 "test_raw_s3.py", "test_trial.py", "test_trial_memory.py", "test_models.py",
                 "test_autoscaling.py", "test_paper_plan.py", "test_preprocess.py", "test_modern_recipe.py",
                 "test_representation_plan.py", "test_soundclr_plan.py", "test_tracking.py", "test_soundclr_trial.py",
                 "test_cluster_localhost.py", "test_s3_preflight.py", "test_protocol.py", "test_sweep_storage_full.py",
                 "test_dataset_verify.py"]


def pytest_collection_modifyitems(config, items):
    """Order the collected files longest first (a stable sort: tests keep their order within a file)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    return FSDD_MINI


def ray_cpus() -> int:
    """Logical CPUs of this test process's Ray: the machine's cores shared between the pytest-xdist workers
    (`make test`: 2 workers on 2 cores -> 1 each). More would only start more Tune actors and Ray Data
    workers side by side, each importing torch, on cores the other worker already keeps busy."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 2) // workers)


def pytest_configure(config):
    """Each test process computes with :func:`ray_cpus` threads (torch's OpenMP pool and numpy's BLAS): under
    `make test` the two workers would otherwise each run 2 threads on the 2 cores, and the threads of one
    spin-wait on cores the other worker needs. (The xdist controller runs no test: it keeps its defaults.)

    The run gets its own node data cache (``orchestrator.data_cache``), made by the first process here (the
    xdist controller, whose workers and their Ray processes inherit it) and removed when that process exits."""
    if not os.environ.get("RETHINK_AUDIO_DATA_CACHE"):
        import atexit
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="rethink-audio-test-cache-")
        os.environ["RETHINK_AUDIO_DATA_CACHE"] = folder
        atexit.register(shutil.rmtree, folder, True)
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        return
    _point_the_fault_seam_at_a_file_of_this_process()
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(ray_cpus())
    torch.set_num_threads(ray_cpus())


def _point_the_fault_seam_at_a_file_of_this_process() -> None:
    """The trial's fault seam (tests/faults.py) reads the file FAULTS_ENV names; each test process (each
    xdist worker) gets its own, set here, before its Ray starts, so its Ray workers inherit the name."""
    import atexit
    import shutil
    import tempfile

    from orchestrator.trial import FAULTS_ENV

    folder = tempfile.mkdtemp(prefix="rethink-audio-test-faults-")
    os.environ[FAULTS_ENV] = os.path.join(folder, "faults.json")
    atexit.register(shutil.rmtree, folder, True)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (:func:`ray_cpus` CPUs, no dashboard), shut down at the end.
    Tests must not need more than 1 CPU of it at once (a 2-worker DDP trial asks for half a CPU per worker)."""
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not ray.is_initialized():
        ray.init(num_cpus=ray_cpus(), include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_fsdd(ray_local, fsdd_root, tmp_path_factory, worker_id) -> str:
    """The bundled FSDD subset at 3 x 32 x 32, preprocessed once per test run: real audio, small enough for
    CPU trials in seconds. Tests only read it (a dataset version is immutable; trials never write into it).

    Under pytest-xdist the workers share one copy: the first to get here builds it under the run's common
    temporary folder while holding a file lock, the others then find the finished version and reuse it."""
    from filelock import FileLock

    from orchestrator.config import FeatureConfig
    from orchestrator.preprocess import PreprocessRequest, preprocess

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    with FileLock(shared / "tiny_fsdd.lock"):
        return preprocess(PreprocessRequest("fsdd", str(fsdd_root), str(shared / "tiny-fsdd"),
                                            features=FeatureConfig(height=32, width=32))).uri
