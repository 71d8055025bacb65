"""A private, token-authenticated Ray head on this machine: try ``ray job submit`` without a cloud account.

``ray stop`` ends *every* Ray process of the user on the machine (other people's test sessions included),
so this module never calls it. :func:`start_local_head` runs ``ray start --head --block`` in a session of
its own, with its own ``--temp-dir``, its own free ports on 127.0.0.1 and its own token;
:meth:`LocalHead.stop` ends exactly the processes of that session (and their descendants) and checks that
none is left.

    python -m cluster.local_head            # prints the dashboard address and a `ray job submit` line;
                                            # Ctrl-C stops the head (and only it)

Only the Linux ``/proc`` filesystem is used to find processes and listening sockets (no psutil needed).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Ray resolves 127.0.0.1 to the machine's routable address and binds its gRPC servers to every interface;
# with this (documented for laptops, honoured on Linux too) the node address is the loopback one and every
# server of the head binds to 127.0.0.1 only.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


# ---------------------------------------------------------------- processes and sockets (/proc)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid``, or None if it is gone or a zombie (exited, awaiting its
    parent's wait: it holds nothing and cannot be killed)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[3]))


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def session_pids(sid: int) -> set[int]:
    """Live processes of session ``sid`` plus all their descendants (a job driver starts its own session)."""
    table = {pid: st for pid in _all_pids() if (st := _stat(pid)) is not None}
    found = {pid for pid, (_, s) in table.items() if s == sid}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


def pids_mentioning(text: str) -> set[int]:
    """Live processes whose command line contains ``text`` (e.g. a private temp dir)."""
    found = set()
    for pid in _all_pids():
        try:
            if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes() and _stat(pid) is not None:
                found.add(pid)
        except OSError:
            continue
    return found - {os.getpid()}


def kill_pids(pids: set[int], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to each pid that still exists (never to a process group or by name)."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.time() + timeout
    alive = set(pids)
    while alive and time.time() < deadline:
        alive = {pid for pid in alive if _stat(pid) is not None}
        if alive:
            time.sleep(0.2)
    return alive


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _parse_address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    # /proc/net/tcp* stores each 32-bit word in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listening_addresses(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state owned by ``pids``."""
    owners = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and inode in owners:  # 0A = LISTEN
                host, port = local.rsplit(":", 1)
                found.append((owners[inode], str(_parse_address(host)), int(port, 16)))
    return found


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 or an IPv4-mapped loopback address (::ffff:127.0.0.1)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- the head


@dataclass
class LocalHead:
    """A running private head: where to reach it, its token, and how to stop exactly it."""

    process: subprocess.Popen
    root: Path  # private folder: Ray's --temp-dir, the token file, the head's log
    gcs_address: str
    dashboard_url: str
    token: str = field(repr=False)
    env: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def temp_dir(self) -> Path:
        """Ray's ``--temp-dir`` of this head (sessions, logs, unpacked working dirs)."""
        return self.root / "ray"

    def headers(self) -> dict[str, str]:
        """HTTP headers for the jobs API (token auth is on)."""
        return {"Authorization": f"Bearer {self.token}"}

    def client(self):
        """A ``JobSubmissionClient`` for this head, authenticated with its token."""
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard_url, headers=self.headers())

    def pids(self) -> set[int]:
        """Every live process of this head: its session, descendants, anything naming its temp dir."""
        return session_pids(self.process.pid) | pids_mentioning(str(self.root))

    def stop(self, timeout: float = 2) -> set[int]:
        """SIGTERM every process of this head at once, then SIGKILL whatever is left after ``timeout`` seconds.

        Each Ray process shuts down on its own SIGTERM (the dashboard, agents, GCS and log monitor within
        0.2 s, measured; the autoscaler's monitor and a raylet whose GCS is gone do not, and are killed);
        sent to ``ray start --block`` alone, the node took 30 s to wind down.
        Returns the pids still alive afterwards (empty unless something refused to die).
        """
        tracked = self.pids()
        kill_pids(tracked, signal.SIGTERM)
        leftovers = _wait_gone(tracked | self.pids(), timeout)
        if leftovers:
            kill_pids(leftovers)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        return _wait_gone(leftovers | self.pids(), 10)

    def cleanup(self) -> None:
        """Stop the head and delete its private folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def head_environment(base: dict[str, str] | None, token_file: Path, python: str) -> dict[str, str]:
    """The head's environment: token auth on (token read from a file, so it never sits in an env var),
    loopback-only binding, this virtualenv's ``python`` first on PATH (jobs run with the head's env)."""
    env = dict(os.environ if base is None else base)
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_TMPDIR"):
        env.pop(name, None)
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file), **LOOPBACK_ONLY}
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def start_local_head(num_cpus: int = 2, env: dict[str, str] | None = None, timeout: float = 180,
                     python: str = sys.executable, *, root: Path | None = None, gcs_port: int | None = None,
                     extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None) -> LocalHead:
    """Start a private head (token auth, dashboard and every port on 127.0.0.1) and wait for its jobs API.

    ``root`` is the private folder (default: a new one under /tmp), ``gcs_port`` the GCS port (default: a
    free one), ``extra_args`` more ``ray start`` arguments (e.g. ``--autoscaling-config``), ``extra_env``
    more environment for the head's processes (e.g. ``RAY_FAKE_CLUSTER=1``)."""
    root = root or Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))  # short: socket paths must fit 107 bytes
    token = secrets.token_hex(32)
    token_file = root / "auth_token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    head_env = head_environment(env, token_file, python) | (extra_env or {})
    ports = {name: free_port() for name in ("port", "dashboard-port", "dashboard-agent-listen-port",
                                            "dashboard-agent-grpc-port", "ray-client-server-port",
                                            "runtime-env-agent-port", "metrics-export-port",
                                            "node-manager-port", "object-manager-port")}
    ports["port"] = gcs_port or ports["port"]
    ray_bin = str(Path(python).parent / "ray")
    command = [ray_bin, "start", "--head", "--block", "--num-cpus", str(num_cpus), "--num-gpus", "0",
               "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1", "--temp-dir", str(root / "ray"),
               "--disable-usage-stats", "--include-dashboard", "true", *extra_args]
    for name, port in ports.items():
        command += [f"--{name}", str(port)]
    log = open(root / "head.log", "wb")
    # a session of its own: its processes can be found (and ended) without touching any other Ray
    process = subprocess.Popen(command, env=head_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    log.close()
    head = LocalHead(process, root, f"127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['dashboard-port']}",
                     token, head_env)
    try:
        _wait_for_jobs_api(head, timeout)
    except BaseException:
        head.cleanup()
        raise
    return head


def _wait_for_jobs_api(head: LocalHead, timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    request = urllib.request.Request(f"{head.dashboard_url}/api/jobs/", headers=head.headers())
    while True:
        if head.process.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.process.returncode}; see {head.root / 'head.log'}:\n"
                               + (head.root / "head.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except (urllib.error.URLError, OSError):
            if time.time() > deadline:
                raise TimeoutError(f"the head's jobs API did not answer within {timeout:.0f} s; "
                                   f"see {head.root / 'head.log'}") from None
            time.sleep(1)


def main() -> int:
    """Start a head, print how to submit to it, stop it (only it) on Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    head = start_local_head(num_cpus=args.num_cpus)
    print(f"head up: dashboard/jobs API {head.dashboard_url}, token in {head.root / 'auth_token'}")
    print("submit from this repository with:")
    print(f"  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={head.root / 'auth_token'} .venv/bin/ray job submit "
          f"--address {head.dashboard_url} --runtime-env jobs/runtime_env.yaml -- "
          "python -m jobs.sweep plans/demo.yaml --smoke --storage runs")
    print("Ctrl-C stops this head (and nothing else)")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # sigwait needs them blocked
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    left = head.stop()
    shutil.rmtree(head.root, ignore_errors=True)
    print("stopped" if not left else f"processes still alive: {sorted(left)}")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
