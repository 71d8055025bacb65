"""Storage pre-flight on a real S3 API (moto on loopback): a missing bucket or an unreachable endpoint is a
clear error naming the URI and the fix, within seconds, before any compute (no Ray is started)."""

from __future__ import annotations

import sys
import time

import pytest
from s3_fixture import REPO, fake_credentials, ray_tmpdir, run_isolated, s3, subprocess_env  # noqa: F401

from cluster.local_head import free_port
from orchestrator import storage
from orchestrator.errors import StorageError



def closed_endpoint() -> str:
    """An http endpoint on loopback where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


def test_missing_bucket_names_the_uri_and_the_fix(s3):
    s3.client().create_bucket(Bucket="present")
    storage.check_writable(storage.resolve("s3://present/runs"))  # the endpoint works
    start = time.time()
    with pytest.raises(StorageError) as error:
        storage.check_writable(storage.resolve("s3://no-such-bucket/runs"))
    assert time.time() - start < 5
    message = str(error.value)
    assert "s3://no-such-bucket/runs" in message and "aws s3 mb s3://no-such-bucket" in message


def test_unreachable_endpoint_names_the_uri_and_the_fix(monkeypatch):
    access, secret = fake_credentials()
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_endpoint())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    start = time.time()
    with pytest.raises(StorageError) as error:
        storage.check_writable(storage.resolve("s3://bucket/runs"))
    assert time.time() - start < 15  # bounded connect timeout and retries, not minutes of backoff
    message = str(error.value)
    assert "s3://bucket/runs" in message and "AWS_ENDPOINT_URL" in message and "credentials" in message


@pytest.mark.parametrize("job, endpoint", [("sweep", "moto"), ("paper", "closed")])
def test_jobs_fail_fast_before_starting_ray(s3, job, endpoint):
    env_extra = s3.env() | ({"AWS_ENDPOINT_URL": closed_endpoint()} if endpoint == "closed" else {})
    uri = "s3://no-such-bucket/runs"
    with ray_tmpdir() as ray_tmp:
        start = time.time()
        done = run_isolated([sys.executable, f"jobs/{job}.py", "plans/demo.yaml", "--smoke", "--storage", uri],
                            subprocess_env(env_extra, ray_tmp), timeout=120)
        seconds = time.time() - start
        ray_sessions = list(ray_tmp.rglob("session_*"))
    assert done.returncode == 2, done.output[-3000:]
    assert "error: " in done.output and uri in done.output
    assert ("aws s3 mb" if endpoint == "moto" else "AWS_ENDPOINT_URL") in done.output
    assert "Traceback" not in done.output
    assert ray_sessions == [] and done.leftovers == set()  # no Ray was started: nothing was spent
    assert seconds < 60, f"took {seconds:.0f} s"
