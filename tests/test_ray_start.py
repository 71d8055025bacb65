"""Ray start failures end in one line naming the likely cause and the fix (no Ray is started here)."""

from __future__ import annotations

import pytest

from orchestrator.cli import main
from orchestrator.ray_runtime import RayStartError, ensure_ray

TIMEOUT = ("The current node timed out during startup. This could happen because some of the Ray processes "
           "failed to startup.\nTraceback (most recent call last): ...")


@pytest.fixture
def failing_ray(monkeypatch):
    """``ray.init`` raising ``exc``; returns the list of shutdown calls."""
    import ray

    shutdowns = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(1))

    def make(exc: Exception):
        def init(**kwargs):
            raise exc
        monkeypatch.setattr(ray, "init", init)
        return shutdowns
    return make


def test_local_start_timeout_names_load_and_ray_stop(failing_ray):
    shutdowns = failing_ray(RuntimeError(TIMEOUT))
    with pytest.raises(RayStartError) as error:
        ensure_ray()
    message = str(error.value)
    assert message.startswith("could not start a local Ray instance (RuntimeError: The current node timed out")
    assert "too loaded" in message and "`ray stop`" in message and "--address" in message
    assert "\n" not in message and shutdowns == [1]


def test_unreachable_address_names_the_address(failing_ray):
    failing_ray(ConnectionError("Could not find any running Ray instance. Please specify the one to connect to."))
    with pytest.raises(RayStartError, match=r"could not join the Ray cluster at 10\.0\.0\.9:6379 \(ConnectionError: "
                                            r"Could not find any running Ray instance.*check --address / RAY_ADDRESS"):
        ensure_ray("10.0.0.9:6379")


def test_cli_prints_one_line_and_exits_2(failing_ray, fsdd_root, tmp_path, capsys):
    failing_ray(RuntimeError(TIMEOUT))
    code = main(["preprocess", "--dataset", "fsdd", "--root", str(fsdd_root), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: could not start a local Ray instance (RuntimeError: The current node timed out")
