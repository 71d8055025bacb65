"""Opt-in experiment tracking: every Tune trial of a sweep (phase 1 and phase 2) as one MLflow run.

A plan turns it on with ``tracking: {mlflow: URI}`` (``sqlite:///path.db``, ``file:/path``, ``http(s)://host``,
``databricks``); MLflow is the optional extra ``pip install 'rethink-audio[mlflow]'``. The experiment is the
plan's name (or ``tracking.experiment``); each run is named by the stable trial id (the trial's folder under
``trials/``) and holds:

* params: the trial's config flattened with dots (model, init, seed, fold, split, optim.lr, loss.name, ...),
  plus ``dataset_version`` (the card's version) and, for search trials, the search they belong to;
* metrics: train_loss, valid_loss, valid_acc, test_acc, lr, seconds, train_samples, samples_per_s at step =
  epoch, as Tune receives them; at the end the trial's summary (best_epoch, last_epoch, valid_selected, their
  epochs, ...), and every epoch of the trial's ``epochs.parquet`` that the run had not seen (a trial resumed
  from a checkpoint, or reused from its records), so a run's history is whole whichever way it finished;
* tags: the plan, the results root, the phase (grid | search), Tune's trial name.

Logging happens on the sweep's driver only (a Tune callback), never in the trials: a ``file:`` or ``sqlite:``
store therefore lives on the driver's machine, and trials need no MLflow installed.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from orchestrator.errors import ConfigError

INSTALL_HINT = "pip install 'rethink-audio[mlflow]'"
# Schemes MLflow's tracking client accepts here (file: is in maintenance mode in MLflow 3; sqlite: needs
# SQLAlchemy, which the extra installs). "databricks" may stand alone or name a profile (databricks://p).
SCHEMES = ("file", "sqlite", "http", "https", "databricks")
# What train_trial reports every epoch (orchestrator.trial): logged at step = epoch.
EPOCH_METRICS = ("train_loss", "valid_loss", "valid_acc", "test_acc", "lr", "seconds", "train_samples",
                 "samples_per_s")
# summary.json keys that would land in an epoch metric's history: renamed (None: left out)
SUMMARY_RENAMES: dict[str, str | None] = {"samples_per_s": "mean_samples_per_s"}


def check_uri(uri: Any, where: str = "plan.tracking.mlflow") -> str:
    """``uri`` if MLflow can track to it, else a ConfigError naming ``where`` and the accepted forms."""
    scheme = uri.split(":", 1)[0].lower() if isinstance(uri, str) and ":" in uri else None
    if uri == "databricks" or scheme in SCHEMES and uri.split(":", 1)[1].strip("/"):
        return uri
    raise ConfigError(f"{where} {uri!r} is not an MLflow tracking URI: use sqlite:///path/mlflow.db, "
                      "file:/path/mlruns, http(s)://host:port or databricks")


def local_uri(uri: str | None, base) -> str | None:
    """A ``sqlite:`` or ``file:`` store given relative to the plan file, made absolute (like every local path
    of a plan); other URIs unchanged."""
    from pathlib import Path

    lower = (uri or "").lower()
    if lower.startswith("sqlite:///"):
        head, path = "sqlite:///", uri[len("sqlite:///"):]
    elif lower.startswith("file:") and not lower.startswith("file://"):  # file:///abs is absolute already
        head, path = "file:", uri[len("file:"):]
    else:
        return uri
    if not path or path == ":memory:" or path.startswith("/"):
        return uri
    return head + str((Path(base) / path).resolve())


def require_mlflow(uri: str, where: str = "plan.tracking.mlflow") -> None:
    """Fail before any compute when the tracking backend's packages are missing, saying how to install them."""
    needed = ["mlflow"] + (["sqlalchemy", "alembic"] if uri.lower().startswith("sqlite:") else [])
    for module in needed:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(f"{where} {uri!r} needs the Python package {module!r}, which is not installed: "
                              f"{INSTALL_HINT} (or remove plan.tracking)") from None


def _allow_file_store(uri: str) -> None:
    """MLflow 3 refuses a ``file:`` store unless MLFLOW_ALLOW_FILE_STORE is set (it is in maintenance mode,
    not removed); a plan that names one has asked for it, so allow it for this process."""
    if uri.lower().startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def flatten(payload: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dicts as ``section.key`` -> text (MLflow params are strings)."""
    flat: dict[str, str] = {}
    for key, value in payload.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def mlflow_callback(tracking, plan_name: str, results_root: str, decode):
    """The Tune callback logging a sweep's trials to ``tracking.mlflow``, or None when tracking is off.
    ``decode`` reads a Tune trial's config (orchestrator.tune_run.decode, passed in so that tune_run and
    this module do not import each other)."""
    if not tracking.mlflow:
        return None
    require_mlflow(tracking.mlflow)
    return _callback_class()(decode, tracking.mlflow, experiment_name=tracking.experiment or plan_name,
                             tags={"plan": plan_name, "results_root": results_root})


def _callback_class():
    """Built on first use: importing Ray's MLflow integration is only needed when a plan tracks."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class TrialRuns(MLflowLoggerCallback):
        """Ray Tune's MLflowLoggerCallback (experiment set-up, one run per trial, FINISHED / FAILED status at
        the end), with what it lacks for our trials: params from the TrialConfig rather than Tune's nested
        config (which flattens to ``point/trial/optim/lr`` and carries no dataset version), the stable trial
        id as run name for search trials too, epochs at step = epoch rather than Tune's iteration, Tune's
        bookkeeping keys (pid, timestamps, ...) left out, and the summary kept out of the epoch curves. One
        ``log_batch`` per report instead of one request per key."""

        def __init__(self, decode, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.decode = decode

        def setup(self, *args, **kwargs):
            _allow_file_store(self.tracking_uri)
            super().setup(*args, **kwargs)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
            self._logged: dict[str, set[int]] = {}  # run id -> epochs logged
            self._records: dict[str, str] = {}  # run id -> the trial's records folder URI
            self._versions: dict[str, str] = {}  # dataset URI -> version (one card read per dataset)
            self._warned: set[str] = set()  # trials whose logging failure was printed

        # Tune's hooks. A tracking failure mid-sweep (a server down, a full disk) must not stop hundreds of
        # trials whose records are the source of truth: each is printed once per trial and logging of that
        # trial goes on where it can. Set-up problems (bad URI, unreachable server) still fail in setup().

        def log_trial_start(self, trial):
            if trial not in self._trial_runs:  # a retried trial keeps its run (and its params)
                self._guarded(trial, "start", lambda: self._start(trial))

        def log_trial_result(self, iteration, trial, result):
            run_id = self._trial_runs.get(trial)
            if run_id is None:  # its start failed (already reported)
                return
            if "record_id" in result:  # tune_trial's final report: the trial's records are complete
                self._guarded(trial, "summary", lambda: self._finish(run_id))
            elif "epoch" in result:
                self._guarded(trial, f"epoch {result['epoch']}", lambda: self._epoch(run_id, result))

        def log_trial_end(self, trial, failed: bool = False):
            if trial in self._trial_runs:  # sets the run FINISHED / FAILED
                self._guarded(trial, "end", lambda: super(TrialRuns, self).log_trial_end(trial, failed))

        def _guarded(self, trial, what: str, action) -> None:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 -- reported, see above
                if str(trial) not in self._warned:
                    self._warned.add(str(trial))
                    print(f"[tracking] MLflow logging of {trial} ({what}) to {self.tracking_uri} failed: "
                          f"{type(exc).__name__}: {exc}; the sweep goes on (records under the results root "
                          "are complete)", flush=True)

        def _start(self, trial) -> None:
            from orchestrator.trial import trial_id

            tuned = self.decode(trial.config)
            name, cfg = trial_id(tuned.cfg), tuned.cfg
            extra = {"search": tuned.search} if tuned.search else {}
            tags = {"phase": "search" if tuned.search else "grid"} | extra
            params = flatten(_to_dict(cfg)) | extra | {"dataset_version": self._version(cfg.data)}
            run = self.mlflow_util.start_run(run_name=name, tags=self.tags | tags | {"tune_trial": str(trial)})
            run_id = run.info.run_id
            self._trial_runs[trial] = run_id
            self._logged[run_id] = set()
            self._records[run_id] = f"{tuned.trials_root.rstrip('/')}/{name}"
            self._batch(run_id, params=params)

        def _epoch(self, run_id: str, row: dict[str, Any]) -> None:
            epoch = int(row["epoch"])
            if epoch in self._logged[run_id]:
                return
            self._logged[run_id].add(epoch)
            self._batch(run_id, metrics={k: row.get(k) for k in EPOCH_METRICS}, step=epoch)

        def _finish(self, run_id: str) -> None:
            """The summary from the trial's summary.json (Tune's final result also carries its own bookkeeping
            keys), and the epochs this run did not see from epochs.parquet (a resumed or reused trial)."""
            import pyarrow.parquet as pq

            from orchestrator import storage

            records = storage.resolve(self._records[run_id])
            epochs = pq.read_table(records.join("epochs.parquet").path, filesystem=records.fs).to_pylist()
            for row in epochs:
                self._epoch(run_id, row)
            summary = storage.read_json(records.join("summary.json"))
            metrics = {}
            for key, value in summary.items():
                key = SUMMARY_RENAMES.get(key, key)
                if key is not None and key not in EPOCH_METRICS:
                    metrics[key] = value
            self._batch(run_id, metrics=metrics, step=int(summary.get("last_epoch_epoch") or 0))

        def _version(self, data: str) -> str:
            from orchestrator import spectra

            if data not in self._versions:
                self._versions[data] = str(spectra.read_card(data).get("version"))
            return self._versions[data]

        def _batch(self, run_id: str, params: dict[str, str] | None = None,
                   metrics: dict[str, Any] | None = None, step: int = 0) -> None:
            """One request for many values; None (no valid fold) and non-numbers are left out."""
            import time

            from mlflow.entities import Metric, Param

            now = int(time.time() * 1000)
            values = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)]
            items = [Param(k, v) for k, v in (params or {}).items()]
            self._client.log_batch(run_id, metrics=values, params=items[:100])
            for start in range(100, len(items), 100):  # MLflow takes 100 params per batch (a trial has ~50)
                self._client.log_batch(run_id, params=items[start:start + 100])

    return TrialRuns


def _to_dict(cfg) -> dict[str, Any]:
    from orchestrator.config import to_dict

    return to_dict(cfg)
