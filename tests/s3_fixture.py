"""A real S3 API on loopback (moto's server) with fake credentials, and helpers for tests that run Ray.

Ray workers are separate processes that inherit the environment of the process that starts Ray, so the
S3 tests never touch the session's shared Ray: they run the job entrypoints in a subprocess whose
environment (:func:`subprocess_env`) carries the endpoint and the fake credentials, with a private
``RAY_TMPDIR`` and loopback-only binding, in a session of its own so every process it leaves can be found.
The credentials are random per run, so finding them in a log or a stored file proves a leak.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import string
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from cluster.local_head import LOOPBACK_ONLY, kill_pids, session_pids

REPO = Path(__file__).resolve().parent.parent

# Variables that would point boto3/pyarrow somewhere else than the test endpoint
FOREIGN_AWS = ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
               "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")


@dataclass
class S3Endpoint:
    """A running moto S3 server and the fake credentials it is used with."""

    url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"

    @property
    def secrets(self) -> list[str]:
        """Strings that must never appear in a log or a stored record."""
        return [self.access_key, self.secret_key]

    def env(self) -> dict[str, str]:
        """The standard AWS variables pointing boto3 and pyarrow at this endpoint."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": self.region,
                "AWS_EC2_METADATA_DISABLED": "true"}  # no instance-metadata lookups (slow timeouts off EC2)

    def client(self):
        """A boto3 S3 client for this endpoint."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region)

    def upload(self, folder: Path, bucket: str, prefix: str) -> None:
        """Create ``bucket`` and put every file below ``folder`` there as an object under ``prefix``."""
        client = self.client()
        client.create_bucket(Bucket=bucket)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}",
                              Body=path.read_bytes())

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix``: key -> bytes."""
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found


def fake_credentials() -> tuple[str, str]:
    """Random credentials shaped like AWS ones (access key id, secret access key)."""
    alphabet = string.ascii_uppercase + string.digits
    access = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    return access, secrets.token_urlsafe(30)[:40]


@contextmanager
def moto_server() -> Iterator[S3Endpoint]:
    """moto's S3 API server on 127.0.0.1 (a free port) for the duration of the block."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    access, secret = fake_credentials()
    try:
        yield S3Endpoint(f"http://{host}:{port}", access, secret)
    finally:
        server.stop()


@pytest.fixture
def s3(monkeypatch) -> Iterator[S3Endpoint]:
    """A moto S3 server; this process's environment points at it (for reading results back in the test)."""
    with moto_server() as endpoint:
        for name in FOREIGN_AWS:
            monkeypatch.delenv(name, raising=False)
        for name, value in endpoint.env().items():
            monkeypatch.setenv(name, value)
        yield endpoint


def subprocess_env(extra: dict[str, str], ray_tmp: Path) -> dict[str, str]:
    """Environment for a job run in a subprocess: ``extra`` on top of ours, no cluster address (a private
    local Ray starts), Ray's files under ``ray_tmp``, every Ray server on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_AWS and k != "RAY_ADDRESS"}
    return env | {"RAY_TMPDIR": str(ray_tmp), "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "PYTHONUNBUFFERED": "1",
                  **LOOPBACK_ONLY, **extra}


@dataclass
class Finished:
    """A finished subprocess: exit status, combined output, and processes that outlived it (killed)."""

    returncode: int
    output: str
    leftovers: set[int]


def _outliving(pid: int, grace_s: float) -> set[int]:
    """Processes of ``pid``'s session still alive after ``grace_s``: Ray's shutdown signals its processes
    and returns, so on a loaded machine one may need a moment to exit; one that stays is a leftover."""
    deadline = time.monotonic() + grace_s
    while (alive := session_pids(pid) - {pid}) and time.monotonic() < deadline:
        time.sleep(0.5)
    return alive


def run_isolated(command: list[str], env: dict[str, str], timeout: float) -> Finished:
    """Run ``command`` in a session of its own; afterwards kill (and report) any process of that session
    still alive, e.g. a local Ray the command started and did not shut down."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_pids(session_pids(process.pid), signal.SIGKILL)
            process.wait()
        leftovers = _outliving(process.pid, grace_s=15.0)
        kill_pids(leftovers, signal.SIGKILL)
        out.seek(0)
        return Finished(process.returncode, out.read().decode(errors="replace"), leftovers)


@contextmanager
def ray_tmpdir() -> Iterator[Path]:
    """A short private folder for RAY_TMPDIR (Ray's socket paths must stay under 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def find_secrets(secret_values: list[str], texts: dict[str, bytes]) -> list[str]:
    """Names of the texts that contain any of ``secret_values`` (searched as bytes; nothing is parsed)."""
    needles = [s.encode() for s in secret_values if s]
    return sorted(name for name, blob in texts.items() if any(n in blob for n in needles))


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root``: relative path -> bytes (unreadable ones skipped)."""
    found = {}
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_bytes()
        except OSError:
            continue
    return found
