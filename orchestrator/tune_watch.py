"""What the driver sees of a Tune run: progress lines, each trial's outcome, and when to stop the run.

:class:`TuneWatch` is one Tune callback that prints trials done / total with an ETA (and with ``epochs`` one
line per trial epoch), and records each trial's outcome from what the trial itself reported: finished,
stopped (``{"stopped": "preempted" | "interrupted"}``, see orchestrator.interrupts), failed, or failed on
storage (``{"storage_error": message}``). The sweep reads outcomes from here, never from Tune's ResultGrid:
that one unpickles Tune's ``error.pkl`` files, and on a full disk those are empty (``EOFError``).

:meth:`TuneWatch.stopper` ends the Tune run early: once the driver is stopping (Ctrl-C) and no trial is still
writing its checkpoint (or the grace period is over), or at the first storage error (every later trial would
fail the same way). Pending trials are then never started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

STOP_GRACE_SECONDS = 120.0  # after Ctrl-C, how long trials get to reach a step and checkpoint


@dataclass
class Outcomes:
    """Trial names by outcome, as the trials reported them."""

    done: list[str] = field(default_factory=list)
    stopped: dict[str, str] = field(default_factory=dict)  # trial -> preempted | interrupted
    failed: list[str] = field(default_factory=list)
    storage_errors: list[str] = field(default_factory=list)  # the trials' one-line StorageError messages
    last: dict[str, tuple[dict, dict]] = field(default_factory=dict)  # trial -> (its config, its last result)

    def preempted(self) -> list[str]:
        return [name for name, reason in self.stopped.items() if reason == "preempted"]


def make_watch(total: int, epochs: bool, stopping=lambda: None, grace: float = STOP_GRACE_SECONDS):
    """The Tune callback for a run of ``total`` trials; ``stopping()`` returns the monotonic time the driver
    began stopping (None while it is not); ``grace``: how long running trials then get to checkpoint (0 for
    multi-worker trials, which do not stop at a step: they resume from their last epoch checkpoint)."""
    from ray import tune

    class TuneWatch(tune.Callback):
        def __init__(self):
            self.start, self.outcomes = time.time(), Outcomes()
            self.started: dict[str, float] = {}
            self.durations: list[float] = []
            self.parallel = 1
            self.ended = False
            self.stopped_at: dict[str, str] = {}
            self.storage_failed: set[str] = set()  # trials that ended on a storage error (no retry)

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started[str(trial)] = time.time()
            self.parallel = max(self.parallel, len(self.started))  # started and not yet finished

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.outcomes.last[str(trial)] = (trial.config, result)
            # a trial that stopped before training anything counts as not started (preempted ones run again)
            if result.get("stopped") and (result.get("stopped_at") or result["stopped"] == "preempted"):
                self.outcomes.stopped[str(trial)] = result["stopped"]
                self.stopped_at[str(trial)] = result.get("stopped_at")
            if result.get("storage_error"):
                self.outcomes.storage_errors.append(result["storage_error"])
                self.storage_failed.add(str(trial))
            if epochs and "train_loss" in result:  # per-epoch reports, not the trial's final summary
                valid = f"valid_acc {result['valid_acc']:.3f} " if result.get("valid_acc") is not None else ""
                print(f"[sweep]   {trial} epoch {result['epoch']}: train_loss {result['train_loss']:.4f} "
                      f"{valid}test_acc {result['test_acc']:.3f}", flush=True)

        def _line(self, trial, note: str = "") -> None:
            began = self.started.pop(str(trial), None)
            if began is not None and not note:
                self.durations.append(time.time() - began)
            finished = len(self.outcomes.done) + len(self.outcomes.failed)
            left = total - finished
            mean = sum(self.durations) / len(self.durations) if self.durations else float("nan")
            eta = mean * left / min(self.parallel, left) if left else 0.0
            print(f"[sweep] {finished}/{total} trials done ({len(self.outcomes.failed)} failed), "
                  f"{(time.time() - self.start) / 60:.1f} min elapsed, ETA {eta / 60:.1f} min  <- {trial}{note}",
                  flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            if str(trial) in self.storage_failed:
                self.on_trial_error(iteration, trials, trial)
                return
            last = self.outcomes.last.get(str(trial), ({}, {}))[1]
            if last.get("stopped") and str(trial) not in self.outcomes.stopped:  # stopped before it trained
                self.started.pop(str(trial), None)
                return
            reason = self.outcomes.stopped.get(str(trial))
            if reason is None:
                self.outcomes.done.append(str(trial))
            where = self.stopped_at.get(str(trial))
            note = (f" {reason} at {where} (checkpoint written)" if where else f" {reason} before it started")
            self._line(trial, note if reason else "")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.outcomes.failed.append(str(trial))
            self._line(trial)

        def on_experiment_end(self, trials, **info):
            self.ended = True

        def stopper(self):
            """A Tune Stopper that ends the run when the driver stops or a trial hit a storage error."""
            watch = self

            class DriverStop(tune.Stopper):
                def __call__(self, trial_id, result):
                    return False

                def stop_all(self):
                    if watch.outcomes.storage_errors:
                        return True
                    since = stopping()
                    if since is None or (watch.started and time.monotonic() - since <= grace):
                        return False
                    for name in watch.started:  # still running: Tune ends them; they keep their last checkpoint
                        watch.outcomes.stopped.setdefault(name, "interrupted")
                    return True

            return DriverStop()

    return TuneWatch()
