"""Reading preprocessed spectrogram datasets (Parquet + ``dataset.json``) without Ray.

Layout of one dataset version (written by ``orchestrator.preprocess``)::

    OUT/<dataset>-<variant>-<hash>/
        dataset.json        card: source, feature parameters, version hash, counts, rejected files
        rejected.parquet    path, clip_id, reason of every file left out
        data/fold=K/*.parquet   clip_id, source_id, fold, split, label, label_name, group, duration,
                                aug_copy, aug_pitch, aug_stretch, spec (arrow.fixed_shape_tensor float16)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from orchestrator import storage
from orchestrator.errors import DatasetError, StorageError

CARD = "dataset.json"
DATA_DIR = "data"
REJECTED = "rejected.parquet"
PARTITIONING = pads.partitioning(pa.schema([("fold", pa.int64())]), flavor="hive")
METADATA_COLUMNS = ["clip_id", "source_id", "fold", "split", "label", "label_name", "group", "duration",
                    "aug_copy", "aug_pitch", "aug_stretch"]


def read_card(uri: str) -> dict:
    """The ``dataset.json`` card of a dataset version; a clear error when ``uri`` is not one."""
    loc = storage.resolve(uri)
    card = loc.join(CARD)
    if not storage.exists(card):
        raise StorageError(f"{uri} holds no {CARD}: not a finished dataset version. Run "
                           "`rethink-audio preprocess ...` and pass the folder it prints")
    return storage.read_json(card)


def open_dataset(uri: str) -> pads.Dataset:
    """A pyarrow dataset over the version's Parquet files, with ``fold`` typed as int64."""
    loc = storage.resolve(uri).join(DATA_DIR)
    return pads.dataset(loc.path, filesystem=loc.fs, format="parquet", partitioning=PARTITIONING)


def read_table(uri: str, folds: Iterable[int] | None = None, columns: list[str] | None = None) -> pa.Table:
    """Rows of the given folds (all when None) and columns (all when None) as one Arrow table."""
    dataset = open_dataset(uri)
    where = pads.field("fold").isin(list(folds)) if folds is not None else None
    return dataset.to_table(columns=columns, filter=where)


def spec_array(table: pa.Table, column: str = "spec") -> np.ndarray:
    """The spectrogram column as a ``(N, 3, H, W)`` numpy array (dtype as stored, float16)."""
    return table[column].combine_chunks().to_numpy_ndarray()


def fold_stats(uri: str) -> dict[str, dict[str, object]]:
    """Per fold: value count, and per channel sum and sum of squares (float64), over the original clips' stored
    spectrograms (augmented copies left out); ``band_sum`` / ``band_sum_sq`` hold the same per (channel, mel
    bin), as ``[channel][bin]`` lists. What ``dataset.json`` keeps as ``input_stats``: any union of training
    folds then has its exact mean and standard deviation (:func:`input_stats`), without re-reading.

    Read one fold at a time, so memory stays at one fold's spectrograms.
    """
    dataset = open_dataset(uri)
    folds = sorted({int(f) for f in dataset.to_table(columns=["fold"])["fold"].to_pylist()})
    stats: dict[str, dict[str, object]] = {}
    for fold in folds:
        where = (pads.field("fold") == fold) & pads.field("aug_copy").is_null()
        specs = spec_array(dataset.to_table(columns=["spec"], filter=where)).astype(np.float64)
        band_sum, band_sum_sq = specs.sum(axis=(0, 3)), np.square(specs).sum(axis=(0, 3))  # (C, H)
        stats[str(fold)] = {"count": int(specs.shape[0] * specs.shape[2] * specs.shape[3]),
                            "sum": band_sum.sum(axis=1).tolist(), "sum_sq": band_sum_sq.sum(axis=1).tolist(),
                            "band_sum": band_sum.tolist(), "band_sum_sq": band_sum_sq.tolist()}
    return stats


def input_stats(uri: str, train_folds: Iterable[int], card: dict | None = None,
                per: str = "channel") -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` (float32) of the original clips of ``train_folds``: the training folds of a trial, so
    its test (and validation) folds never shape its input scaling. ``per`` channel: shape ``(C,)``; ``per``
    band: one per (channel, mel bin), shape ``(C, H)``, over clips and frames.

    From the card's ``input_stats``; a version written before the card held them (or, for ``band``, before
    it held per-band sums) is read once instead.
    """
    if per not in ("channel", "band"):
        raise ValueError(f"input_stats per must be 'channel' or 'band', got {per!r}")
    keys = ("sum", "sum_sq") if per == "channel" else ("band_sum", "band_sum_sq")
    card = card if card is not None else read_card(uri)
    per_fold = card.get("input_stats") or {}
    if not per_fold or any(keys[0] not in s for s in per_fold.values()):
        per_fold = fold_stats(uri)
    chosen = [per_fold[str(int(f))] for f in train_folds if str(int(f)) in per_fold]
    if not chosen:
        raise StorageError(f"{uri}: no statistics for training folds {sorted(train_folds)}: the dataset has "
                           f"folds {sorted(per_fold, key=int)}")
    # a band's values number count / H: the count covers every bin of a channel
    count = sum(s["count"] for s in chosen) / (1 if per == "channel" else np.shape(chosen[0][keys[0]])[1])
    total = np.sum([s[keys[0]] for s in chosen], axis=0)
    squares = np.sum([s[keys[1]] for s in chosen], axis=0)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    # a constant channel or band (silence everywhere) would divide by 0: leave its scale alone
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def verify_version(uri: str) -> None:
    """Check a dataset version before any compute is spent on it: every Parquet file under ``data/`` has a
    readable footer, and the rows they hold add up to the card's count (in total and, from the footers'
    ``aug_copy`` null counts, original clips per fold). Reads footers only, never data pages: a few KB per
    file, one ranged read each on S3 (8 at a time). Data pages are not checked: a file whose footer is intact
    but whose pages are damaged still fails in the trial that reads it.

    A damaged version raises :class:`DatasetError` with one line naming the file (or the fold folder a file
    is missing from) and how to rebuild it. A card without counts (written by hand) is checked for
    readable footers only.
    """
    import pyarrow.parquet as pq

    card = read_card(uri)
    loc = storage.resolve(uri)
    data = loc.join(DATA_DIR)
    selector = pafs.FileSelector(data.path, recursive=True, allow_not_found=True)
    infos = storage.guarded(data, lambda: data.fs.get_file_info(selector))
    files = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
    located = [data.join(path[len(data.path):]) for path in files]
    with ThreadPoolExecutor(max_workers=8) as pool:  # on S3 one ranged read each: overlap their latency
        footers = list(pool.map(lambda file: _footer(file, pq), located))
    rows, originals, stats_complete = 0, {}, True
    for path, file, (metadata, problem) in zip(files, located, footers):
        if problem is not None:
            raise DatasetError(f"dataset version {loc.uri} is damaged: {file.uri} cannot be read ({problem}); "
                               f"{_rebuild_hint(loc, card)}")
        rows += metadata.num_rows
        fold = next((part[len("fold="):] for part in path.split("/") if part.startswith("fold=")), None)
        nulls = _null_count(metadata, "aug_copy")
        if fold is None or nulls is None:
            stats_complete = False
        else:
            originals[fold] = originals.get(fold, 0) + nulls
    counts = card.get("counts") or {}
    expected = counts.get("total")
    if expected is None and "originals" in counts:
        expected = counts["originals"] + counts.get("augmented", 0)
    if expected is None or rows == expected:
        return
    where = f"{data.uri}/"
    if stats_complete:
        short = [(f, n, originals.get(f, 0)) for f, n in sorted((counts.get("per_fold") or {}).items(),
                                                                key=lambda kv: int(kv[0]))
                 if originals.get(f, 0) != n]
        if short:
            fold, n, found = short[0]
            where = f"{data.join(f'fold={fold}').uri}/ (it holds {found} of the fold's {n} original clips)"
    raise DatasetError(f"dataset version {loc.uri} is damaged: its {len(files)} Parquet file(s) hold {rows} rows, "
                       f"its {CARD} says {expected}: a file is missing, added or replaced under {where}; "
                       f"{_rebuild_hint(loc, card)}")


def _footer(file: storage.Location, pq) -> tuple[object, str | None]:
    """(footer metadata, None) of one Parquet file, or (None, what is wrong) when its footer cannot be read.
    An I/O failure (permissions, network) is a StorageError, not a damaged file."""
    def read():
        with file.fs.open_input_file(file.path) as handle:
            try:
                return pq.ParquetFile(handle).metadata, None
            except pa.ArrowInvalid as exc:  # truncated, empty, not Parquet: "magic bytes not found in footer"
                return None, str(exc).splitlines()[0][:200]
            except OSError as exc:  # a corrupt footer: "Couldn't deserialize thrift: ..."
                text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                if "thrift" in text.lower() or "parquet" in text.lower():
                    return None, text
                raise
    return storage.guarded(file, read)


def _null_count(metadata, column: str) -> int | None:
    """Nulls in ``column`` over every row group, from the footer's statistics; None when any is missing."""
    total = 0
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        chunk = next((group.column(c) for c in range(group.num_columns)
                      if group.column(c).path_in_schema == column), None)
        stats = chunk.statistics if chunk is not None else None
        if stats is None or not stats.has_null_count:
            return None
        total += stats.null_count
    return total


def _rebuild_hint(loc: storage.Location, card: dict) -> str:
    """How to rebuild a damaged version: the sweep rebuilds what it preprocessed; by hand, the `preprocess`
    command with the card's own settings (when the command line can express them all)."""
    parent = loc.uri.rsplit("/", 1)[0]
    command = _preprocess_command(card, parent)
    by_hand = (f"`{command}`" if command else
               f"`rethink-audio preprocess --out {parent}` with the settings in its {CARD} (features, augment)")
    return (f"rebuild it: delete {loc.uri} and rerun the sweep (a sweep rebuilds a version it preprocessed), "
            f"or run {by_hand}")


def _preprocess_command(card: dict, out: str) -> str | None:
    """``rethink-audio preprocess ...`` that rebuilds the version of ``card`` under ``out``; None when the card
    lacks its source or holds settings the command line has no option for."""
    from orchestrator.config import AugmentConfig, FeatureConfig

    source, features, augment = card.get("source") or {}, card.get("features") or {}, card.get("augment") or {}
    if not card.get("name") or not source.get("root") or not features:
        return None
    feature_defaults, augment_defaults = FeatureConfig(), AugmentConfig()
    fixed = ("windows_ms", "hops_ms", "n_fft_ms", "n_mels", "log_eps", "mel_norm")  # no CLI option
    if any(k in features and _differs(features[k], getattr(feature_defaults, k)) for k in fixed):
        return None
    if any(k in augment and _differs(augment[k], getattr(augment_defaults, k))
           for k in ("pitch_semitones", "stretch_range", "kind")):
        return None
    if set(source.get("options") or {}) - {"folds", "seed"}:
        return None
    parts = ["rethink-audio preprocess", f"--dataset {card['name']}", f"--root {source['root']}", f"--out {out}"]
    flags = {"variant": "--features", "mel_scale": "--mel-scale", "kind": "--kind", "num_channels": "--num-channels",
             "n_mfcc": "--n-mfcc", "height": "--height"}
    parts += [f"{flag} {features[k]}" for k, flag in flags.items()
              if k in features and features[k] != getattr(feature_defaults, k)]
    parts += [f"{flag} {features[k]}" for k, flag in (("width", "--width"), ("sample_rate", "--sample-rate"))
              if features.get(k) is not None]
    if augment.get("copies"):
        parts += [f"--augment-copies {augment['copies']}", f"--augment-seed {augment.get('seed', 0)}"]
    parts += [f"--{k} {v}" for k, v in sorted((source.get("options") or {}).items())]
    return " ".join(parts)


def _differs(value, default) -> bool:
    """Whether a card value (JSON: lists for tuples) differs from a config default."""
    return (list(value) if isinstance(value, (list, tuple)) else value) != (
        list(default) if isinstance(default, (list, tuple)) else default)
