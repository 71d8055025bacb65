"""Stopping long work cleanly: a trial stops at a step boundary, checkpoints, and says why it stopped.

Three things ask a trial to stop, and all end the same way (checkpoint at the next training step, then
:class:`TrialStopped`, which is not a failure):

* **preemption notice**: Ray marks the trial's node as draining (``ray drain-node
  --reason=DRAIN_NODE_REASON_PREEMPTION``: what a spot-interruption handler runs on the 2-minute notice, see the
  README's "When things go wrong"). The trial polls that (``notice``, from its session) with the stop request.
  Ray itself kills nothing at a drain; when the node really goes, its workers are SIGKILLed within
  milliseconds, so the checkpoint must be written before: that is what the poll is for.
* **SIGTERM to the trial's own process** (a person, a process manager): treated as a preemption notice.
  :func:`watch_sigterm` installs the handler; Python only lets the main thread do that, so the sweep calls it
  from the Tune actor's ``setup`` (orchestrator.sweep).

After a preemption the sweep runs the trial again (elsewhere: Ray places nothing new on a draining node),
from that checkpoint, without counting a failure.
* **an interrupted driver**: Ctrl-C / SIGTERM to ``rethink-audio sweep`` writes a stop request, a small file
  under the results root (local or ``s3://``), that every trial of that sweep polls every
  :data:`POLL_SECONDS` (cheap: one ``stat`` or one S3 HEAD, never per step).

No Ray and no torch here: the training loop checks a :class:`StopCheck` between steps wherever it runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from orchestrator.errors import StorageError

PREEMPTED, INTERRUPTED = "preempted", "interrupted"
POLL_SECONDS = 2.0  # how often a trial looks for its sweep's stop request: the delay a Ctrl-C adds at most
STOP_FILE = "stop-request.json"  # under the plan's results root, while its driver is stopping

_state: dict[str, Any] = {"reason": None, "active": 0, "previous": None, "installed": False}
# when the DriverSignals in effect got its first signal (time.monotonic())
_driver: dict[str, Any] = {"stopping_since": None}
_lock = threading.Lock()


class TrialStopped(Exception):
    """A trial stopped on request after writing its checkpoint (``reason``: preempted or interrupted).

    Not a failure: the sweep resumes the trial from that checkpoint (at once on another node when preempted,
    on ``--resume`` when the driver was interrupted)."""

    def __init__(self, reason: str, epoch: int, step: int, saved: bool = True):
        super().__init__(f"{reason} during epoch {epoch} after {step} step(s); "
                         + ("checkpoint written" if saved else "nothing trained since the last checkpoint"))
        self.reason, self.epoch, self.step, self.saved = reason, epoch, step, saved


def watch_sigterm() -> bool:
    """Make SIGTERM to this process a preemption notice instead of an exit, while a trial runs in it.

    Runs once per process, from the main thread only (returns False elsewhere: Python refuses). A SIGTERM that
    arrives while no trial runs here goes to the handler that was there before (Ray's exits the worker), so an
    idle worker still stops when its node drains."""
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        if not _state["installed"]:
            _state["previous"] = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _on_sigterm)
            _state["installed"] = True
    return True


def _on_sigterm(signum, frame) -> None:
    if _state["active"]:
        _state["reason"] = PREEMPTED  # the running trial checkpoints at its next step and returns
        return
    previous = _state["previous"]
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        raise SystemExit(128 + signum)


def stop_this_process(reason: str) -> None:
    """Ask the trial running in this process to checkpoint at its next step and stop (``rethink-audio train``
    on Ctrl-C: the trial runs in the CLI's own process)."""
    _state["reason"] = reason


def clear_process_stop() -> None:
    """Forget an INTERRUPTED request once its trial has stopped (a later ``train`` in this process, a
    notebook, must not stop at its first step). A preemption is never forgotten: the node is going away."""
    if _state["reason"] == INTERRUPTED:
        _state["reason"] = None


def process_stop_reason() -> str | None:
    """PREEMPTED once this process got SIGTERM during a trial (it stays set: the node is going away, so any
    later trial given to this process stops at once and runs elsewhere); else None."""
    return _state["reason"]


class StopCheck:
    """Called between training steps: the reason to stop now, or None, without any I/O of its own.

    Used as a context manager, it holds the process's "a trial is running here" count (SIGTERM means
    preemption only then) and, when there is something to poll (``stop_uri``, ``notice``: () -> bool), a daemon
    thread that polls both every ``poll_seconds``: a training step never waits on storage (an S3 HEAD takes
    tens of ms) or on Ray's GCS. The first poll happens on entry, so a trial started after a stop request
    stops before its first step."""

    def __init__(self, stop_uri: str | None = None, notice=None, poll_seconds: float = POLL_SECONDS):
        self.stop_uri, self.notice, self.poll_seconds = stop_uri, notice, poll_seconds
        self._found: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "StopCheck":
        with _lock:
            _state["active"] += 1
        if self.stop_uri is not None or self.notice is not None:
            self._poll()
            self._thread = threading.Thread(target=self._loop, name="stop-check", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        with _lock:
            _state["active"] -= 1

    def __call__(self) -> str | None:
        return _state["reason"] or self._found

    def _loop(self) -> None:
        while self._found is None and not self._done.wait(self.poll_seconds):
            self._poll()

    def _poll(self) -> None:
        if self.notice is not None and _noticed(self.notice):
            _state["reason"] = self._found = PREEMPTED  # the node is going away: sticky, like a SIGTERM
        elif self.stop_uri is not None and _stop_requested(self.stop_uri):
            self._found = INTERRUPTED


def _noticed(notice) -> bool:
    try:
        return bool(notice())
    except Exception:  # noqa: BLE001 - the notice source did not answer: keep training, ask again next poll
        return False


def _stop_requested(stop_uri: str) -> bool:
    from orchestrator import storage

    try:
        return storage.exists(storage.resolve(stop_uri))
    except Exception:  # noqa: BLE001 - storage hiccup: keep training, the next poll asks again
        return False


def request_stop(stop_uri: str, payload: dict[str, Any]) -> None:
    """Driver side: ask every trial of the sweep to checkpoint and stop (``payload``: who and why)."""
    from orchestrator import storage

    storage.write_json(storage.resolve(stop_uri), payload)


def clear_stop(stop_uri: str) -> None:
    """Driver side, at start: a stop request left by an earlier driver must not stop this run's trials."""
    from orchestrator import storage

    loc = storage.resolve(stop_uri)
    if storage.exists(loc):
        storage.guarded(loc, lambda: loc.fs.delete_file(loc.path))


def driver_stopping_since() -> float | None:
    """When (``time.monotonic()``) this driver got its first SIGINT/SIGTERM, or None. A plain function: Tune
    pickles its stoppers and callbacks, and a handle on DriverSignals would drag the process's other signal
    handlers (and their locks) along."""
    return _driver["stopping_since"]


class SweepInterrupted(Exception):
    """The driver got SIGINT/SIGTERM and stopped cleanly; ``result`` (a sweep's SweepResult) says what finished,
    None when it stopped before phase 2 (datasets, search). The CLI prints one line and exits 128 + signum."""

    def __init__(self, signum: int, result: Any = None, detail: str | None = None):
        super().__init__(f"interrupted by signal {signum}")
        self.signum, self.result, self.detail = signum, result, detail  # detail: what stopped, in words


class SweepStorageError(StorageError):
    """A trial could not write its records (a full disk, a failed write): the sweep ended at the first one."""


class StopNow(KeyboardInterrupt):
    """The driver's second SIGINT/SIGTERM: stop at once (trials keep their last checkpoint); ``signum`` gives
    the exit status 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


class DriverSignals:
    """The driver's SIGINT/SIGTERM: the first asks trials to stop at their next step (``on_first`` runs, the
    sweep waits for their checkpoints); a second one stops at once (KeyboardInterrupt). Installed for the
    ``with`` block only, from the main thread (elsewhere it does nothing, and Ray/Tune's defaults apply). A
    ``ray.init`` inside the block would put Ray's own SIGTERM handler back: ``ensure_ray`` keeps ours."""

    def __init__(self, on_first):
        self.on_first, self.signum, self.at = on_first, None, None
        self._saved: dict[int, Any] = {}
        self._raise: Any = None  # inside at_once(): the exception class a first signal raises at once

    @contextlib.contextmanager
    def at_once(self, exception) -> Iterator[None]:
        """Inside this block a signal raises ``exception(signum)`` at once: work with nothing to checkpoint
        (preprocessing writes a version only when it is whole) need not be waited for."""
        self._raise = exception
        try:
            yield
        finally:
            self._raise = None

    def __enter__(self) -> "DriverSignals":
        _driver["stopping_since"] = None
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise StopNow(signum)  # the second signal: stop now, trials keep their last checkpoint
        self.signum, self.at = signum, time.monotonic()
        _driver["stopping_since"] = self.at
        if self._raise is not None:
            raise self._raise(signum)
        self.on_first(signum)

    @property
    def exit_status(self) -> int | None:
        """128 + the signal's number (130 for SIGINT, 143 for SIGTERM) once one arrived; else None."""
        return None if self.signum is None else 128 + int(self.signum)
