"""Exact Wasserstein distance between two sample sets.
"""

from __future__ import annotations

import numpy as np

from ..core.resize import resize_normals_array

__all__ = ["transport_cost", "wasserstein"]

#: Optimal-transport solvers :func:`transport_cost` knows.
SOLVERS = ("auto", "pot", "scipy")


def transport_cost(cost: np.ndarray, solver: str = "auto") -> float:
    """Exact optimal transport cost between uniform weights on the rows and the columns.

    Args:
        cost: ``(N, M)`` ground costs.
        solver: ``pot`` (POT's network simplex ``ot.emd2``, the ``analysis`` extra),
            ``scipy`` (no extra package: for ``N == M`` an optimal plan is a permutation
            -- the extreme points of the uniform transport polytope are permutation
            matrices scaled by ``1 / N`` -- found by ``linear_sum_assignment``; otherwise
            the transport linear program solved exactly by HiGHS) or ``auto`` (POT when
            it is installed, else scipy).  Both are exact; they agree to float rounding.
    """
    cost = np.asarray(cost, np.float64)
    n, m = cost.shape
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of: {', '.join(SOLVERS)}")
    if solver == "auto":
        import importlib.util

        solver = "pot" if importlib.util.find_spec("ot") is not None else "scipy"
    if solver == "pot":
        import ot

        return float(ot.emd2(np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost))
    if n == m:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        return float(cost[rows, cols].mean())
    import scipy.sparse as sp
    from scipy.optimize import linprog

    # Plan P (n x m) flattened row-major: row sums 1/n, column sums 1/m, P >= 0.
    rows = sp.kron(sp.identity(n), np.ones((1, m)))
    cols = sp.kron(np.ones((1, n)), sp.identity(m))
    res = linprog(cost.ravel(), A_eq=sp.vstack([rows, cols]).tocsr(),
                  b_eq=np.concatenate([np.full(n, 1.0 / n), np.full(m, 1.0 / m)]), bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"the transport problem was not solved ({res.message})")
    return float(res.fun)


def wasserstein(a: np.ndarray, b: np.ndarray, mask_a=None, mask_b=None, solver: str = "auto") -> float:
    """Exact Wasserstein-1 (earth mover's) distance between two sets of normal maps.

    Each set is a uniform empirical distribution over its flattened maps; the ground cost
    is the Euclidean distance between maps; the transport problem is solved exactly by
    :func:`transport_cost` (``solver``).  If the two differ in size, both are resized to
    the smaller height and width (:func:`resize_normals_array`).

    Args:
        a: ``(N, H, W, 3)``; b: ``(M, H', W', 3)``; masks optional.
    """
    from scipy.spatial.distance import cdist

    a, b = np.asarray(a), np.asarray(b)
    if a.shape[1:3] != b.shape[1:3]:
        size = (min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2]))
        a, _ = resize_normals_array(a, size, mask_a)
        b, _ = resize_normals_array(b, size, mask_b)
    x = a.reshape(a.shape[0], -1).astype(np.float64)
    y = b.reshape(b.shape[0], -1).astype(np.float64)
    return transport_cost(cdist(x, y, metric="euclidean"), solver)
