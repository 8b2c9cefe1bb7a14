"""The ``figures`` relief family: stimulus-like figures on flat ground.

A map is flat ground carrying one to eight figures of the kinds seen in the publication's
test stimuli, each raised or sunk at random:

* ``disc``  -- a round (slightly elliptical) dome or dish: power, cosine-bell or
  flat-topped (mesa) profile;
* ``ring``  -- one to three concentric annular ridges or grooves;
* ``star``  -- a 3-8 armed star, arms of uneven length, possibly swirled, with a
  rounded (blurred) cross-section;
* ``snake`` -- a smooth wiggly tube along a random curve, possibly crossing itself;
* ``ridge`` -- a straight or gently curved tube.

Figures span 1/8 to 3/4 of the frame and meet the ground with zero slope (every profile
is C1), so outside the figures the normals are exactly ``(0, 0, 1)``.  A map is drawn in
two steps: :func:`plan` turns the random generator into a list of :class:`Figure` (no
pixels involved, so the layout is the same at every size), :func:`slopes` rasterises
them.  Slopes are analytic for discs and rings, and exact Gaussian-derivative filters of
a rasterised outline (stars) or splatted centre line (snakes, ridges) for the rest --
never finite differences.  Overlapping figures add their heights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

from .frame import normals_from_gradient, steepness_scale

__all__ = ["KINDS", "Figure", "make", "plan", "slopes"]

#: Figure kinds, and the chance of each when a figure is drawn.
KINDS = ("disc", "ring", "star", "snake", "ridge")
_KIND_SHARES = (0.26, 0.18, 0.2, 0.2, 0.16)
#: Figure radius range in frame units (the frame spans 2): 1/8 to 3/4 of the image across.
RADIUS_RANGE = (0.125, 0.75)
#: Figures are added until their footprints cover a random share of the frame in this
#: range (at most 8 figures); a figure that would overshoot the upper end is shrunk to fit.
COVER_RANGE = (0.15, 0.5)
_MAX_FIGURES = 8
#: The 95th percentile of the slope angle over the figures' pixels (degrees).
STEEPNESS_DEG = (15.0, 65.0)
_TRUNCATE = 4.0  # Gaussian filters reach 4 sigma
_MIN_RING_WIDTH = 0.03  # a ring's half-width: at least 1.5 % of the frame


@dataclass(frozen=True)
class Figure:
    """One figure: ``kind``, centre ``(cx, cy)`` and ``radius`` in frame units, ``sign``
    (+1 raised, -1 sunk), relative ``slope`` (1 = typical), and kind-specific ``params``."""

    kind: str
    cx: float
    cy: float
    radius: float
    sign: float
    slope: float
    params: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- planning


def _ellipse(rng: np.random.Generator, max_aspect: float) -> tuple[float, float, float]:
    """Quadratic form ``(m_xx, m_xy, m_yy)`` of an ellipse of unit geometric-mean radius."""
    aspect = rng.uniform(1.0, max_aspect)
    t = rng.uniform(0.0, math.pi)
    c, s = math.cos(t), math.sin(t)
    ia, ib = 1.0 / aspect, aspect
    return c * c * ia + s * s * ib, c * s * (ia - ib), s * s * ia + c * c * ib


def _profile(rng: np.random.Generator) -> dict:
    kind = ("power", "bell", "mesa")[int(rng.integers(3))]
    return {"profile": kind, "gamma": rng.uniform(1.5, 3.0), "shoulder": rng.uniform(0.2, 0.6)}


def _curve(rng: np.random.Generator, wiggly: bool) -> dict:
    """Heading of a smooth curve as a function of arc position ``t`` in [0, 1]."""
    if wiggly:
        amps = [rng.normal(0.0, 2.4 / k) for k in range(1, 5)]
        bend = 0.0
    else:
        amps = [0.0] * 4
        bend = rng.uniform(-2.0, 2.0) if rng.random() < 0.6 else 0.0
    return {"heading": rng.uniform(0.0, 2 * math.pi), "bend": bend, "amps": amps,
            "phases": list(rng.uniform(0.0, 2 * math.pi, size=4))}


def _params(kind: str, rng: np.random.Generator) -> dict:
    if kind == "disc":
        return {"ellipse": _ellipse(rng, 1.3), **_profile(rng)}
    if kind == "ring":
        n = int(rng.integers(1, 4))
        radii = [1.0] + sorted(rng.uniform(0.3, 0.8, size=n - 1).tolist(), reverse=True)
        widths = rng.uniform(0.05, 0.12, size=n).tolist()
        flips = [1.0] + [-1.0 if rng.random() < 0.3 else 1.0 for _ in range(n - 1)]  # inner rings may flip
        return {"ellipse": _ellipse(rng, 1.15), "radii": radii, "widths": widths, "flips": flips, **_profile(rng)}
    if kind == "star":
        return {
            "arms": int(rng.integers(3, 9)),
            "inner": rng.uniform(0.25, 0.55),
            "sharpness": rng.uniform(0.8, 3.0),
            "phase": rng.uniform(0.0, 2 * math.pi),
            "swirl": rng.uniform(-0.8, 0.8) if rng.random() < 0.5 else 0.0,
            "jitter": rng.uniform(-0.12, 0.12, size=2).tolist(),
            "jitter_phase": rng.uniform(0.0, 2 * math.pi, size=2).tolist(),
            "blur": rng.uniform(0.05, 0.14),
            "flatness": rng.uniform(1.5, 3.0) if rng.random() < 0.5 else 1.0,
        }
    # snake, ridge: a tube of Gaussian-derived cross-section along a curve
    return {"curve": _curve(rng, kind == "snake"),
            "width": rng.uniform(0.06, 0.14) if kind == "snake" else rng.uniform(0.04, 0.12),
            "flatness": rng.uniform(1.5, 3.0)}


def plan(rng: np.random.Generator) -> list[Figure]:
    """Draw the figures of one map (size-independent).

    Figures are drawn until their footprints (discs of their radius) cover a share of
    the frame drawn from :data:`COVER_RANGE`, so much of the ground stays flat.  Each gets
    a random kind, a radius log-uniform in :data:`RADIUS_RANGE` (shrunk if it would cover
    more than the range's upper end), a centre keeping most of it inside the frame and,
    where 20 tries allow, clear of the earlier ones.
    """
    target = rng.uniform(*COVER_RANGE)
    figs: list[Figure] = []
    covered = 0.0
    while covered < target and len(figs) < _MAX_FIGURES:
        kind = KINDS[int(rng.choice(len(KINDS), p=_KIND_SHARES))]
        radius = math.exp(rng.uniform(math.log(RADIUS_RANGE[0]), math.log(RADIUS_RANGE[1])))
        radius = min(radius, math.sqrt(4.0 * (COVER_RANGE[1] - covered) / math.pi))
        if radius < RADIUS_RANGE[0]:
            break
        covered += math.pi * radius * radius / 4.0  # share of the 2 x 2 frame
        lim = 1.0 - 0.5 * radius
        best, best_gap = None, -math.inf
        for _try in range(20):
            cx, cy = (float(v) for v in rng.uniform(-lim, lim, size=2))
            gap = min((math.hypot(cx - f.cx, cy - f.cy) - radius - f.radius for f in figs), default=math.inf)
            if gap > best_gap:
                best, best_gap = (cx, cy), gap
            if gap >= 0.0:
                break
        sign = -1.0 if rng.random() < 0.5 else 1.0
        figs.append(Figure(kind, best[0], best[1], radius, sign, rng.uniform(0.6, 1.5), _params(kind, rng)))
    return figs


# ---------------------------------------------------------------------------- rasterising


def _canvas(size: int, cx: float, cy: float, reach: float, clip: bool):
    """Pixel rows ``r0:r1`` and columns ``c0:c1`` covering ``reach`` around ``(cx, cy)`` (beyond
    the image unless ``clip``), and the frame coordinates ``x, y`` of their centres."""
    px = 2.0 / size
    c0, c1 = math.floor((cx - reach + 1.0) / px), math.ceil((cx + reach + 1.0) / px)
    r0, r1 = math.floor((1.0 - cy - reach) / px), math.ceil((1.0 - cy + reach) / px)
    if clip:
        r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, size), min(c1, size)
    x = (np.arange(c0, c1, dtype=np.float64) + 0.5) * px - 1.0
    y = 1.0 - (np.arange(r0, r1, dtype=np.float64) + 0.5) * px
    return (r0, r1, c0, c1), np.broadcast_to(x[None, :], (r1 - r0, c1 - c0)), np.broadcast_to(y[:, None], (r1 - r0, c1 - c0))


def _paste(gx, gy, box, fx, fy):
    """Add the window slopes ``fx, fy`` (rows ``r0:r1``, columns ``c0:c1``) inside the image."""
    size = gx.shape[0]
    r0, r1, c0, c1 = box
    a0, a1, b0, b1 = max(r0, 0), min(r1, size), max(c0, 0), min(c1, size)
    if a0 >= a1 or b0 >= b1:
        return
    gx[a0:a1, b0:b1] += fx[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]
    gy[a0:a1, b0:b1] += fy[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]


def _radial(p: dict, u: np.ndarray) -> np.ndarray:
    """Derivative ``dp/du`` of a profile with ``p(0) = 1``, ``p(u >= 1) = 0`` and ``p'(0) = p'(1) = 0``."""
    u = np.clip(u, 0.0, 1.0)
    if p["profile"] == "power":  # (1 - u^2)^gamma
        return -2.0 * p["gamma"] * u * (1.0 - u * u) ** (p["gamma"] - 1.0)
    if p["profile"] == "bell":  # (1 + cos(pi u)) / 2
        return -0.5 * math.pi * np.sin(math.pi * u)
    t = np.clip((1.0 - u) / p["shoulder"], 0.0, 1.0)  # mesa: smoothstep shoulder of relative width `shoulder`
    return -6.0 * t * (1.0 - t) / p["shoulder"]


def _elliptic(f: Figure, x, y):
    """Elliptic radius ``rho`` around the figure's centre and ``(M d) / rho`` (its gradient)."""
    mxx, mxy, myy = f.params["ellipse"]
    dx, dy = x - f.cx, y - f.cy
    mdx, mdy = mxx * dx + mxy * dy, mxy * dx + myy * dy
    rho = np.sqrt(dx * mdx + dy * mdy) + 1e-12
    return rho, mdx / rho, mdy / rho


def _disc(f: Figure, size: int, gx, gy):
    box, x, y = _canvas(size, f.cx, f.cy, f.radius * 1.15, clip=True)  # 1.15 > sqrt(max aspect)
    rho, ex, ey = _elliptic(f, x, y)
    width = f.radius * (f.params["shoulder"] if f.params["profile"] == "mesa" else 1.0)
    dh = (f.sign * f.slope * width) * _radial(f.params, rho / f.radius) / f.radius  # dh / drho
    _paste(gx, gy, box, dh * ex, dh * ey)


def _ring(f: Figure, size: int, gx, gy):
    box, x, y = _canvas(size, f.cx, f.cy, f.radius * 1.1, clip=True)
    rho, ex, ey = _elliptic(f, x, y)
    dh = np.zeros_like(rho)
    for frac, wfrac, flip in zip(f.params["radii"], f.params["widths"], f.params["flips"]):
        w = max(wfrac * f.radius, _MIN_RING_WIDTH)
        centre = frac * f.radius - w
        if centre < 1.5 * w:  # too small to be a ring at this width
            continue
        u = (rho - centre) / w
        width = w * (f.params["shoulder"] if f.params["profile"] == "mesa" else 1.0)
        dh += (f.sign * flip * f.slope * width / w) * np.sign(u) * _radial(f.params, np.abs(u))
    _paste(gx, gy, box, dh * ex, dh * ey)


def _filtered(size: int, plane: np.ndarray, sigma: float):
    """Value and frame-unit gradient ``(g, dg/dx, dg/dy)`` of ``plane`` blurred by ``sigma`` (frame units)."""
    px = 2.0 / size
    s = sigma / px
    g = gaussian_filter(plane, s, mode="constant", truncate=_TRUNCATE)
    gdx = gaussian_filter(plane, s, order=(0, 1), mode="constant", truncate=_TRUNCATE) / px
    gdy = -gaussian_filter(plane, s, order=(1, 0), mode="constant", truncate=_TRUNCATE) / px  # y up
    return g, gdx, gdy


def _flatten(g: np.ndarray, m: float) -> np.ndarray:
    """Derivative of the cap ``1 - (1 - g)^m`` (g clipped to [0, 1]): ``m = 1`` keeps the blurred
    profile, larger ``m`` flattens its top; zero slope at ``g >= 1``, so the cap is C1."""
    if m == 1.0:
        return np.ones_like(g)
    return m * (1.0 - np.clip(g, 0.0, 1.0)) ** (m - 1.0)


def _star(f: Figure, size: int, gx, gy):
    p = f.params
    px = 2.0 / size
    sigma = max(p["blur"] * f.radius, 0.8 * px)
    box, x, y = _canvas(size, f.cx, f.cy, f.radius * 1.15 + _TRUNCATE * sigma + 2 * px, clip=False)
    dx, dy = x - f.cx, y - f.cy
    r = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx) - p["swirl"] * r / f.radius
    spike = ((1.0 + np.cos(p["arms"] * (theta - p["phase"]))) / 2.0) ** p["sharpness"]
    length = 1.0 + sum(a * np.cos((k + 1) * theta + ph) for k, (a, ph) in enumerate(zip(p["jitter"], p["jitter_phase"])))
    inner = p["inner"] * f.radius
    edge = inner + (f.radius * length - inner) * spike
    inside = np.clip(0.5 + (edge - r) / px, 0.0, 1.0)  # antialiased outline
    g, gdx, gdy = _filtered(size, inside, sigma)
    k = f.sign * f.slope * sigma * math.sqrt(2.0 * math.pi) * _flatten(g, p["flatness"])
    _paste(gx, gy, box, k * gdx, k * gdy)


def _curve_points(c: dict, radius: float, step: float) -> np.ndarray:
    """Points ``(n, 2)`` about ``step`` apart along the curve ``c``, centred, fitted within ``radius``."""
    n = 512
    t = (np.arange(n) + 0.5) / n
    heading = c["heading"] + c["bend"] * (t - 0.5) + sum(
        a * np.sin((k + 1) * math.pi * t + ph) for k, (a, ph) in enumerate(zip(c["amps"], c["phases"]))
    )
    pts = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], -1), axis=0)
    pts -= 0.5 * (pts.min(axis=0) + pts.max(axis=0))
    pts *= radius / max(float(np.linalg.norm(pts, axis=1).max()), 1e-9)
    length = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
    m = max(2, math.ceil(length / step))
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    s = np.linspace(0.0, arc[-1], m)
    return np.stack([np.interp(s, arc, pts[:, 0]), np.interp(s, arc, pts[:, 1])], -1)


def _tube(f: Figure, size: int, gx, gy):
    p = f.params
    px = 2.0 / size
    sigma = max(p["width"] * f.radius, 0.8 * px)
    pts = _curve_points(p["curve"], max(f.radius - 2.0 * sigma, 0.5 * f.radius), 0.4 * px)
    box, x, _ = _canvas(size, f.cx, f.cy, f.radius + _TRUNCATE * sigma + 2 * px, clip=False)
    r0, _, c0, _ = box
    h, w = x.shape
    # bilinear splat of the centre line, mass per unit length 1, as a density per unit area
    c = (pts[:, 0] + f.cx + 1.0) / px - 0.5 - c0
    r = (1.0 - pts[:, 1] - f.cy) / px - 0.5 - r0
    ci, ri = np.floor(c).astype(np.int64), np.floor(r).astype(np.int64)
    fc, fr = c - ci, r - ri
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    mass = np.concatenate([[0.0], seg]) / 2 + np.concatenate([seg, [0.0]]) / 2
    density = np.zeros(h * w)
    for dr, dc, wt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        density += np.bincount((ri + dr) * w + ci + dc, weights=mass * wt, minlength=h * w)
    g, gdx, gdy = _filtered(size, density.reshape(h, w) / (px * px), sigma)
    norm = sigma * math.sqrt(2.0 * math.pi)  # a straight line's blurred peak is 1 / norm
    k = f.sign * f.slope * sigma * norm * _flatten(g * norm, p["flatness"])
    _paste(gx, gy, box, k * gdx, k * gdy)


_RASTER = {"disc": _disc, "ring": _ring, "star": _star, "snake": _tube, "ridge": _tube}


def slopes(figs: list[Figure], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Slopes ``(dz/dx, dz/dy)``, float64 ``(size, size)`` each, of flat ground carrying ``figs``.

    Each figure's height is about ``slope`` times its feature width (the disc's radius or
    shoulder, a ring's or tube's width, a star's blur), so figures of any size have
    slopes of the same order; pixels no figure reaches have slope exactly 0.
    """
    gx = np.zeros((size, size))
    gy = np.zeros((size, size))
    for f in figs:
        _RASTER[f.kind](f, size, gx, gy)
    return gx, gy


def make(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``figures`` family: normals ``(size, size, 3)`` float32 and an all-true mask.

    The slopes are scaled so the 95th percentile of the slope angle over the figures'
    pixels (slope above 1e-3 of the map's largest) is a random angle in
    :data:`STEEPNESS_DEG`; the ground stays exactly flat.
    """
    gx, gy = slopes(plan(rng), size)
    g = np.hypot(gx, gy)
    k = steepness_scale(gx, gy, rng, STEEPNESS_DEG, where=g > 1e-3 * g.max())
    return normals_from_gradient(gx * k, gy * k), np.ones((size, size), bool)
