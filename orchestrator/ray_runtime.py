"""Connecting to Ray: the cluster a job runs on, or a private local instance on a laptop.

:func:`ensure_ray` is the one place Ray starts. When it cannot (a cluster address that does not answer, a
local start that times out on a loaded machine, a stale session), :class:`RayStartError` says so in one
line with the likely cause and the fix, instead of Ray's traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

from orchestrator.errors import RethinkError


class RayStartError(RethinkError):
    """Ray could not be started or joined; the message names the likely cause and the fix."""


# What ``ray.init`` itself prints on the driver, held back in quiet mode (logger name -> lowest level held; the
# logger's records below that level still print): the token-authentication notice (Ray 2.60 logs it as a
# WARNING on every local start) and "Started a local Ray instance." / "Connected to Ray cluster." (INFO).
# Ray's warnings from ray.init itself (e.g. a version mismatch, a small /dev/shm) still print.
QUIET_START = {"ray._private.authentication.authentication_token_setup": logging.CRITICAL,
               "ray._private.worker": logging.WARNING}
STARTUP_LOG = "rethink-audio-ray-start.log"  # where they go instead: the Ray session's logs folder


def ensure_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool | None = None,
               quiet: bool = False) -> None:
    """Initialise Ray once: join ``address`` (or ``RAY_ADDRESS``, as ``ray job submit`` sets it) if given,
    else start a local instance whose dashboard, if any, binds to 127.0.0.1 only. ``log_to_driver=False``
    keeps worker output in Ray's session logs instead of the terminal (quiet mode: ``sweep`` and ``demo``
    without ``--verbose``); None (library calls with no preference) streams it when this call starts Ray.
    ``quiet`` keeps what ``ray.init`` prints about itself (:data:`QUIET_START`) off the terminal and writes it
    to :data:`STARTUP_LOG` in the session's logs folder (``<ray tmp>/session_latest/logs``) instead.

    ``log_to_driver`` is a setting of this process's connection, fixed when it is made: if Ray is already
    initialised here (a notebook, a test, a caller that started it), the setting cannot change, and a
    one-line note on stderr says so rather than pretending it did."""
    import ray

    if ray.is_initialized():
        streaming = streams_worker_logs()
        if log_to_driver is not None and streaming != log_to_driver:
            print(f"note: Ray was already initialised in this process with worker logs "
                  f"{'streamed here' if streaming else 'kept in its session logs'}; that cannot change now, so "
                  f"{'worker lines may appear between the progress lines' if streaming else 'they stay there'}"
                  " (start from a fresh process to choose)", file=sys.stderr, flush=True)
        return
    address = address or os.environ.get("RAY_ADDRESS")
    log_to_driver = True if log_to_driver is None else log_to_driver
    held: list[logging.LogRecord] = []
    try:
        with _held_start_records(held) if quiet else contextlib.nullcontext(), _sigterm_kept():
            if address:
                ray.init(address=address, log_to_driver=log_to_driver)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1",
                         log_to_driver=log_to_driver)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, TimeoutError, ...
        _shutdown_quietly(ray)
        raise RayStartError(start_failure(exc, address)) from None
    _keep_in_session_logs(held)


class _Hold(logging.Filter):
    """A logger filter that keeps records below ``level`` out of every handler and collects them."""

    def __init__(self, level: int, held: list[logging.LogRecord]):
        super().__init__()
        self.level, self.held = level, held

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            self.held.append(record)
            return False
        return True


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """``ray.init`` replaces this process's SIGTERM handler with ``sys.exit``; keep the caller's own handler (a
    sweep's or ``train``'s, which checkpoints first: orchestrator.interrupts). Without one, Ray's stays."""
    main = threading.current_thread() is threading.main_thread()
    saved = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if callable(saved):
            signal.signal(signal.SIGTERM, saved)


@contextlib.contextmanager
def _held_start_records(held: list[logging.LogRecord]) -> Iterator[None]:
    """While ``ray.init`` runs: the :data:`QUIET_START` records of its loggers go to ``held``, not the terminal."""
    filters = {name: _Hold(level, held) for name, level in QUIET_START.items()}
    for name, hold in filters.items():
        logging.getLogger(name).addFilter(hold)
    try:
        yield
    finally:
        for name, hold in filters.items():
            logging.getLogger(name).removeFilter(hold)


def _keep_in_session_logs(held: list[logging.LogRecord]) -> None:
    """Append the held records to :data:`STARTUP_LOG` in the Ray session's logs folder (best effort: the
    folder is found through a private attribute, checked in Ray 2.60; without it they are dropped)."""
    if not held:
        return
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    try:
        folder = node.get_logs_dir_path() if node is not None else None
        if folder:
            formatter = logging.Formatter("%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s")
            with open(os.path.join(folder, STARTUP_LOG), "a", encoding="utf-8") as log:
                log.writelines(formatter.format(record) + "\n" for record in held)
    except (OSError, AttributeError):  # a log line is not worth failing the run
        pass


def node_draining(node_id: str) -> bool:
    """Whether Ray is draining node ``node_id`` (``ray drain-node``, a KubeRay pod's ``ray start --block`` on
    SIGTERM, the autoscaler): the GCS's list of draining nodes, read as Ray Train's own PreemptionWatcher reads
    it (``ray._private.state``, Ray 2.60; a version without it reads as not draining)."""
    from ray._private import state

    draining = getattr(state.state, "get_draining_nodes", None)
    return draining is not None and node_id in draining()


def streams_worker_logs() -> bool:
    """Whether this process's Ray connection streams worker logs here (``log_to_driver``).

    Ray keeps no public record of the setting; its log-printing thread exists only when it is on, so that
    thread is the evidence (a private attribute, checked in Ray 2.60; a version that renames it reads as
    off, which only costs the note in :func:`ensure_ray`)."""
    from ray._private import worker

    thread = getattr(getattr(worker, "global_worker", None), "logger_thread", None)
    return bool(thread is not None and thread.is_alive())


def start_failure(exc: BaseException, address: str | None) -> str:
    """One line: what failed, Ray's own first line, the likely cause and what to do."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = (lines[0][:200] if lines else "") or "no message"  # Ray's first line; the rest is its traceback
    if address:
        return (f"could not join the Ray cluster at {address} ({type(exc).__name__}: {said}). Likely cause: "
                "no Ray head is running there, or it is unreachable from here. Fix: check --address / "
                f"RAY_ADDRESS (`ray status --address {address}` should answer), or leave both unset to start "
                "a local Ray")
    timed_out = "timed out" in said.lower() or isinstance(exc, TimeoutError)
    cause = ("the machine is too loaded for Ray's processes to start in time" if timed_out
             else "a stale Ray session or too few free resources (memory, /tmp space, ports)")
    return (f"could not start a local Ray instance ({type(exc).__name__}: {said}). Likely cause: {cause}. "
            "Fix: retry when the load is lower; run `ray stop` only if no one else on this machine uses Ray "
            "(it stops every Ray session you started); or join a running cluster with --address")


def _shutdown_quietly(ray) -> None:
    """Undo a half-finished ``ray.init`` (processes this call started), ignoring errors on the way out."""
    try:
        ray.shutdown()
    except Exception:  # nothing more to clean: the start itself failed
        pass
