"""One driver per results root (orchestrator.lease): a second driver is refused naming the holder; a dead or
silent holder is taken over; racing drivers never both win; the same on a real S3 API (moto, conditional
writes). No Ray, no torch: each test takes a second or two."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from s3_fixture import REPO, fake_credentials, s3  # noqa: F401

from cluster.local_head import free_port
from orchestrator import lease, storage
from orchestrator.errors import StorageError
from orchestrator.lease import LeaseHeld, acquire, read_lease


HOST = socket.gethostname()


def stamp(seconds_ago: float = 0.0) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


def foreign(**changes) -> dict:
    """A lease as another driver would have written it (fresh, another host), with ``changes``."""
    return {"owner": "f" * 32, "host": "other-host", "pid": 4242, "pid_space": "x/y", "command": "sweep theirs.yaml",
            "started": stamp(600), "heartbeat": stamp(), "ttl_s": 120.0} | changes


def write_lease(root: storage.Location, info: dict | bytes) -> None:
    raw = info if isinstance(info, bytes) else json.dumps(info).encode()
    if root.is_s3:
        bucket, _, prefix = root.path.partition("/")
        boto_client().put_object(Bucket=bucket, Key=f"{prefix}/lease.json", Body=raw)
    else:
        Path(root.path).mkdir(parents=True, exist_ok=True)
        Path(root.path, "lease.json").write_bytes(raw)


def boto_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> storage.Location:
    """A results root on local disk, or on moto S3 (a fresh bucket)."""
    if request.param == "local":
        return storage.resolve(tmp_path / "runs")
    request.getfixturevalue("s3").client().create_bucket(Bucket="results")
    return storage.resolve("s3://results/runs")


def leftovers(root: storage.Location) -> list[str]:
    """Files next to lease.json (temporary or moved-aside copies must not stay)."""
    if root.is_s3:
        listed = boto_client().list_objects_v2(Bucket="results").get("Contents", [])
        names = [item["Key"].rsplit("/", 1)[-1] for item in listed]
    else:
        names = os.listdir(root.path)
    names = [n for n in names if n != "lease.json.lock"]
    return sorted(n for n in names if n != "lease.json")


def test_second_driver_is_refused_naming_the_holder(root):
    assert read_lease(root) is None and (root.is_s3 or not os.path.exists(root.path))  # reading writes nothing
    with acquire(root, "sweep plans/demo.yaml") as held:
        info = read_lease(root)
        assert info == held.info and info["host"] == HOST and info["pid"] == os.getpid()
        with pytest.raises(LeaseHeld) as refused:
            acquire(root, "sweep plans/other.yaml")
        message = str(refused.value)
        for part in (root.uri, HOST, f"PID {os.getpid()}", "sweep plans/demo.yaml", info["started"],
                     "--force-unlock", "older than 120 s is taken over automatically"):
            assert part in message
        assert "\n" not in message and refused.value.holder["owner"] == info["owner"]
    assert read_lease(root) is None and leftovers(root) == []
    with acquire(root, "sweep plans/other.yaml") as second:
        assert read_lease(root)["owner"] == second.info["owner"]


def test_dead_holder_on_this_host_is_taken_over_at_once(root, capsys):
    write_lease(root, foreign(host=HOST, pid_space=lease._pid_space(), pid=dead_pid()))
    with acquire(root, "sweep mine.yaml") as mine:
        assert read_lease(root)["owner"] == mine.info["owner"]
    assert "no longer exists on this host" in capsys.readouterr().err


def test_stale_heartbeat_is_taken_over_and_a_fresh_foreign_lease_is_not(root, capsys):
    write_lease(root, foreign())
    with pytest.raises(LeaseHeld, match="host other-host PID 4242 .'sweep theirs.yaml'"):
        acquire(root, "sweep mine.yaml")
    write_lease(root, foreign(heartbeat=stamp(121)))
    with acquire(root, "sweep mine.yaml") as mine:
        assert read_lease(root)["owner"] == mine.info["owner"]
    assert "held by host other-host PID 4242" in capsys.readouterr().err
    assert leftovers(root) == []


def test_unreadable_lease_is_held_until_it_is_old(root, tmp_path):
    write_lease(root, b'{"owner": "trunc')
    with pytest.raises(LeaseHeld, match="unreadable lease.json"):
        acquire(root, "sweep mine.yaml")
    if not root.is_s3:
        os.utime(Path(root.path, "lease.json"), (time.time() - 600, time.time() - 600))
        acquire(root, "sweep mine.yaml").release()


def test_force_breaks_a_live_lease(root, capsys):
    write_lease(root, foreign())
    with acquire(root, "sweep mine.yaml", force=True) as mine:
        assert read_lease(root)["owner"] == mine.info["owner"]
    err = capsys.readouterr().err
    assert "warning: broke the lease" in err and "other-host PID 4242" in err and len(err.splitlines()) == 1


def test_heartbeat_refreshes_and_a_taken_over_lease_is_lost(root, capsys):
    first = acquire(root, "sweep first.yaml", ttl_s=5, heartbeat_s=0.1)
    beat = read_lease(root)["heartbeat"]
    assert wait_for(lambda: read_lease(root)["heartbeat"] != beat)
    assert read_lease(root)["owner"] == first.info["owner"] and not first.lost
    second = acquire(root, "sweep second.yaml", force=True)
    assert wait_for(lambda: first.lost)
    err = capsys.readouterr().err.splitlines()
    lost = [line for line in err if "was taken over" in line]
    assert lost == [f"warning: the lease on {root.uri} (lease.json) was taken over by host {HOST} PID {os.getpid()} "
                    "('sweep second.yaml'); this driver's results may now be written by two drivers"]
    first.release()  # must not delete the new holder's file
    assert read_lease(root)["owner"] == second.info["owner"] and not second.lost
    second.release()
    assert read_lease(root) is None and leftovers(root) == []


@pytest.mark.parametrize("stale", [False, True], ids=["absent", "stale"])
def test_racing_threads_never_both_win(root, stale):
    for _ in range(5):
        if stale:
            write_lease(root, foreign(heartbeat=stamp(600)))
        barrier, won, refused = threading.Barrier(8), [], []

        def contend():
            barrier.wait()
            try:
                won.append(acquire(root, "sweep race.yaml"))
            except LeaseHeld:
                refused.append(1)

        threads = [threading.Thread(target=contend) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1 and len(refused) == 7
        assert read_lease(root)["owner"] == won[0].info["owner"]
        won[0].release()
        assert leftovers(root) == []


RACER = """
import sys, time
from pathlib import Path
from orchestrator import lease, storage
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
try:
    held = lease.acquire(storage.resolve(sys.argv[1]), "sweep race.yaml")
    print("won", flush=True)
    time.sleep(3)  # hold it while the others try
    held.release()
except lease.LeaseHeld:
    print("held", flush=True)
"""


@pytest.mark.parametrize("stale", [False, True], ids=["absent", "stale"])
def test_racing_processes_never_both_win(tmp_path, stale):
    go = tmp_path / "go"
    if stale:
        write_lease(storage.resolve(tmp_path / "runs"), foreign(heartbeat=stamp(600)))
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "runs"), str(go)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(1.5)  # let them import and wait at the start line
    go.touch()
    results = sorted(p.communicate(timeout=30)[0].strip() for p in racers)
    assert results == ["held"] * 5 + ["won"]
    assert os.listdir(tmp_path / "runs") == ["lease.json.lock"]


DRIVER = """
import sys, time
from orchestrator import lease, storage
held = lease.acquire(storage.resolve(sys.argv[1]), "sweep plans/demo.yaml")
print("holding", flush=True)
time.sleep(60)
"""


def test_second_driver_process_then_kill_9(tmp_path):
    root = storage.resolve(tmp_path / "runs")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, root.uri], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "holding"
        with pytest.raises(LeaseHeld) as refused:
            acquire(root, "sweep plans/demo.yaml")
        assert f"host {HOST} PID {driver.pid} ('sweep plans/demo.yaml')" in str(refused.value)
        driver.kill()  # SIGKILL: no cleanup; not reaped yet either (a zombie counts as gone)
        time.sleep(0.2)
        start = time.monotonic()
        with acquire(root, "sweep plans/demo.yaml") as mine:
            assert read_lease(root)["owner"] == mine.info["owner"]
        assert time.monotonic() - start < 2
    finally:
        driver.kill()
        driver.wait()


def test_s3_writes_are_conditional(s3):
    """The lease is never written blindly: a create fails if the object exists, a refresh if its ETag changed."""
    s3.client().create_bucket(Bucket="results")
    root = storage.resolve("s3://results/runs")
    with acquire(root, "sweep a.yaml", ttl_s=5, heartbeat_s=0.1) as held:
        etag = held._tag
        client = s3.client()
        client.put_object(Bucket="results", Key="runs/lease.json", Body=b"{}")  # someone else's blind write
        assert wait_for(lambda: held.lost)
        assert held._tag == etag  # its refresh was refused (If-Match), not applied over the other write
    assert client.get_object(Bucket="results", Key="runs/lease.json")["Body"].read() == b"{}"


def test_unreachable_s3_is_a_storage_error_naming_the_uri(monkeypatch):
    access, secret = fake_credentials()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with pytest.raises(StorageError, match="s3://bucket/runs .*AWS_ENDPOINT_URL"):
        acquire(storage.resolve("s3://bucket/runs"), "sweep x.yaml")


def test_missing_bucket_is_a_storage_error(s3):
    with pytest.raises(StorageError, match="s3://no-such-bucket/runs .*NoSuchBucket"):
        acquire(storage.resolve("s3://no-such-bucket/runs"), "sweep x.yaml")


def test_a_second_sweep_driver_exits_2_at_once_naming_the_holder(tmp_path, capsys):
    from sweep_helpers import write_plan

    from orchestrator.cli import main

    plan = write_plan(tmp_path)
    holder = acquire(storage.resolve(str(tmp_path / "store" / "t")), "sweep plan.yaml")  # a live driver: this test
    try:
        began = time.monotonic()
        assert main(["sweep", str(plan)]) == 2
        assert time.monotonic() - began < 10  # refused before Ray starts or anything is read
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "in use by another driver" in lines[0], err
        assert f"PID {os.getpid()}" in lines[0] and "'sweep plan.yaml'" in lines[0] and "--force-unlock" in lines[0]
        assert not (tmp_path / "store" / "t" / "plan.json").exists()
    finally:
        holder.release()
