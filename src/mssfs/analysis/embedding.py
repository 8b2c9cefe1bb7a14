"""A 2-D embedding of sample sets (t-SNE, PCA for few samples).
"""

from __future__ import annotations

import numpy as np

from ..core.resize import resize_normals_array

__all__ = ["embed"]


def embed(normals: np.ndarray, mask: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D embedding of ``(N, H, W, 3)`` maps resized to 32x32: t-SNE when N >= 10
    (perplexity ``min(30, (N - 1) / 3)``), PCA for 2 <= N < 10.

    Returns ``((N, 2) coordinates, method name)``.
    """
    n = normals.shape[0]
    if n == 1:
        return np.zeros((1, 2)), "none"
    small, _ = resize_normals_array(normals, (32, 32), mask)
    x = small.reshape(n, -1).astype(np.float64)
    if n >= 10:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (n - 1) / 3.0)
        y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        return y, f"t-SNE (perplexity {perplexity:.1f})"
    from sklearn.decomposition import PCA

    y = PCA(n_components=min(2, n), random_state=seed).fit_transform(x)
    if y.shape[1] < 2:
        y = np.pad(y, ((0, 0), (0, 2 - y.shape[1])))
    return y, "PCA"
