"""Closed smooth objects as implicit functions (negative inside), with analytic gradients.

Each class draws its parameters from a NumPy generator and exposes ``bound``,
``value(x, y, z)`` and ``gradient(x, y, z)`` on 1-D float32 arrays in its own frame (see
:mod:`mssfs.data.shapes.raycast`).  All parameters are Python floats so float32 inputs stay
float32.
"""

from __future__ import annotations

import math

import numpy as np

from .frame import random_rotation

__all__ = ["BlendedQuadrics", "Capsules", "Extrusion", "PerturbedSphere", "Revolution", "Sphere", "Torus"]


def _f(a) -> list:
    return [float(v) for v in np.ravel(a)]


def _softmin(values: list, s: float):
    """Smooth minimum ``-s log sum exp(-v/s)`` and its weights (softmax of ``-v/s``)."""
    m = values[0]
    for v in values[1:]:
        m = np.minimum(m, v)
    e = [np.exp((m - v) / s) for v in values]
    total = e[0]
    for v in e[1:]:
        total = total + v
    return m - s * np.log(total), [v / total for v in e]


class Sphere:
    """The sphere of radius ``radius`` about the origin (used by the tests as ground truth)."""

    def __init__(self, radius: float = 1.0):
        self.radius = float(radius)
        self.bound = 1.01 * self.radius

    def value(self, x, y, z):
        return np.sqrt(x * x + y * y + z * z) - self.radius

    def gradient(self, x, y, z):
        r = np.sqrt(x * x + y * y + z * z) + 1e-12
        return x / r, y / r, z / r


class PerturbedSphere:
    """Star-shaped blob ``|u| = 1 + P(u/|u|)`` with ``u = q / stretch``; P has spherical-harmonic degrees 1-4.

    ``P(d) = d^T A d + sum_k w_k (a_k . d)^3 + sum_k v_k (b_k . d)^4`` spans the harmonics
    up to degree 4 on the unit sphere; it is scaled so ``max |P| = amp``.
    """

    def __init__(self, rng: np.random.Generator):
        a = rng.normal(size=(3, 3))
        a = 0.5 * (a + a.T)
        a -= np.trace(a) / 3.0 * np.eye(3)
        n3, n4 = int(rng.integers(0, 4)), int(rng.integers(0, 4))
        d3 = rng.normal(size=(n3, 3))
        d4 = rng.normal(size=(n4, 3))
        d3 /= np.linalg.norm(d3, axis=1, keepdims=True) + 1e-12
        d4 /= np.linalg.norm(d4, axis=1, keepdims=True) + 1e-12
        w3 = rng.normal(size=n3) * 0.8
        w4 = rng.normal(size=n4) * 0.6
        probe = rng.normal(size=(2000, 3))
        probe /= np.linalg.norm(probe, axis=1, keepdims=True)
        raw = np.einsum("ni,ij,nj->n", probe, a, probe)
        raw += ((probe @ d3.T) ** 3 @ w3) if n3 else 0.0
        raw += ((probe @ d4.T) ** 4 @ w4) if n4 else 0.0
        amp = rng.uniform(0.12, 0.42)
        k = amp / max(float(np.abs(raw).max()), 1e-9)
        self.a = _f(a * k)
        self.t3 = [(_f(d), float(w * k)) for d, w in zip(d3, w3)]
        self.t4 = [(_f(d), float(w * k)) for d, w in zip(d4, w4)]
        stretch = np.exp(rng.normal(0.0, 0.22, size=3))
        stretch /= np.prod(stretch) ** (1 / 3)
        self.stretch = _f(stretch)
        self.bound = 1.05 * float(stretch.max()) * (1.0 + amp)

    def _p(self, dx, dy, dz, grad: bool):
        a = self.a
        ad = (a[0] * dx + a[1] * dy + a[2] * dz, a[3] * dx + a[4] * dy + a[5] * dz, a[6] * dx + a[7] * dy + a[8] * dz)
        p = dx * ad[0] + dy * ad[1] + dz * ad[2]
        g = [2.0 * ad[0], 2.0 * ad[1], 2.0 * ad[2]] if grad else None
        for power, terms in ((3, self.t3), (4, self.t4)):
            for (bx, by, bz), w in terms:
                s = bx * dx + by * dy + bz * dz
                s_pm1 = s * s if power == 3 else s * s * s
                p = p + w * s_pm1 * s
                if grad:
                    c = power * w * s_pm1
                    g = [g[0] + c * bx, g[1] + c * by, g[2] + c * bz]
        return p, g

    def value(self, x, y, z):
        sx, sy, sz = self.stretch
        ux, uy, uz = x / sx, y / sy, z / sz
        rho = np.sqrt(ux * ux + uy * uy + uz * uz) + 1e-12
        p, _ = self._p(ux / rho, uy / rho, uz / rho, grad=False)
        return rho - 1.0 - p

    def gradient(self, x, y, z):
        sx, sy, sz = self.stretch
        ux, uy, uz = x / sx, y / sy, z / sz
        rho = np.sqrt(ux * ux + uy * uy + uz * uz) + 1e-12
        dx, dy, dz = ux / rho, uy / rho, uz / rho
        _, (gx, gy, gz) = self._p(dx, dy, dz, grad=True)
        dg = dx * gx + dy * gy + dz * gz  # tangential projection (I - d d^T) g / rho
        return (
            (dx - (gx - dx * dg) / rho) / sx,
            (dy - (gy - dy * dg) / rho) / sy,
            (dz - (gz - dz * dg) / rho) / sz,
        )


class BlendedQuadrics:
    """Smooth union (soft-min) of 2-5 randomly placed ellipsoids and superellipsoids."""

    def __init__(self, rng: np.random.Generator):
        n = int(rng.integers(2, 6))
        self.parts = []
        bound = 0.0
        for i in range(n):
            centre = rng.normal(size=3)
            centre *= rng.uniform(0.0, 0.55) / (np.linalg.norm(centre) + 1e-12) if i else 0.0
            axes = rng.uniform(0.18, 0.6, size=3)
            expo = float(rng.choice([2.0, 2.0, 2.0, 2.5, 3.0, 4.0]))
            rot = random_rotation(rng)
            self.parts.append((_f(centre), _f(axes), expo, [_f(r) for r in rot], float(axes.min())))
            bound = max(bound, float(np.linalg.norm(centre) + np.linalg.norm(axes)))
        self.blend = float(rng.uniform(0.04, 0.16))
        self.bound = 1.02 * bound + self.blend * math.log(n)

    def _part(self, part, x, y, z, grad: bool):
        (cx, cy, cz), (ax, ay, az), k, r, amin = part
        dx, dy, dz = x - cx, y - cy, z - cz
        # local coordinates u = R^T (q - c) / axes
        u = [(r[0][j] * dx + r[1][j] * dy + r[2][j] * dz) / a for j, a in enumerate((ax, ay, az))]
        if k == 2.0:
            s = u[0] * u[0] + u[1] * u[1] + u[2] * u[2]
            sk = np.sqrt(s) + 1e-12
        else:
            au = [np.abs(v) for v in u]
            s = au[0] ** k + au[1] ** k + au[2] ** k
            sk = s ** (1.0 / k) + 1e-12
        val = (sk - 1.0) * amin
        if not grad:
            return val, None
        # d sk / d u_j = sk^(1-k) |u_j|^(k-1) sign(u_j)
        if k == 2.0:
            gu = [v / sk for v in u]
        else:
            c = sk ** (1.0 - k)
            gu = [c * au[j] ** (k - 1.0) * np.sign(u[j]) for j in range(3)]
        gu = [g * (amin / a) for g, a in zip(gu, (ax, ay, az))]
        return val, [r[i][0] * gu[0] + r[i][1] * gu[1] + r[i][2] * gu[2] for i in range(3)]

    def value(self, x, y, z):
        vals = [self._part(p, x, y, z, False)[0] for p in self.parts]
        return _softmin(vals, self.blend)[0]

    def gradient(self, x, y, z):
        out = [self._part(p, x, y, z, True) for p in self.parts]
        _, w = _softmin([v for v, _ in out], self.blend)
        return tuple(sum(wi * g[i] for wi, (_, g) in zip(w, out)) for i in range(3))


class Torus:
    """Torus (tube radius 0.2-0.55 of the ring radius), stretched into an oval and flattened or thickened."""

    def __init__(self, rng: np.random.Generator):
        self.r = float(rng.uniform(0.2, 0.55))
        stretch = np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.5)])
        self.stretch = _f(stretch)
        self.bound = 1.02 * float(np.max(stretch)) * (1.0 + self.r)

    def _parts(self, x, y, z):
        sx, sy, sz = self.stretch
        ux, uy, uz = x / sx, y / sy, z / sz
        rho = np.sqrt(ux * ux + uy * uy) + 1e-12
        d = np.sqrt((rho - 1.0) ** 2 + uz * uz) + 1e-12
        return ux, uy, uz, rho, d

    def value(self, x, y, z):
        return self._parts(x, y, z)[4] - self.r

    def gradient(self, x, y, z):
        sx, sy, sz = self.stretch
        ux, uy, uz, rho, d = self._parts(x, y, z)
        c = (rho - 1.0) / (d * rho)
        return c * ux / sx, c * uy / sy, uz / (d * sz)


class Capsules:
    """Smooth union of 1-4 capsules (rounded limbs) of different radii, chained or scattered."""

    def __init__(self, rng: np.random.Generator):
        n = int(rng.integers(1, 5))
        chained = rng.random() < 0.6
        self.segs = []
        bound = 0.0
        a = rng.normal(size=3) * 0.3
        for _ in range(n):
            if not chained:
                a = rng.normal(size=3) * 0.3
            d = rng.normal(size=3)
            b = a + d / np.linalg.norm(d) * rng.uniform(0.4, 1.1)
            radius = float(rng.uniform(0.12, 0.32))
            ab = b - a
            self.segs.append((_f(a), _f(ab), float(ab @ ab), radius))
            bound = max(bound, float(np.linalg.norm(a)), float(np.linalg.norm(b)) + radius)
            bound = max(bound, float(np.linalg.norm(a)) + radius)
            a = b
        self.blend = float(rng.uniform(0.03, 0.12))
        self.bound = 1.02 * bound + self.blend * math.log(n) + 0.01

    def _seg(self, seg, x, y, z):
        (ax, ay, az), (bx, by, bz), l2, radius = seg
        dx, dy, dz = x - ax, y - ay, z - az
        t = np.clip((dx * bx + dy * by + dz * bz) / l2, 0.0, 1.0)
        ex, ey, ez = dx - t * bx, dy - t * by, dz - t * bz
        dist = np.sqrt(ex * ex + ey * ey + ez * ez) + 1e-12
        return dist - radius, (ex / dist, ey / dist, ez / dist)

    def value(self, x, y, z):
        return _softmin([self._seg(s, x, y, z)[0] for s in self.segs], self.blend)[0]

    def gradient(self, x, y, z):
        out = [self._seg(s, x, y, z) for s in self.segs]
        _, w = _softmin([v for v, _ in out], self.blend)
        return tuple(sum(wi * g[i] for wi, (_, g) in zip(w, out)) for i in range(3))


class Revolution:
    """Surface of revolution ``x^2 + y^2 = (1 - (z/H)^2) g(z)^2`` (vases, pears, spindles); oval section optional."""

    def __init__(self, rng: np.random.Generator):
        self.h = float(rng.uniform(0.6, 1.3))
        self.g0 = float(rng.uniform(0.35, 0.8))
        k = np.arange(1, 4)
        amp = rng.normal(size=3) / k
        amp *= rng.uniform(0.1, 0.5) / max(float(np.abs(amp).sum()), 1e-9)
        self.terms = [(float(kk * math.pi / (2 * self.h)), float(a), float(ph)) for kk, a, ph in zip(k, amp, rng.uniform(0, 2 * math.pi, 3))]
        self.oval = float(rng.uniform(0.7, 1.0))
        gmax = self.g0 * (1.0 + float(np.abs(amp).sum()))
        self.bound = 1.02 * math.sqrt(gmax * gmax + self.h * self.h)

    def _profile(self, z):
        """``rho^2(z)`` and its derivative."""
        g, dg = self.g0, 0.0
        for w, a, ph in self.terms:
            g = g + self.g0 * a * np.cos(w * z + ph)
            dg = dg - self.g0 * a * w * np.sin(w * z + ph)
        e = 1.0 - (z / self.h) ** 2
        return e * g * g, -2.0 * z / (self.h * self.h) * g * g + 2.0 * e * g * dg

    def value(self, x, y, z):
        yy = y / self.oval
        return x * x + yy * yy - self._profile(z)[0]

    def gradient(self, x, y, z):
        return 2.0 * x, 2.0 * y / (self.oval * self.oval), -self._profile(z)[1]


class Extrusion:
    """A wavy 2-D outline extruded to a slab of random thickness with rounded edges (pebbles, cookies)."""

    def __init__(self, rng: np.random.Generator):
        k = np.arange(2, 5)
        amp = rng.normal(size=3) / k**1.5
        amp *= rng.uniform(0.05, 0.25) / max(float(np.abs(amp).sum()), 1e-9)
        self.terms = [(int(kk), float(a), float(ph)) for kk, a, ph in zip(k, amp, rng.uniform(0, 2 * math.pi, 3))]
        self.elong = float(rng.uniform(0.55, 1.0))  # oval outline: y / elong
        self.half = float(rng.uniform(0.15, 0.6))
        self.blend = float(rng.uniform(0.05, 0.15))
        self.bound = 1.05 * math.sqrt((1.0 + float(np.abs(amp).sum())) ** 2 + self.half**2) + self.blend

    def _parts(self, x, y, z, grad: bool):
        y = y / self.elong
        rho = np.sqrt(x * x + y * y) + 1e-9
        th = np.arctan2(y, x)
        r, dr = 1.0, 0.0
        for kk, a, ph in self.terms:
            r = r + a * np.cos(kk * th + ph)
            if grad:
                dr = dr - a * kk * np.sin(kk * th + ph)
        side = rho - r
        slab = (z * z - self.half * self.half) / (2.0 * self.half)
        # soft maximum of the two: s log(e^(side/s) + e^(slab/s))
        m = np.maximum(side, slab)
        es, ez = np.exp((side - m) / self.blend), np.exp((slab - m) / self.blend)
        val = m + self.blend * np.log(es + ez)
        if not grad:
            return val, None
        ws, wz = es / (es + ez), ez / (es + ez)
        # grad side = grad rho - r'(theta) grad theta, then d/dy picks up 1 / elong
        gx = x / rho + dr * y / (rho * rho)
        gy = (y / rho - dr * x / (rho * rho)) / self.elong
        return val, (ws * gx, ws * gy, wz * z / self.half)

    def value(self, x, y, z):
        return self._parts(x, y, z, False)[0]

    def gradient(self, x, y, z):
        return self._parts(x, y, z, True)[1]
