"""SVCCA written the textbook way, the reference the project's implementation is checked against."""

from __future__ import annotations

import numpy as np


def reference_svcca(a: np.ndarray, b: np.ndarray, keep: float = 0.99) -> float:
    """SVCCA written the textbook way: np.linalg.svd, keep 99 % of variance, QR, CCA by SVD."""
    def reduce(x):
        x = x - x.mean(axis=0)
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        k = int(np.searchsorted(np.cumsum(s ** 2) / (s ** 2).sum(), keep) + 1)
        return np.linalg.qr(u[:, :k] * s[:k])[0]
    return float(np.linalg.svd(reduce(a).T @ reduce(b), compute_uv=False).mean())
