"""Frame-filling height fields; each returns its slopes ``(dz/dx, dz/dy)`` on the pixel grid.

Heights live in frame units (the map spans ``[-1, 1]^2``, y up).  Gradients are analytic
(sums of closed-form features) or exact derivatives of a filtered field (Gaussian
derivative filters, spectral derivatives), never finite differences.  The caller scales
the slopes to a random steepness (:func:`mssfs.data.shapes.frame.steepness_scale`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from .frame import pixel_grid

__all__ = ["bumps", "craters", "noise_field", "ridges"]

_NOISE_GRID = 128


def _window(size: int, cx: float, cy: float, reach: float):
    """Row and column slices of the pixels within ``reach`` (frame units) of ``(cx, cy)``."""
    half = size / 2.0
    c0 = max(0, int((cx - reach + 1.0) * half))
    c1 = min(size, math.ceil((cx + reach + 1.0) * half))
    r0 = max(0, int((1.0 - cy - reach) * half))
    r1 = min(size, math.ceil((1.0 - cy + reach) * half))
    return slice(r0, r1), slice(c0, c1)


def _ellipse(rng: np.random.Generator, sigma: float, max_aspect: float):
    """Quadratic form ``M`` (3 floats: m_xx, m_xy, m_yy) of an ellipse with geometric-mean radius ``sigma``."""
    aspect = rng.uniform(1.0, max_aspect)
    a, b = sigma * math.sqrt(aspect), sigma / math.sqrt(aspect)
    t = rng.uniform(0, math.pi)
    c, s = math.cos(t), math.sin(t)
    ia, ib = 1 / (a * a), 1 / (b * b)
    return c * c * ia + s * s * ib, c * s * (ia - ib), s * s * ia + c * c * ib


def bumps(rng: np.random.Generator, size: int):
    """6-40 elliptical Gaussian (or flat-topped) bumps and dents of mixed sizes, overlapping freely."""
    x, y = pixel_grid(size)
    gx = np.zeros((size, size), np.float32)
    gy = np.zeros((size, size), np.float32)
    n = int(rng.integers(6, 41))
    dent_share = rng.uniform(0.0, 0.7)
    flat = rng.uniform(1.0, 2.0)  # exponent on the quadratic form: 1 Gaussian, 2 flat-topped
    smax = rng.uniform(0.12, 0.4)
    for _ in range(n):
        sigma = math.exp(rng.uniform(math.log(0.035), math.log(smax)))
        mxx, mxy, myy = _ellipse(rng, sigma, 3.0)
        cx, cy = rng.uniform(-1.1, 1.1, size=2)
        amp = sigma * rng.uniform(0.4, 1.4) * (-1.0 if rng.random() < dent_share else 1.0)
        gamma = 1.0 if rng.random() < 0.6 else flat
        rs, cs = _window(size, cx, cy, 4.0 * sigma * 1.75)
        if rs.start >= rs.stop or cs.start >= cs.stop:
            continue
        dx, dy = x[rs, cs] - float(cx), y[rs, cs] - float(cy)
        mdx, mdy = mxx * dx + mxy * dy, mxy * dx + myy * dy
        q = 0.5 * (dx * mdx + dy * mdy)
        if gamma == 1.0:
            c = -amp * np.exp(-q)
        else:
            qg = q ** (gamma - 1.0)
            c = -amp * np.exp(-q * qg) * gamma * qg
        gx[rs, cs] += c * mdx
        gy[rs, cs] += c * mdy
    return gx, gy


def _smooth_curve(rng: np.random.Generator, step: float):
    """Points ``(n, 2)`` along a random smooth open curve through the frame, ``step`` apart."""
    length = rng.uniform(1.0, 3.5)
    n = max(2, int(length / step))
    t = np.linspace(0.0, 1.0, n)
    heading = rng.uniform(0, 2 * math.pi) + sum(
        rng.normal(0, 1.6 / k) * np.sin(k * math.pi * t + rng.uniform(0, 2 * math.pi)) for k in range(1, 4)
    )
    pts = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], -1) * step, axis=0)
    pts -= pts.mean(axis=0)
    return pts + rng.uniform(-0.8, 0.8, size=2)


def ridges(rng: np.random.Generator, size: int):
    """Ridges and grooves of Gaussian cross-section along 2-7 random smooth curves, in 1-3 widths."""
    gx = np.zeros((size, size), np.float64)
    gy = np.zeros((size, size), np.float64)
    px = 2.0 / size  # frame units per pixel
    n = int(rng.integers(2, 8))
    widths = np.exp(rng.uniform(math.log(0.02), math.log(0.12), size=int(rng.integers(1, 4))))
    groove_share = rng.uniform(0.0, 0.8)
    lines = [np.zeros(size * size) for _ in widths]
    for _ in range(n):
        j = int(rng.integers(len(widths)))
        pts = _smooth_curve(rng, 0.4 * px)
        amp = widths[j] * rng.uniform(0.5, 1.5) * (-1.0 if rng.random() < groove_share else 1.0)
        # bilinear splat of the curve (mass per unit length ~ 1), in pixel coordinates
        c = (pts[:, 0] + 1.0) / px - 0.5
        r = (1.0 - pts[:, 1]) / px - 0.5
        c0, r0 = np.floor(c).astype(np.int64), np.floor(r).astype(np.int64)
        fc, fr = c - c0, r - r0
        w = amp * 0.4 * px  # step length (frame units) times amplitude
        for dr, dc, wt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
            rr, cc = r0 + dr, c0 + dc
            ok = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
            lines[j] += np.bincount(rr[ok] * size + cc[ok], weights=w * wt[ok], minlength=size * size)
    for width, line in zip(widths, lines):
        if not line.any():
            continue
        img = line.reshape(size, size) / (px * px)  # density per unit area
        sig = width / px
        # Gaussian-filtered line: peak height ~ amp / (sqrt(2 pi) width); derivative filters are exact
        scale = math.sqrt(2 * math.pi) * width
        gx += gaussian_filter(img, sig, order=(0, 1), mode="constant", truncate=4.0) * (scale / px)
        gy -= gaussian_filter(img, sig, order=(1, 0), mode="constant", truncate=4.0) * (scale / px)
    return gx.astype(np.float32), gy.astype(np.float32)


def craters(rng: np.random.Generator, size: int):
    """2-12 elliptical craters (bowl and raised rim), mesas and basins (smooth steps), overlapping."""
    x, y = pixel_grid(size)
    gx = np.zeros((size, size), np.float32)
    gy = np.zeros((size, size), np.float32)
    n = int(rng.integers(2, 13))
    for _ in range(n):
        radius = math.exp(rng.uniform(math.log(0.08), math.log(0.55)))
        mxx, mxy, myy = _ellipse(rng, 1.0, 1.7)
        cx, cy = rng.uniform(-1.1, 1.1, size=2)
        amp = radius * rng.uniform(0.3, 1.0)
        crater = rng.random() < 0.5
        if crater:
            w = radius * rng.uniform(0.12, 0.25)
            bowl = radius * rng.uniform(0.45, 0.7)
            depth = rng.uniform(0.5, 1.5)
            reach = max(radius + 5.0 * w, 4.5 * bowl)
        else:
            w = radius * rng.uniform(0.06, 0.3)
            sign = 1.0 if rng.random() < 0.6 else -1.0
            reach = radius + 12.0 * w
        rs, cs = _window(size, cx, cy, reach * 1.31)  # 1.31 = sqrt(max aspect): the ellipse's long axis
        if rs.start >= rs.stop or cs.start >= cs.stop:
            continue
        dx, dy = x[rs, cs] - float(cx), y[rs, cs] - float(cy)
        mdx, mdy = mxx * dx + mxy * dy, mxy * dx + myy * dy
        rho = np.sqrt(dx * mdx + dy * mdy) + 1e-9  # elliptic radius; grad rho = M d / rho
        if crater:  # bowl inside, raised rim at R
            rim = np.exp(-0.5 * ((rho - radius) / w) ** 2)
            dh_drho_over_rho = -amp * rim * (rho - radius) / (w * w * rho)
            dh_drho_over_rho += amp * depth * np.exp(-0.5 * (rho / bowl) ** 2) / (bowl * bowl)
        else:  # mesa (+) or basin (-): logistic step at R
            e = np.exp(-np.abs(rho - radius) / w)
            dsig = e / (1.0 + e) ** 2  # logistic derivative, symmetric
            dh_drho_over_rho = -sign * amp * dsig / (w * rho)
        gx[rs, cs] += dh_drho_over_rho * mdx
        gy[rs, cs] += dh_drho_over_rho * mdy
    return gx, gy


def noise_field(rng: np.random.Generator, size: int):
    """Smooth random height field: white noise with a power-law spectrum, soft cut-off and random anisotropy."""
    beta = rng.uniform(1.6, 3.2)  # amplitude spectrum ~ |k|^-beta
    cutoff = rng.uniform(4.0, 28.0)  # cycles per frame
    aspect = rng.uniform(1.0, 2.5)
    t = rng.uniform(0, math.pi)
    # White noise on a fixed 128 x 128 grid, so the field is the same at every map size:
    # its spectrum is embedded into the size's (zero-padded or truncated at |k| < size / 2).
    spec_src = np.fft.rfft2(rng.normal(size=(_NOISE_GRID, _NOISE_GRID)))
    ky_src = np.rint(np.fft.fftfreq(_NOISE_GRID, d=1.0 / _NOISE_GRID)).astype(int)
    keep_y = np.abs(ky_src) < min(size, _NOISE_GRID) // 2
    keep_x = np.arange(_NOISE_GRID // 2 + 1) < min(size, _NOISE_GRID) // 2
    spec = np.zeros((size, size // 2 + 1), complex)
    spec[np.ix_(ky_src[keep_y] % size, np.flatnonzero(keep_x))] = spec_src[np.ix_(keep_y, keep_x)] * (size / _NOISE_GRID) ** 2
    kx = np.fft.rfftfreq(size, d=1.0 / size)[None, :]  # cycles per frame
    ky = np.fft.fftfreq(size, d=1.0 / size)[:, None]
    c, s = math.cos(t), math.sin(t)
    ka = (c * kx + s * ky) * math.sqrt(aspect)
    kb = (-s * kx + c * ky) / math.sqrt(aspect)
    k = np.sqrt(ka * ka + kb * kb)
    k0 = rng.uniform(1.5, 4.0)  # roll-off below k0 keeps a single tilt from dominating
    spec *= np.where(k >= 1.0, (k0 * k0 + k * k) ** (-beta / 2.0), 0.0) * np.exp(-((k / cutoff) ** 2))
    # height h(row, col); dz/dx = d/dcol, dz/dy = -d/drow (y up); the frame spans 2 units
    gx = np.fft.irfft2(spec * (2j * math.pi * kx / 2.0), s=(size, size))
    gy = -np.fft.irfft2(spec * (2j * math.pi * ky / 2.0), s=(size, size))
    return gx.astype(np.float32), gy.astype(np.float32)
