"""Local mode binds to localhost: ``ensure_ray`` serves no dashboard (Ray still runs its dashboard process
for internal modules: it gets ``--host=127.0.0.1``; depending on timing it may also open a gRPC port, on
loopback only), and with loopback-only node
addressing (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, set by the test environment) no process of the local
Ray listens on a routable address. Without that variable Ray's gRPC servers bind every interface.

Runs in a subprocess (the session's shared Ray is started elsewhere, with other settings), which waits on
stdin while this test inspects its sockets through /proc, then is ended with all its processes.
"""

from __future__ import annotations

import json
import subprocess
import sys

from s3_fixture import REPO, ray_tmpdir, subprocess_env

from cluster.local_head import is_loopback, kill_pids, listening_addresses, session_pids

PROBE = """
import json, sys
from orchestrator.ray_runtime import ensure_ray
ensure_ray(num_cpus=1)
import ray
node = ray._private.worker._global_node
print(json.dumps({"webui_url": node.address_info.get("webui_url"), "gcs": node.gcs_address}), flush=True)
sys.stdin.readline()  # keep Ray up until the test has looked at it
"""


def argv(pid: int) -> list[bytes]:
    """The command line of ``pid`` (empty if it exited meanwhile)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def test_ensure_ray_local_mode_listens_on_loopback_only():
    with ray_tmpdir() as ray_tmp:
        process = subprocess.Popen([sys.executable, "-c", PROBE], cwd=REPO, env=subprocess_env({}, ray_tmp),
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True, start_new_session=True)
        try:
            line = process.stdout.readline()
            assert line, "the probe exited before Ray was up"
            info = json.loads(line)
            pids = session_pids(process.pid)
            sockets = listening_addresses(pids)
            commands = {pid: argv(pid) for pid in pids}
        finally:
            process.stdin.close()
            try:
                process.wait(timeout=60)
            finally:
                kill_pids(session_pids(process.pid) - {process.pid})
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert not info["webui_url"]  # include_dashboard=False: no dashboard UI
    dashboards = {pid for pid, argv in commands.items() if any(a.endswith(b"dashboard/dashboard.py") for a in argv)}
    for pid in dashboards:
        assert b"--host=127.0.0.1" in commands[pid]  # ensure_ray's dashboard_host
    # Ray 2.60's dashboard process sometimes opens an internal gRPC port (seen in CI): loopback only.
    assert all(is_loopback(host) for pid, host, _ in sockets if pid in dashboards)
    assert info["gcs"].startswith("127.0.0.1:")
    assert sockets, "found no listening socket: the /proc inspection is broken"
    exposed = [(pid, host, port) for pid, host, port in sockets if not is_loopback(host)]
    assert exposed == [], f"listening on routable addresses: {exposed}"
    assert session_pids(process.pid) == set()  # nothing of that Ray is left
