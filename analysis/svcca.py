"""SVCCA (Raghu et al. 2017): how similar two layers' representations are, in numpy/scipy only.

Each view is a matrix ``(data points, neurons)``. SVD keeps, per view, the fewest directions that explain
99 % of its variance (removing noise directions), then CCA finds the maximally correlated pairs of
directions between the two reduced views; the similarity is the mean canonical correlation (1: the same
subspace, up to any invertible linear map; near 0: unrelated).

Convolutional activations ``(N, C, H, W)`` are compared with every spatial position of every clip as a data
point and channels as neurons (as Raghu et al. do for conv layers): a block's channel at two positions is
the same neuron, and pooling would throw away most of the data points CCA needs. Positions are subsampled
to ``max_points`` (same positions in both views). CCA over-fits when data points are not many times the
kept dimensions (correlations drift to 1), so results carry ``points`` and the kept ``dims`` to judge by.

The paper's Fig. 2a question, per block: how far did fine-tuning move the representation? Compare the
network before fine-tuning (ImageNet weights, or the seeded random init) with the final one on a fixed
batch of test-fold clips (:func:`trial_block_similarity`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from analysis import trialnet

try:  # installed with scipy's usual dependencies; optional here
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

KEEP_VARIANCE = 0.99


def single_threaded_blas():
    """Run numpy's BLAS/LAPACK on one thread. Beside torch (whose OpenMP workers keep spinning after each
    op) a multi-threaded OpenBLAS thrashes: a 512 x 512 ``eigh`` took 1-4 s instead of 40 ms on a busy
    2-core machine. One thread is as fast as several at SVCCA's sizes anyway."""
    return threadpool_limits(1, user_api="blas") if threadpool_limits else contextlib.nullcontext()


@dataclass(frozen=True)
class SvccaResult:
    """Mean canonical correlation and what it rests on."""

    similarity: float
    correlations: np.ndarray
    dims_a: int  # directions kept by the SVD step
    dims_b: int
    points: int


def as_points(activations: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N*H*W, C)``; 2-D input is already ``(points, neurons)``."""
    array = activations.detach().cpu().numpy() if isinstance(activations, torch.Tensor) else np.asarray(activations)
    if array.ndim == 4:
        array = array.transpose(0, 2, 3, 1).reshape(-1, array.shape[1])
    if array.ndim != 2:
        raise ValueError(f"expected (points, neurons) or (N, C, H, W) activations, got shape {array.shape}")
    return array.astype(np.float64)


def top_directions(view: np.ndarray, keep: float = KEEP_VARIANCE) -> np.ndarray:
    """Orthonormal basis (points, k) of the centred view's top-k singular directions, k the fewest that
    explain ``keep`` of the variance.

    The SVD is taken through the Gram matrix: for centred X = U S V^T, X^T X = V S^2 V^T (``eigh``), and
    X V_k / S_k = U_k. Same directions as ``np.linalg.svd(X)``, but the expensive step is one matrix
    product and an eigendecomposition of size neurons x neurons, several times faster for the tall views
    SVCCA sees (many more points than neurons), and U_k is already whitened for the CCA step.
    """
    centred = view - view.mean(axis=0)
    eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)
    variance, vectors = np.clip(eigenvalues[::-1], 0.0, None), vectors[:, ::-1]  # descending
    if variance.sum() <= 0:
        return centred[:, :0]
    k = int(np.searchsorted(np.cumsum(variance) / variance.sum(), keep) + 1)
    k = min(k, int((variance > variance[0] * 1e-12).sum()))  # never keep numerically-zero directions
    return centred @ vectors[:, :k] / np.sqrt(variance[:k])


def cca_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Canonical correlations of two views given as orthonormal column bases: singular values of a^T b."""
    if a.shape[1] == 0 or b.shape[1] == 0:
        return np.zeros(0)
    return np.clip(np.linalg.svd(a.T @ b, compute_uv=False), 0.0, 1.0)


def svcca_details(a, b, keep: float = KEEP_VARIANCE) -> SvccaResult:
    """SVCCA of two views with the same data points (rows); see :func:`svcca`."""
    a, b = as_points(a), as_points(b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"views need the same data points: {a.shape[0]} vs {b.shape[0]} rows")
    with single_threaded_blas():
        ra, rb = top_directions(a, keep), top_directions(b, keep)
        corr = cca_correlations(ra, rb)
    similarity = float(corr.mean()) if corr.size else float("nan")
    return SvccaResult(similarity, corr, ra.shape[1], rb.shape[1], a.shape[0])


def svcca(a, b, keep: float = KEEP_VARIANCE) -> float:
    """Mean canonical correlation after keeping ``keep`` (99 %) of each view's variance.

    ``a``, ``b``: ``(points, neurons)`` or ``(N, C, H, W)`` activations of the same inputs.
    """
    return svcca_details(a, b, keep).similarity


# ---------------------------------------------------------------- trials


@torch.no_grad()
def paired_block_points(before, after, specs: torch.Tensor, max_points: int = 10_000, batch_size: int = 16,
                        seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per block, (points, channels) activations of both networks at the same sampled positions."""
    rng = np.random.default_rng(seed)
    batches = list(torch.split(specs, batch_size))
    per_batch = math.ceil(max_points / len(batches))
    pairs: list[tuple[list, list]] = []
    for x in batches:
        outputs = zip(trialnet.block_net(before).block_outputs(x), trialnet.block_net(after).block_outputs(x))
        for i, (a, b) in enumerate(outputs):
            a, b = as_points(a), as_points(b)
            take = rng.choice(len(a), size=min(per_batch, len(a)), replace=False)
            if i == len(pairs):
                pairs.append(([], []))
            pairs[i][0].append(a[take])
            pairs[i][1].append(b[take])
    return [(np.concatenate(a), np.concatenate(b)) for a, b in pairs]


def trial_block_similarity(trial_dir_uri: str, data_uri: str | None = None, n_clips: int = 64,
                           max_points: int = 10_000, keep: float = KEEP_VARIANCE) -> pd.DataFrame:
    """SVCCA per block between a trial's network before fine-tuning and its final network.

    Runs both on ``n_clips`` fixed, class-balanced clips of the trial's test fold (``data_uri``: default the
    trial's dataset). Returns one row per block: trial_id, init, block, svcca, points, dims_before,
    dims_after, channels. For init 'pretrained' the ImageNet weights must be available as for the trial.
    """
    info = trialnet.read_trial(trial_dir_uri)
    clips = trialnet.fixed_clips(data_uri or info.cfg.data, info.test_fold, n_clips=n_clips)
    after = trialnet.final_network(info)  # first: fails fast when the trial has no checkpoint
    before = trialnet.initial_network(info)
    rows = []
    for block, (a, b) in enumerate(paired_block_points(before, after, clips.specs, max_points), 1):
        result = svcca_details(a, b, keep)
        rows.append({"trial_id": info.trial_id, "model": info.cfg.model, "init": info.cfg.init, "block": block,
                     "svcca": result.similarity, "points": result.points, "dims_before": result.dims_a,
                     "dims_after": result.dims_b, "channels": a.shape[1]})
    return pd.DataFrame(rows)
