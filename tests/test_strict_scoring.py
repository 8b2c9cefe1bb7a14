"""Strict scoring of the stimuli: discs read from their radial tilt (flat ones undecided),
strict one-region consistency per sample, and whether the two largest modes are a reading
and its inversion."""

from types import SimpleNamespace

import numpy as np
import pytest

from mssfs.analysis.clustering import INVERSION_CORRELATION, cluster_samples, mode_correlation
from mssfs.analysis.layouts import generated_bump_dent_layout
from mssfs.analysis.regions import MIN_DISC_TILT, consistency, disc_readings, radial_tilts
from mssfs.core.integrate import normals_from_depth
from mssfs.core.render import render
from mssfs.evaluation import score_stimulus, strict_table

SIZE = 64


def cap(radius: float, height: float, sign: int = 1, centre=(32.0, 32.0)):
    """Normals of a spherical cap of ``radius`` pixels rising ``height`` (sign -1: a dent)
    on flat ground, and its disc mask."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    r2 = (cols - centre[1]) ** 2 + (rows - centre[0]) ** 2
    sphere = (radius**2 + height**2) / (2 * height)  # the sphere through the rim and the top
    z = np.where(r2 < radius**2, np.sqrt(np.clip(sphere**2 - r2, 0, None)) - (sphere - height), 0.0)
    mask = np.ones((SIZE, SIZE), bool)
    return normals_from_depth(sign * z, mask), r2 < radius**2


def test_radial_tilt_of_a_hemisphere_a_dent_and_flat_ground():
    bump, disc = cap(12, 12)
    dent, _ = cap(12, 12, sign=-1)
    flat = np.zeros_like(bump)
    flat[..., 2] = 1
    t = radial_tilts(np.stack([bump, dent, flat]), [disc])
    assert t.shape == (3, 1)
    assert t[0, 0] == pytest.approx(2 / 3, abs=0.08)  # mean of r / R over a disc
    assert t[1, 0] == pytest.approx(-t[0, 0], abs=1e-6)
    assert t[2, 0] == 0.0
    assert radial_tilts(bump, disc.astype(np.int32)).shape == (1,)  # integer labels, one map


def test_disc_readings_leave_nearly_flat_discs_undecided():
    steep, disc = cap(12, 4)
    shallow, _ = cap(12, 0.3)  # rim slope about 3 degrees
    assert radial_tilts(shallow, [disc])[0] < MIN_DISC_TILT < radial_tilts(steep, [disc])[0]
    d = disc_readings(np.stack([steep, -steep * (1, 1, -1), shallow]), [disc])
    assert d[:, 0].tolist() == [1, -1, 0]
    assert consistency(d[2], [1]) is None  # an undecided disc fits no light
    with pytest.raises(ValueError, match="empty"):
        radial_tilts(steep, [np.zeros((SIZE, SIZE), bool)])


@pytest.fixture(scope="module")
def layout():
    return generated_bump_dent_layout(12345, SIZE)


def test_strict_region_scoring_counts_a_flattened_feature_against_the_sample(layout):
    n = layout.normals
    assert disc_readings(n, layout.regions).tolist() == list(layout.layout)
    inverted = n * np.array([-1.0, -1.0, 1.0])
    flattened = n.copy()
    flattened[layout.regions == 1] = (0.0, 0.0, 1.0)
    sc = score_stimulus(np.stack([n, inverted, flattened, n]), layout.mask, layout.regions, layout.layout)
    assert (sc.strict_true, sc.strict_inverted, sc.strict_consistent) == (0.5, 0.25, 0.75)
    assert sc.disc_readings[2][0] == 0 and sc.disc_readings[1] == [-x for x in layout.layout]
    assert sc.strict_one_region is None  # no image given: region items are scored by their discs


def test_mode_correlation_tells_an_inversion_from_the_same_reading(layout):
    n = layout.normals
    inverted = n * np.array([-1.0, -1.0, 1.0])
    stack = np.stack([n, n, n, inverted, inverted])
    clus = cluster_samples(stack, layout.mask)
    assert clus.n_modes == 2
    corr = mode_correlation(stack, layout.mask, clus)
    assert corr == pytest.approx(-1.0, abs=1e-6) and corr <= INVERSION_CORRELATION
    one = cluster_samples(np.stack([n, n]), layout.mask)
    assert mode_correlation(np.stack([n, n]), layout.mask, one) is None
    sc = score_stimulus(stack, layout.mask, layout.regions, layout.layout)
    assert sc.pair_share == 1.0 and sc.pair_correlation == pytest.approx(-1.0, abs=1e-6)


def test_strict_one_region_scoring_per_sample():
    bump, _ = cap(20, 14)
    light = np.array([0.5, 0.3, 0.81]) / np.linalg.norm([0.5, 0.3, 0.81])
    mask = np.ones((SIZE, SIZE), bool)
    image = 0.7 * render(bump, light)
    flat = np.zeros_like(bump)
    flat[..., 2] = 1
    inverted = bump * np.array([-1.0, -1.0, 1.0])
    sc = score_stimulus(np.stack([bump, inverted, flat, bump]), mask, image=image)
    assert len(sc.strict_one_region) == 4
    assert sc.strict_one_region[0] > 0.9 and sc.strict_one_region[1] > 0.9  # the inversion under its own light
    assert sc.strict_one_region[2] in (0.0, None)
    assert sc.strict_consistent == 0.75
    assert sc.consistent is None and sc.disc_readings is None
    # the lost shading: the flat sample (a quarter of the samples) loses everything as 'other'
    assert set(sc.strict_lost) == {"shallow", "inverted", "other"}
    assert sc.strict_lost["other"] == pytest.approx(0.25, abs=0.03) and sc.strict_lost["inverted"] < 0.05
    assert sc.to_dict()["strict_lost"] == sc.strict_lost


def test_strict_table_rows():
    method = SimpleNamespace(name="ours", stochastic=True)
    row = dict(item="star", kind="bundled", n=16, strict_consistent=0.5, strict_true=None, strict_inverted=None,
               strict_one_region=[0.9, 0.5, None], pair_share=0.75, pair_correlation=-0.9,
               strict_lost={"shallow": 0.2, "inverted": 0.05, "other": 0.05})
    results = {"items": {"ours": [row, dict(row, item="snake", pair_correlation=0.2, strict_lost=None)]},
               "summary": {"ours": {"layouts": {"count": 3, "strict_consistent": 1.0, "strict_true": 0.5,
                                                "strict_inverted": 0.5, "pair_share": 0.9}}}}
    lines = strict_table(results, [method, SimpleNamespace(name="flat", stochastic=False)]).splitlines()
    assert len(lines) == 2 + 3  # header, rule, star, snake, layouts; no row for the single-map method
    assert lines[2].startswith("| star | ours | 16 | 50 % |") and "| 0.70 |" in lines[2] and lines[2].endswith("| -0.90 | yes |")
    assert "| 0.20 / 0.05 / 0.05 |" in lines[2] and "| — | 75 % |" in lines[3]  # lost shading; none recorded
    assert lines[3].endswith("| 0.20 | no |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert lines[4].startswith("| layouts (mean of 3) | ours | 16 | 100 % | 50 % | 50 % |")
