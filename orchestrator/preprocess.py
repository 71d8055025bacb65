"""Ray Data preprocessing: manifest -> parallel decode/resample/augment -> log-mel features -> Parquet.

One call writes one *dataset version*: a folder named by a hash of every input that changes the bytes
(dataset, manifest, feature and augmentation parameters, feature code version). Rerunning with the same
inputs finds the finished version (its ``dataset.json`` is written last) and does nothing. The hash covers
the manifest's clip ids, labels, folds, splits and header durations but not the file paths, so the same
files read from ``s3://`` or from a local copy (on any node, at any mount point) give the same version.

The raw audio is read through ``orchestrator.storage`` on the driver (metadata, headers) and in each
featurizer (clips), so ``root`` may be an ``s3://`` prefix that no node mounts. A storage failure in a
featurizer fails the run with a StorageError; only content problems become rejected files (see
``orchestrator/datasets/source.py``), so a node that cannot read the files never yields a version.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import re
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from orchestrator import errors, spectra, storage
from orchestrator.audio import DEFAULT_MAX_SECONDS, decode_audio
from orchestrator.augment import augmented_copy, fit_clip
from orchestrator.config import AugmentConfig, FeatureConfig, stable_hash, to_dict
from orchestrator.study import FEATURE_HASH_DEFAULTS, without_defaults
from orchestrator.datasets import DatasetRoot, get_dataset, load_manifest
from orchestrator.errors import ConfigError, RethinkError, StorageError
from orchestrator.features import channel_params, feature_module, featurize_clips
from orchestrator.progress import Counter, polling, quiet_ray_data
from orchestrator.ray_runtime import ensure_ray

# Bump when the feature computation changes in a way that alters stored values: new hash, new version.
FEATURE_CODE_VERSION = 1
# FEATURE_HASH_DEFAULTS (orchestrator.study): feature fields added after versions were first written.


@dataclass(frozen=True)
class PreprocessRequest:
    """Everything one preprocessing run depends on."""

    dataset: str  # catalog name: esc50, esc10, us8k, gtzan, fsdd, folder
    root: str  # the dataset's official layout: s3://bucket/prefix, or a local folder every Ray node has
    out: str  # local path or s3:// URI; the version folder is created below it
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # e.g. GTZAN/folder: folds, seed
    strict: bool = False  # any rejected file is fatal (default: reported in dataset.json, run goes on)
    batch_size: int = 16  # clips per map_batches call
    num_workers: int | None = None  # featurizer tasks at once; None: the CPUs Ray reports
    max_duration_s: float = DEFAULT_MAX_SECONDS  # longer clips are rejected (header check, then at decode)


@dataclass
class PreprocessResult:
    """Where the version is and what it holds."""

    uri: str
    reused: bool
    card: dict
    seconds: float

    def summary(self) -> dict[str, Any]:
        counts = self.card["counts"]
        return {"uri": self.uri, "reused": self.reused, "version": self.card["version"],
                "clips": counts["total"], "augmented": counts["augmented"],
                "rejected": len(self.card["rejected"]), "seconds": round(self.seconds, 2)}


def resolved_features(request: PreprocessRequest) -> dict[str, Any]:
    """Feature parameters with dataset defaults filled in and per-channel sample counts spelled out."""
    spec = get_dataset(request.dataset)
    rate = request.features.sample_rate or spec.sample_rate
    params = to_dict(request.features) | {"sample_rate": rate,
                                          "width": request.features.image_width(rate, spec.width)}
    params["channels"] = [vars(c) for c in channel_params(request.features, rate)]
    return params


def hashed_features(request: PreprocessRequest) -> dict[str, Any]:
    """``resolved_features`` less the fields still at their ``FEATURE_HASH_DEFAULTS`` value."""
    return without_defaults(resolved_features(request), FEATURE_HASH_DEFAULTS)


def folder_label(features: FeatureConfig) -> str:
    """The middle of a version's folder name: the variant for the paper's log-mel (names as before),
    else kind and channel count, e.g. ``mfcc-1ch``."""
    if features.kind == "logmel" and features.num_channels == 3:
        return features.variant
    return f"{features.kind}-{features.num_channels}ch"


def version_of(request: PreprocessRequest, manifest: pd.DataFrame) -> str:
    """Content hash of every input that changes the stored values."""
    manifest_digest = stable_hash(manifest[["clip_id", "label", "fold", "split", "duration"]]
                                  .astype(str).values.tolist(), length=16)
    payload = {
        "dataset": get_dataset(request.dataset).name, "options": request.dataset_options,
        "manifest": manifest_digest, "features": hashed_features(request),
        "augment": request.augment.identity(), "code": FEATURE_CODE_VERSION,
    }
    if request.max_duration_s != DEFAULT_MAX_SECONDS:  # only a non-default limit: existing names stay valid
        payload["max_duration_s"] = request.max_duration_s
    return stable_hash(payload)


def reject_long_clips(manifest: pd.DataFrame, max_seconds: float) -> pd.DataFrame:
    """Mark usable rows whose header duration exceeds ``max_seconds`` as rejected (before any decoding)."""
    long = (manifest["error"] == "") & (manifest["duration"] > max_seconds)
    manifest = manifest.copy()
    manifest.loc[long, "error"] = [f"too long: {d:.1f} s is over the maximum duration of {max_seconds:g} s "
                                   "(raise --max-duration to keep it)" for d in manifest.loc[long, "duration"]]
    return manifest


def rejection_reason(exc: BaseException) -> str:
    """Why one file was rejected: our own errors as they read, anything else with its class and message."""
    if isinstance(exc, RethinkError):
        return str(exc)
    message = (str(exc).splitlines() or [""])[0][:200]
    return f"failed while decoding/featurizing: {type(exc).__name__}: {message}".rstrip(": ")


class Featurizer:
    """Decodes a batch of manifest rows, adds augmented copies, computes features (in Ray Data tasks:
    :func:`featurize_batch`)."""

    def __init__(self, features: FeatureConfig, sample_rate: int, width: int, augment: AugmentConfig,
                 rejections, root: str, max_seconds: float = DEFAULT_MAX_SECONDS):
        self.module = feature_module(features, sample_rate, width).eval()
        self.rate, self.augment, self.rejections = sample_rate, augment, rejections
        self.clip_len = None if features.clip_seconds is None else int(round(features.clip_seconds * sample_rate))
        self.random_offset = features.clip_offset == "random"
        self.max_seconds = max_seconds
        # one S3 client per featurizer (from this node's AWS chain); files are read at the driver's manifest paths
        self.root = DatasetRoot(storage.resolve(root))

    def read(self, path: str) -> bytes:
        """The bytes of one clip; a failed read is this node's I/O problem (StorageError), never a rejection."""
        try:
            return storage.read_bytes(self.root.file(path))
        except StorageError as exc:
            reason = (f"{exc.kind}{f' ({exc.detail})' if exc.detail else ''}"
                      if isinstance(exc, storage.RecordError) else str(exc))
            raise StorageError(f"featurizer on node {platform.node()} cannot read {path}: {reason}; every Ray "
                               f"node must reach the dataset root {self.root}: keep it in S3 (root: "
                               "s3://bucket/prefix, credentials from each node's AWS chain) or mount it at the "
                               "same path on every node") from None

    def _clips(self, row) -> list[tuple[dict, np.ndarray]]:
        wave = decode_audio(self.read(row.path), self.rate, self.module.min_samples, self.max_seconds)
        original = wave if self.clip_len is None else fit_clip(wave, self.clip_len, self._offset_rng(row.clip_id))
        base = {"clip_id": row.clip_id, "source_id": row.clip_id, "fold": row.fold, "split": row.split,
                "label": row.label, "label_name": row.label_name, "group": row.group,
                "duration": row.duration, "aug_copy": None, "aug_pitch": None, "aug_stretch": None}
        out = [(base, original)]
        for copy in range(self.augment.copies):  # from the decoded clip, as SoundCLR augments the raw clip
            copy_wave, recorded = augmented_copy(self.augment, wave, self.rate, row.clip_id, copy, self.clip_len)
            if len(copy_wave) < self.module.min_samples:
                copy_wave = np.pad(copy_wave, (0, self.module.min_samples - len(copy_wave)))
            out.append((base | {"clip_id": f"{row.clip_id}#aug{copy}", "aug_copy": copy, **recorded}, copy_wave))
        return out

    def _offset_rng(self, clip_id: str) -> np.random.Generator | None:
        """``clip_offset`` random: a generator seeded by the clip id alone, so every version (and every rerun)
        places a clip alike; centre: None."""
        return np.random.default_rng(zlib.crc32(f"offset/{clip_id}".encode())) if self.random_offset else None

    def featurize_rows(self, batch: pd.DataFrame) -> tuple[list[dict], np.ndarray, list[dict]]:
        """(metadata rows, float16 spectrograms, rejected files) of a batch. Any exception while decoding,
        augmenting or featurizing one file rejects that file alone, with its class and message; a storage
        error while reading it fails the run (StorageError): the file may be fine, this node cannot see it."""
        rows, specs, rejected = [], [], []
        for row in batch.itertuples(index=False):
            try:
                clips = self._clips(row)
                features = featurize_clips(self.module, [wave for _, wave in clips])
            except StorageError:
                raise
            except Exception as exc:  # one bad file must not abort the run: it is reported in dataset.json
                rejected.append({"path": row.path, "clip_id": row.clip_id, "reason": rejection_reason(exc)})
                continue
            rows += [meta for meta, _ in clips]
            specs.append(features.astype(np.float16))
        empty = np.empty((0, self.module.out_channels, self.module.cfg.height, self.module.width), dtype=np.float16)
        return rows, (np.concatenate(specs) if specs else empty), rejected

    def __call__(self, batch: pd.DataFrame) -> pa.Table:
        rows, specs, rejected = self.featurize_rows(batch)
        # every batch reports its file count (the driver's progress counter); waited on only with rejections,
        # which must all be in before the driver reads them: a bare count may arrive a little late
        done = self.rejections.add.remote(rejected, len(batch))
        if rejected:
            import ray

            ray.get(done)
        return _to_arrow(rows, specs)


_featurizers: dict[tuple, Featurizer] = {}


def featurize_batch(batch: pd.DataFrame, rejections, **settings) -> pa.Table:
    """Ray Data task: ``Featurizer(**settings)(batch)``, the Featurizer built once per worker process and kept
    for later batches and later runs with the same settings. Tasks, not an actor pool: Ray keeps its worker
    processes between tasks, so a worker that featurized once has torch imported and its filterbanks built,
    and a rerun, another dataset version or the next sweep's preprocessing starts at once (an actor pool
    starts fresh processes every run: ~3 s of imports each before the first clip)."""
    key = tuple(sorted((k, repr(v)) for k, v in settings.items()))
    if key not in _featurizers:
        if len(_featurizers) >= 8:  # a long-lived worker serving many settings keeps the recent ones
            _featurizers.pop(next(iter(_featurizers)))
        _featurizers[key] = Featurizer(rejections=rejections, **settings)
    featurizer = _featurizers[key]
    featurizer.rejections = rejections  # this run's log
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one task per core: intra-op threads would only oversubscribe
    try:
        return featurizer(batch)
    finally:
        torch.set_num_threads(threads)  # the worker may run other tasks next (a trial's, with more CPUs)


def _to_arrow(rows: list[dict], specs: np.ndarray) -> pa.Table:
    """Rows + spectrograms as an Arrow table whose ``spec`` is the standard fixed_shape_tensor type."""
    frame = pd.DataFrame(rows, columns=spectra.METADATA_COLUMNS)
    table = pa.Table.from_pandas(frame, schema=OUTPUT_SCHEMA, preserve_index=False)
    tensor_type = pa.fixed_shape_tensor(pa.float16(), specs.shape[1:])
    tensor = pa.ExtensionArray.from_storage(
        tensor_type, pa.FixedSizeListArray.from_arrays(pa.array(specs.reshape(-1)), int(np.prod(specs.shape[1:]))))
    return table.append_column("spec", tensor)


OUTPUT_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("source_id", pa.string()), ("fold", pa.int64()), ("split", pa.string()),
    ("label", pa.int64()), ("label_name", pa.string()), ("group", pa.string()), ("duration", pa.float64()),
    ("aug_copy", pa.int32()), ("aug_pitch", pa.int32()), ("aug_stretch", pa.float32()),
])


def _rejection_log():
    import ray

    @ray.remote(num_cpus=0)
    class RejectionLog:
        """Collects files the featurizers could not use (deduplicated: a retried task may report twice) and
        counts the files handled, for the driver's progress line (a retried batch counts twice: the driver
        caps the count at the total)."""

        def __init__(self):
            self.rows: dict[str, dict] = {}
            self.handled = 0

        def add(self, rows: list[dict], handled: int = 0) -> None:
            self.rows.update({r["clip_id"]: r for r in rows})
            self.handled += handled

        def get(self) -> list[dict]:
            return list(self.rows.values())

        def count(self) -> int:
            return self.handled

    return RejectionLog.remote()


def preprocess(request: PreprocessRequest, *, ray_address: str | None = None,
               verbose: bool = False) -> PreprocessResult:
    """Run (or reuse) the dataset version for ``request``; returns its URI and card. Progress: one counter
    of files featurized on stderr; ``verbose`` adds Ray Data's own progress output.

    The manifest and the output location are checked before Ray starts, so bad input fails in seconds.
    """
    start = time.time()
    if not request.max_duration_s > 0:
        raise ConfigError(f"--max-duration must be > 0 seconds, got {request.max_duration_s}")
    root = DatasetRoot.open(request.root)
    manifest = load_manifest(request.dataset, root, **request.dataset_options)
    version = version_of(request, manifest)
    name = f"{get_dataset(request.dataset).name}-{folder_label(request.features)}-{version}"
    out = storage.resolve(request.out).join(name)
    if storage.exists(out.join(spectra.CARD)):
        return PreprocessResult(out.uri, True, storage.read_json(out.join(spectra.CARD)), time.time() - start)
    storage.check_writable(storage.resolve(request.out))
    manifest = reject_long_clips(manifest, request.max_duration_s)
    header_rejects = manifest[manifest["error"] != ""]
    if request.strict and len(header_rejects):
        raise RethinkError(_strict_message(header_rejects.rename(columns={"error": "reason"})))
    header_rejects = header_rejects.rename(columns={"error": "reason"})[["path", "clip_id", "reason"]]
    if len(header_rejects) == len(manifest):  # nothing to featurize: say why before starting anything
        raise _all_rejected(root, header_rejects)
    storage.delete_dir(out)  # a folder without dataset.json is an interrupted run: start it again
    ensure_ray(ray_address, quiet=not verbose)  # quiet: Ray's start-up notices go to its session logs
    decode_rejects = _run_pipeline(request, root, manifest[manifest["error"] == ""], out, verbose)
    rejected = pd.concat([header_rejects, pd.DataFrame(decode_rejects, columns=["path", "clip_id", "reason"])],
                         ignore_index=True)
    if request.strict and len(rejected):
        raise RethinkError(_strict_message(rejected))
    if len(rejected) == len(manifest):  # a version of nothing would be reused by every rerun
        raise _all_rejected(root, rejected)
    card = _write_card(request, root, manifest, rejected, out, version)
    return PreprocessResult(out.uri, False, card, time.time() - start)


def _run_pipeline(request: PreprocessRequest, root: DatasetRoot, manifest: pd.DataFrame,
                  out: storage.Location, verbose: bool = False) -> list[dict]:
    """The Ray Data part: parallel featurization and a Parquet write partitioned by fold, with a counter of
    the files featurized on stderr (``orchestrator.progress``); ``verbose`` keeps Ray Data's own progress
    output too (hidden by default: its non-terminal form floods a log with status blocks).

    A RethinkError raised in a featurizer (a StorageError: the node cannot read a file) comes back to the
    caller as itself, not wrapped in Ray's task errors, so the sweep and the CLI print its one line.
    """
    import ray

    features = resolved_features(request)
    rejections = _rejection_log()
    workers = request.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    blocks = max(1, min(len(manifest) // request.batch_size, 4 * workers))
    bounds = np.linspace(0, len(manifest), blocks + 1).astype(int)
    chunks = [manifest.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    data = out.join(spectra.DATA_DIR)
    counter = Counter(f"[preprocess] {request.dataset}: featurizing", len(manifest), "clips")
    try:
        # quiet before the Dataset exists: a Dataset keeps a copy of the DataContext it was built under
        with contextlib.nullcontext() if verbose else quiet_ray_data(), _hide_cpu_warning(not verbose):
            # tasks, at most one per CPU (``compute``: Ray 2.51 deprecated ``concurrency=n`` with a warning)
            dataset = ray.data.from_pandas(chunks).map_batches(
                featurize_batch, batch_size=request.batch_size, batch_format="pandas",
                compute=ray.data.TaskPoolStrategy(size=min(workers, len(chunks))), num_cpus=1,
                fn_kwargs={"features": request.features, "sample_rate": features["sample_rate"],
                           "width": features["width"], "augment": request.augment, "rejections": rejections,
                           "root": root.uri, "max_seconds": request.max_duration_s},
            )
            with polling(counter, lambda: ray.get(rejections.count.remote(), timeout=10)):
                # lz4, measured (benchmarks/preprocess_profile.py): encodes 3x faster than zstd, 6 % larger
                dataset.write_parquet(data.path, filesystem=data.fs, partition_cols=["fold"],
                                      min_rows_per_file=256, ray_remote_args={"num_cpus": 0}, compression="lz4")
    except Exception as exc:
        counter.close()  # the bar stops where it was; the error follows on its own line
        cause = _rethink_cause(exc)
        if cause is None:
            raise
        raise cause from None
    counter.close(len(manifest))  # the write finished: every file was featurized or rejected
    return ray.get(rejections.get.remote())


# Ray Data's warning when, as a Dataset starts, Ray reports no CPU available (ray.data.dataset, once per process).
# Ray's view of free resources lags the tasks that just ended (a previous dataset's featurizers, a version
# just checked), so before preprocessing it is mostly a false alarm; a real shortage shows as a counter that
# does not move. Quiet runs keep it in ray-data.log only.
NO_CPU_WARNING = "The Ray cluster currently does not have any available CPUs"


class _DropNoCpuWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return NO_CPU_WARNING not in record.getMessage()


@contextlib.contextmanager
def _hide_cpu_warning(hide: bool):
    """With ``hide``, Ray Data's console handlers drop :data:`NO_CPU_WARNING` for the body; its file handler
    (``ray-data.log`` in the session's logs) still gets it."""
    if not hide:
        yield
        return
    import ray.data  # noqa: F401  (configures the "ray.data" logger's handlers)

    consoles = [h for h in logging.getLogger("ray.data").handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    drop = _DropNoCpuWarning()
    for handler in consoles:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(drop)


def _rethink_cause(exc: BaseException) -> RethinkError | None:
    """The RethinkError a Ray task error wraps: its ``cause``, or -- as Ray Data wraps a UDF's exception in
    a UserCodeException whose own cause does not travel -- the last ``orchestrator.errors`` line of its text
    (our messages are one line), rebuilt as that class."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, RethinkError):
        return cause
    found = re.findall(r"orchestrator\.errors\.(\w+): (.+)", str(exc))
    kind = getattr(errors, found[-1][0], None) if found else None
    if isinstance(kind, type) and issubclass(kind, RethinkError):
        return kind(found[-1][1])
    return None


def _all_rejected(root: DatasetRoot, rejected: pd.DataFrame) -> RethinkError:
    """The one-line error when no file under ``root`` could be used (``rejected``: path, clip_id, reason)."""
    return RethinkError(f"every one of the {len(rejected)} files under {root} was rejected, nothing was written "
                        f"(first: {rejected['path'].iloc[0]}: {rejected['reason'].iloc[0]}); check --dataset and "
                        "--root")


def _strict_message(rejected: pd.DataFrame) -> str:
    """One line: how many files, the first ten with their reasons, and the fix."""
    shown = "; ".join(f"{r.path}: {r.reason}" for r in rejected.head(10).itertuples())
    more = f"; and {len(rejected) - 10} more" if len(rejected) > 10 else ""
    return (f"--strict: {len(rejected)} file(s) rejected: {shown}{more}; fix or remove these files, or run "
            "without --strict to skip them")


def _write_card(request, root, manifest, rejected, out, version) -> dict:
    """Count what was actually written, store the rejected table, then write dataset.json (last)."""
    table = spectra.read_table(out.uri, columns=["label", "label_name", "fold", "aug_copy"]).to_pandas()
    originals = table[table["aug_copy"].isna()]
    storage.write_parquet(out.join(spectra.REJECTED), pa.Table.from_pandas(rejected.astype(str), preserve_index=False))
    classes = manifest.drop_duplicates("label").sort_values("label")
    card = {
        "name": get_dataset(request.dataset).name, "version": version, "uri": out.uri,
        "source": {"root": root.uri, "options": request.dataset_options,
                   "manifest_rows": len(manifest)},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "features": resolved_features(request), "augment": to_dict(request.augment),
        "feature_code_version": FEATURE_CODE_VERSION,
        "spec": {"shape": [request.features.num_channels, request.features.height,
                           resolved_features(request)["width"]], "dtype": "float16"},
        "classes": classes["label_name"].tolist(),
        # label indices are the dataset's own (ESC-50 targets 0-49), so a subset may skip some: the model's
        # head needs max label + 1 outputs, not the number of classes present
        "num_classes": int(manifest["label"].max()) + 1,
        "folds": sorted(int(f) for f in table["fold"].unique()),
        "counts": {
            "total": len(table), "originals": len(originals), "augmented": len(table) - len(originals),
            "per_fold": {str(k): int(v) for k, v in originals.groupby("fold").size().items()},
            "per_class": {str(k): int(v) for k, v in originals.groupby("label_name").size().items()},
        },
        "rejected": rejected.astype(str).to_dict("records"),
        # per fold and channel: count, sum, sum of squares of the original clips (optional standardisation)
        "input_stats": spectra.fold_stats(out.uri),
    }
    storage.write_json(out.join(spectra.CARD), card)
    return card
