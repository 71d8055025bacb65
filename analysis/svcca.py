"""SVCCA (Raghu et al. 2017): how similar two layers' representations are, in numpy/scipy only.

Each view is a matrix ``(data points, neurons)``. SVD keeps, per view, the fewest directions that explain
99 % of its variance (removing noise directions), then CCA finds the maximally correlated pairs of
directions between the two reduced views; the similarity is the mean canonical correlation (1: the same
subspace, up to any invertible linear map; near 0: unrelated).

Convolutional activations ``(N, C, H, W)`` are compared with every spatial position of every clip as a data
point and channels as neurons (as Raghu et al. do for conv layers): a block's channel at two positions is
the same neuron, and pooling would throw away most of the data points CCA needs. CCA over-fits when data
points are not many times the neurons (correlations drift to 1 whatever the weights), so the number of clips
is chosen per network (:func:`clips_needed`) for at least ``MIN_RATIO`` (10) data points per neuron in every
block, from a dry forward pass that gives each block's positions per clip. Positions are subsampled to
``max_points`` per block (same positions in both views) but never below ``MIN_RATIO`` x channels
(:func:`points_per_block`). Results carry ``points``, ``ratio`` = points / channels and ``enough``: a test
fold too small for 10x is still analysed, and flagged.

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
# Data points per neuron every compared block gets. CCA finds spurious correlations when points are few:
# with points <= neurons it can match any two subspaces exactly (similarity 1 whatever the weights). The
# SVCCA authors' tutorial (google/svcca, tutorials/001_Introduction.ipynb, "How many datapoints?"): "Ideally
# we have an order of magnitude more datapoints than neurons that we're applying CCA over e.g. 5x --10x".
MIN_RATIO = 10
# Cap on data points per block (memory); never applied below MIN_RATIO x channels (see points_per_block).
DEFAULT_MAX_POINTS = 10_000


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
    """``(N, C, H, W)`` -> ``(N*H*W, C)``; 2-D input is already ``(points, neurons)``. Always a fresh float64
    array (``astype`` copies), which :func:`svcca_details` centres in place."""
    array = activations.detach().cpu().numpy() if isinstance(activations, torch.Tensor) else np.asarray(activations)
    if array.ndim == 4:
        array = array.transpose(0, 2, 3, 1).reshape(-1, array.shape[1])
    if array.ndim != 2:
        raise ValueError(f"expected (points, neurons) or (N, C, H, W) activations, got shape {array.shape}")
    return array.astype(np.float64)


def top_directions(view: np.ndarray, keep: float = KEEP_VARIANCE, overwrite: bool = False) -> np.ndarray:
    """Orthonormal basis (points, k) of the centred view's top-k singular directions, k the fewest that
    explain ``keep`` of the variance.

    The SVD is taken through the Gram matrix: for centred X = U S V^T, X^T X = V S^2 V^T (``eigh``), and
    X V_k / S_k = U_k. Same directions as ``np.linalg.svd(X)``, but the expensive step is one matrix
    product and an eigendecomposition of size neurons x neurons, several times faster for the tall views
    SVCCA sees (many more points than neurons), and U_k is already whitened for the CCA step. A wide view
    (fewer points than neurons: too few for a trustworthy answer, but the report still computes and flags
    it) uses X X^T = U S^2 U^T instead, an eigendecomposition of size points x points. ``overwrite``: centre
    ``view`` in place (a float array the caller no longer needs: one copy less of the largest array).
    """
    centred = view if overwrite else np.array(view, dtype=np.float64)
    centred -= centred.mean(axis=0)
    if centred.shape[0] < centred.shape[1]:
        variance, left = _descending(centred @ centred.T)
        return left[:, :_kept(variance, keep)]
    variance, vectors = _descending(centred.T @ centred)
    k = _kept(variance, keep)
    basis = centred @ vectors[:, :k]
    basis /= np.sqrt(variance[:k])  # in place: no second (points, k) array
    return basis


def _descending(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped at 0) and eigenvectors of a symmetric Gram matrix, largest first."""
    eigenvalues, vectors = np.linalg.eigh(gram)
    return np.clip(eigenvalues[::-1], 0.0, None), vectors[:, ::-1]


def _kept(variance: np.ndarray, keep: float) -> int:
    """The fewest leading directions that explain ``keep`` of the variance (0 for a constant view)."""
    if variance.sum() <= 0:
        return 0
    k = int(np.searchsorted(np.cumsum(variance) / variance.sum(), keep) + 1)
    return min(k, int((variance > variance[0] * 1e-12).sum()))  # never keep numerically-zero directions


def cca_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Canonical correlations of two views given as orthonormal column bases: singular values of a^T b."""
    if a.shape[1] == 0 or b.shape[1] == 0:
        return np.zeros(0)
    return np.clip(np.linalg.svd(a.T @ b, compute_uv=False), 0.0, 1.0)


def svcca_details(a, b, keep: float = KEEP_VARIANCE) -> SvccaResult:
    """SVCCA of two views with the same data points (rows); see :func:`svcca`."""
    with single_threaded_blas():
        # one float64 view at a time: the reduced basis replaces it (peak memory for wide, tall views)
        ra = top_directions(as_points(a), keep, overwrite=True)  # as_points returns a fresh float64 copy
        rb = top_directions(as_points(b), keep, overwrite=True)
        if ra.shape[0] != rb.shape[0]:
            raise ValueError(f"views need the same data points: {ra.shape[0]} vs {rb.shape[0]} rows")
        corr = cca_correlations(ra, rb)
    similarity = float(corr.mean()) if corr.size else float("nan")
    return SvccaResult(similarity, corr, ra.shape[1], rb.shape[1], ra.shape[0])


def svcca(a, b, keep: float = KEEP_VARIANCE) -> float:
    """Mean canonical correlation after keeping ``keep`` (99 %) of each view's variance.

    ``a``, ``b``: ``(points, neurons)`` or ``(N, C, H, W)`` activations of the same inputs.
    """
    return svcca_details(a, b, keep).similarity


# ---------------------------------------------------------------- how many data points


@dataclass(frozen=True)
class BlockGeometry:
    """A block's output as SVCCA sees it: ``channels`` neurons, ``positions`` data points per clip (H x W)."""

    channels: int
    positions: int

    def clips_for(self, min_ratio: float) -> int:
        """Clips whose positions give ``min_ratio`` data points per neuron."""
        return math.ceil(min_ratio * self.channels / self.positions)


@torch.no_grad()
def block_geometry(network, clip: torch.Tensor) -> list[BlockGeometry]:
    """Channels and spatial positions per clip of each block, from a dry forward pass of one clip."""
    outputs = trialnet.block_net(network).block_outputs(clip[:1])
    return [BlockGeometry(int(o.shape[1]), int(o[0, 0].numel())) for o in outputs]


def clips_needed(geometry: list[BlockGeometry], min_ratio: float = MIN_RATIO) -> int:
    """Fewest clips that give every block ``min_ratio`` x more data points than neurons (the widest block
    relative to its positions decides: DenseNet-201's block 4 at 3 x 128 x 250 needs 686)."""
    return max(g.clips_for(min_ratio) for g in geometry)


def points_per_block(geometry: list[BlockGeometry], n_clips: int, max_points: int | None = DEFAULT_MAX_POINTS,
                     min_ratio: float = MIN_RATIO) -> list[int]:
    """Data points kept per block: every (clip, position) pair, subsampled to at most ``max_points``, but a
    block is never cut below ``min_ratio`` x its channels: the cap bounds memory for the shallow blocks
    (many positions, few channels) and cannot undo what the clip count was chosen for."""
    kept = []
    for g in geometry:
        available = n_clips * g.positions
        cap = available if max_points is None else max(max_points, math.ceil(min_ratio * g.channels))
        kept.append(min(available, cap))
    return kept


# ---------------------------------------------------------------- trials


def _sample(total: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` sorted indices out of ``range(total)`` (all of them when ``k >= total``)."""
    return np.arange(total) if k >= total else np.sort(rng.choice(total, size=k, replace=False))


def _rows(activations: torch.Tensor, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of ``(N, C, H, W)`` activations seen as ``(N*H*W, C)`` points (clip-major order), in
    float32: only the sampled rows are ever copied out of the batch."""
    channels = activations.shape[1]
    flat = activations.permute(0, 2, 3, 1).reshape(-1, channels)
    return flat[torch.from_numpy(index)].float().numpy()


@torch.no_grad()
def paired_block_points(before, after, specs: torch.Tensor, points: list[int], batch_size: int = 16,
                        seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per block, ``(points[i], channels)`` activations of both networks at the same sampled (clip, position)
    pairs, drawn uniformly over all of them (so every clip contributes) and collected batch by batch:
    memory is the sampled points plus one batch's activations."""
    rng = np.random.default_rng(seed)
    nets = trialnet.block_net(before), trialnet.block_net(after)
    geometry = block_geometry(nets[1], specs)
    if len(points) != len(geometry):
        raise ValueError(f"points for {len(points)} blocks, the network has {len(geometry)}")
    chosen = [_sample(len(specs) * g.positions, k, rng) for g, k in zip(geometry, points)]
    views = [(np.empty((len(c), g.channels), np.float32), np.empty((len(c), g.channels), np.float32))
             for c, g in zip(chosen, geometry)]
    for start in range(0, len(specs), batch_size):
        x = specs[start:start + batch_size]
        outputs = zip(nets[0].block_outputs(x), nets[1].block_outputs(x))
        for (a, b), index, g, (view_a, view_b) in zip(outputs, chosen, geometry, views):
            lo, hi = np.searchsorted(index, [start * g.positions, (start + len(x)) * g.positions])
            local = index[lo:hi] - start * g.positions
            view_a[lo:hi], view_b[lo:hi] = _rows(a, local), _rows(b, local)
    return views


def trial_block_similarity(trial_dir_uri: str, data_uri: str | None = None, n_clips: int | None = None,
                           max_points: int | None = DEFAULT_MAX_POINTS, keep: float = KEEP_VARIANCE,
                           min_ratio: float = MIN_RATIO) -> pd.DataFrame:
    """SVCCA per block between a trial's network before fine-tuning and its final network.

    Runs both on fixed, class-balanced clips of the trial's test fold (``data_uri``: default the trial's
    dataset). ``n_clips=None`` (auto) takes the fewest clips that give every block ``min_ratio`` x more data
    points (clip x position) than neurons (channels), :func:`clips_needed`, capped by the fold's size; an int
    forces a count. Returns one row per block: trial_id, model, init, block, svcca, points, dims_before,
    dims_after, channels, clips, positions, ratio (points / channels) and enough (ratio >= min_ratio; False
    when the fold is too small: that block's SVCCA is biased towards 1). For init 'pretrained' the ImageNet
    weights must be available as for the trial.
    """
    info = trialnet.read_trial(trial_dir_uri)
    after = trialnet.final_network(info)  # first: fails fast when the trial has no checkpoint
    before = trialnet.initial_network(info)
    clips = trialnet.fixed_clips(data_uri or info.cfg.data, info.test_fold, n_clips=n_clips)
    geometry = block_geometry(after, clips.specs)
    specs = clips.specs[:clips_needed(geometry, min_ratio)] if n_clips is None else clips.specs
    points = points_per_block(geometry, len(specs), max_points, min_ratio)
    rows = []
    for block, (a, b) in enumerate(paired_block_points(before, after, specs, points), 1):
        result = svcca_details(a, b, keep)
        g = geometry[block - 1]
        rows.append({"trial_id": info.trial_id, "model": info.cfg.model, "init": info.cfg.init, "block": block,
                     "svcca": result.similarity, "points": result.points, "dims_before": result.dims_a,
                     "dims_after": result.dims_b, "channels": g.channels, "clips": len(specs),
                     "positions": g.positions, "ratio": result.points / g.channels,
                     "enough": result.points >= min_ratio * g.channels})
    return pd.DataFrame(rows)


def points_note(similarity: pd.DataFrame, min_ratio: float = MIN_RATIO) -> str:
    """One caption line: minimum and median data points / neurons over the compared blocks, and the blocks
    that fell short of ``min_ratio`` (too few clips: a small test fold, or a forced count), whose SVCCA is
    biased towards 1."""
    if similarity.empty or "ratio" not in similarity:
        return ""
    ratio = similarity["ratio"]
    stats = f"min {ratio.min():.3g}x, median {ratio.median():.3g}x over {len(ratio)} blocks"
    short = similarity[ratio < min_ratio]
    if short.empty:
        return f"data points / neurons >= {min_ratio:g}x in every block ({stats})"
    worst = short.groupby(["model", "block"])["ratio"].min()
    which = ", ".join(f"{model} block {block} ({r:.3g}x)" for (model, block), r in worst.items())
    return (f"data points / neurons {stats}; below {min_ratio:g}x (too few clips in the test fold) for "
            f"{which}: SVCCA there is biased towards 1")
