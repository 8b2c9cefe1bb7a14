"""The Wasserstein distance without POT: exact optimal transport from scipy, equal to POT's
where POT is installed (the ``analysis`` and ``test`` extras)."""

import numpy as np
import pytest

from mssfs.analysis.wasserstein import transport_cost, wasserstein


def brute_force(cost: np.ndarray) -> float:
    """Smallest mean cost over all permutations (equal sizes, N <= 6)."""
    from itertools import permutations

    n = cost.shape[0]
    return min(cost[np.arange(n), list(p)].mean() for p in permutations(range(n)))


@pytest.mark.parametrize("n", [1, 3, 6])
def test_equal_sizes_are_an_assignment_problem(n):
    cost = np.random.default_rng(n).random((n, n))
    assert transport_cost(cost, "scipy") == pytest.approx(brute_force(cost), abs=1e-12)


def test_unequal_sizes_split_mass():
    # Two points against one: each sends its half to the single point.
    assert transport_cost(np.array([[1.0], [3.0]]), "scipy") == pytest.approx(2.0)
    # One point against two at distances 1 and 5: half of the mass to each.
    assert transport_cost(np.array([[1.0, 5.0]]), "scipy") == pytest.approx(3.0)
    # Replicating every point of both sets leaves the distance unchanged.
    cost = np.random.default_rng(0).random((3, 4))
    assert transport_cost(cost, "scipy") == pytest.approx(transport_cost(np.kron(cost, np.ones((4, 3))), "scipy"))


def test_distance_of_sample_sets():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 8, 8, 3)).astype(np.float32)
    assert wasserstein(a, a, solver="scipy") == pytest.approx(0.0, abs=1e-9)
    b = a[::-1].copy()  # the same set in another order
    assert wasserstein(a, b, solver="scipy") == pytest.approx(0.0, abs=1e-9)
    c = a + 0.5
    assert wasserstein(a, c, solver="scipy") == pytest.approx(0.5 * np.sqrt(8 * 8 * 3), rel=1e-6)
    with pytest.raises(ValueError, match="unknown solver"):
        transport_cost(np.ones((2, 2)), "sinkhorn")


@pytest.mark.parametrize("shape", [(6, 6), (7, 4), (2, 9)])
def test_scipy_equals_pot(shape):
    pytest.importorskip("ot")
    cost = np.random.default_rng(sum(shape)).random(shape) * 10
    assert transport_cost(cost, "scipy") == pytest.approx(transport_cost(cost, "pot"), rel=1e-9, abs=1e-12)
    a = np.random.default_rng(2).normal(size=(shape[0], 6, 5, 3))
    b = np.random.default_rng(3).normal(size=(shape[1], 6, 5, 3))
    assert wasserstein(a, b, solver="scipy") == pytest.approx(wasserstein(a, b, solver="pot"), rel=1e-9)
