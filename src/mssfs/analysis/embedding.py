"""A 2-D embedding of sample sets (t-SNE, PCA for few samples).
"""

from __future__ import annotations

import numpy as np

from ..core.resize import resize_normals_array

__all__ = ["SAME", "embed"]

#: Samples whose 32x32 maps differ by at most this much anywhere count as identical.
SAME = 1e-6


def embed(normals: np.ndarray, mask: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D embedding of ``(N, H, W, 3)`` maps resized to 32x32: t-SNE when there are at
    least 10 distinct maps (perplexity ``min(30, (M - 1) / 3)`` for ``M`` distinct maps),
    PCA for 2 to 9.

    Identical maps (equal to within :data:`SAME`) are embedded once and every copy gets
    their coordinates: t-SNE's PCA start divides by the spread of the points, which is
    zero for copies.  A set of identical (or single) maps sits at the origin.

    Returns ``((N, 2) coordinates, method name)``.
    """
    n = normals.shape[0]
    if n == 1:
        return np.zeros((1, 2)), "none"
    small, _ = resize_normals_array(normals, (32, 32), mask)
    x = small.reshape(n, -1).astype(np.float64)
    if np.abs(x - x.mean(0)).max() <= SAME:
        return np.zeros((n, 2)), "none (identical samples)"
    _, first, inverse = np.unique(np.round(x / SAME), axis=0, return_index=True, return_inverse=True)
    xu, inverse, m = x[first], inverse.reshape(-1), first.size
    if m >= 10:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (m - 1) / 3.0)
        y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(xu)
        if np.isfinite(y).all():
            return y[inverse], f"t-SNE (perplexity {perplexity:.1f})"
    from sklearn.decomposition import PCA

    y = PCA(n_components=min(2, m), random_state=seed).fit_transform(xu)
    if y.shape[1] < 2:
        y = np.pad(y, ((0, 0), (0, 2 - y.shape[1])))
    return y[inverse], "PCA"
