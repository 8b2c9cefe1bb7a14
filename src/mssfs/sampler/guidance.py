"""Differentiable guidance losses on assembled normal images (docs/method.md#guided-ddim).

Both losses take the predicted clean normals of whole images, ``x0`` of shape
``(B, 3, H, W)`` (channels ``nx, ny, nz`` in the frame of :mod:`mssfs.core.frame`; the
vectors need not be unit length), and return one loss per image, shape ``(B,)``.
Per-image losses keep the samples of a batch independent: the sampler sums them, so the
gradient with respect to one sample's ``x_t`` does not depend on the other samples.

An optional foreground ``mask`` ``(B, 1, H, W)`` or ``(H, W)`` (bool or {0, 1}) restricts
each loss to terms whose pixels all lie inside the object; without one every pixel
counts (the publication's behaviour for images without background).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.patches import PATCH

__all__ = ["SLOPE_CLAMP", "image_tilt_axis", "integrability_loss", "lateral_floor", "lock_tilt", "safe_angle", "seam_loss", "shading_loss", "slopes_published"]


#: Slopes are clamped to ``[-SLOPE_CLAMP, SLOPE_CLAMP]`` in the integrability loss.
SLOPE_CLAMP = 10.0


def safe_angle(a: torch.Tensor, b: torch.Tensor, dim: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """Angle in radians between vectors along ``dim``, with finite gradients everywhere.

    ``acos`` of the cosine clamped to ``[-1 + eps, 1 - eps]``, shifted so parallel vectors
    give exactly 0 (the clamp otherwise leaves ``sqrt(2 eps)`` there).  Where the clamp is
    active the gradient is 0, never NaN or infinite.  Shapes: ``a``, ``b`` broadcastable;
    the result drops ``dim``.
    """
    tiny = 1e-12 if a.dtype == torch.float64 else 1e-8
    cos = (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim)).clamp_min(tiny)
    lo, hi = -1.0 + eps, 1.0 - eps
    zero = torch.acos(torch.tensor(hi, dtype=cos.dtype, device=cos.device))
    return torch.acos(cos.clamp(lo, hi)) - zero


def _as_mask(mask, x: torch.Tensor) -> torch.Tensor | None:
    """``mask`` as float ``(B or 1, 1, H, W)`` on ``x``'s device, or None."""
    if mask is None:
        return None
    m = torch.as_tensor(mask, device=x.device)
    while m.ndim < 4:
        m = m.unsqueeze(0)
    return m.to(x.dtype)


def _seam_angles(x: torch.Tensor, m: torch.Tensor | None, patch: int):
    """Seam angles across vertical seams (between patch columns) of ``x`` ``(B, 3, H, W)``.

    Returns ``(angles (B, H, S), weights (B or 1, H, S) or None)`` with ``S = W/P - 1``.
    """
    cols = torch.arange(patch, x.shape[-1], patch, device=x.device)
    left1, left2 = x[..., cols - 1], x[..., cols - 2]  # last and second-to-last, left side
    right1, right2 = x[..., cols], x[..., cols + 1]  # first and second, right side
    from_left = safe_angle(2 * left1 - left2, right1)
    from_right = safe_angle(2 * right1 - right2, left1)
    angles = 0.5 * (from_left + from_right)
    if m is None:
        return angles, None
    w = m[..., cols - 2] * m[..., cols - 1] * m[..., cols] * m[..., cols + 1]
    return angles, w[:, 0]


def seam_loss(x0: torch.Tensor, mask=None, patch: int = PATCH) -> torch.Tensor:
    """Mean seam angle (radians) between neighbouring patches, per image.

    At every boundary between two neighbouring ``patch x patch`` tiles (vertical and
    horizontal seams), the normal is extrapolated linearly across the seam from each
    side, ``last + (last - second_to_last)``, and compared by angle with the first pixel
    on the other side; the two angles are averaged and the mean is taken over all seam
    pixels (with a mask: over seam pixels whose four pixels across the seam are inside).

    Args:
        x0: ``(B, 3, H, W)``, ``H`` and ``W`` multiples of ``patch``.
        mask: optional foreground ``(B, 1, H, W)`` / ``(H, W)``.
    Returns:
        ``(B,)`` loss; 0 for an image that is a single patch.
    """
    b, _, h, w = x0.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    m = _as_mask(mask, x0)
    a_v, w_v = _seam_angles(x0, m, patch)  # vertical seams
    a_h, w_h = _seam_angles(x0.transpose(-1, -2), None if m is None else m.transpose(-1, -2), patch)
    angles = torch.cat([a_v.flatten(1), a_h.flatten(1)], dim=1)
    if angles.shape[1] == 0:
        return x0.new_zeros(b)
    if m is None:
        return angles.mean(1)
    weights = torch.cat([w_v.flatten(1), w_h.flatten(1)], dim=1).expand(b, -1)
    return (angles * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def slopes_published(x0: torch.Tensor, clamp: float = SLOPE_CLAMP, min_nz: float = 1e-3):
    """Slopes with the publication's sign choice: ``p = -nx/nz``, ``q = +ny/nz``.

    In this project's frame (y up) the height slopes are ``(p, -q)``: ``q`` here is the
    negated ``dz/dy``, i.e. ``dz/d(row)``.  ``nz`` is kept away from 0 (sign preserved)
    so the division has finite gradients; both slopes are clamped to ``[-clamp, clamp]``.
    Returns two ``(B, H, W)`` tensors.
    """
    nx, ny, nz = x0[:, 0], x0[:, 1], x0[:, 2]
    nz = torch.where(nz >= 0, nz.clamp_min(min_nz), nz.clamp_max(-min_nz))
    p = (-nx / nz).clamp(-clamp, clamp)
    q = (ny / nz).clamp(-clamp, clamp)
    return p, q


def integrability_loss(x0: torch.Tensor, mask=None, clamp: float = SLOPE_CLAMP) -> torch.Tensor:
    """Mean squared discrete curl over 2x2 cells, per image.

    With the publication's slopes (:func:`slopes_published`) and cells indexed
    ``[row][col]``::

        (p00 + p01 - p10 - p11 - q00 + q01 - q10 + q11) ** 2

    Since that ``q`` is ``-dz/dy`` of the y-up frame, the bracket equals
    ``2 (dp/dy - dz_y/dx)`` = twice :func:`mssfs.core.frame.integrability_residual`: it
    vanishes on the normals of a true height field in this frame, so the published sign
    choice is kept unchanged (see docs/method.md#guided-ddim).

    Args:
        x0: ``(B, 3, H, W)``.
        mask: optional foreground; only cells with all four pixels inside count.
    Returns:
        ``(B,)`` loss.
    """
    p, q = slopes_published(x0, clamp)
    p00, p01, p10, p11 = p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:]
    q00, q01, q10, q11 = q[:, :-1, :-1], q[:, :-1, 1:], q[:, 1:, :-1], q[:, 1:, 1:]
    curl2 = (p00 + p01 - p10 - p11 - q00 + q01 - q10 + q11) ** 2
    m = _as_mask(mask, x0)
    if m is None:
        return curl2.flatten(1).mean(1)
    m = m[:, 0]
    cell = (m[:, :-1, :-1] * m[:, :-1, 1:] * m[:, 1:, :-1] * m[:, 1:, 1:]).expand_as(curl2)
    return (curl2 * cell).flatten(1).sum(1) / cell.flatten(1).sum(1).clamp_min(1.0)


def lateral_floor(b: torch.Tensor, min_lateral) -> torch.Tensor:
    """Lights ``(B, 3)`` whose image-plane part is at least ``min_lateral`` of their length.

    A light ``b`` with ``|b_xy| < min_lateral |b|`` is turned away from the view axis, in
    the plane of ``b`` and the axis, until ``|b_xy| = min_lateral |b|``: ``b_xy`` keeps its
    direction, ``b_z`` its sign, ``|b|`` its value.  A light with no image-plane part
    (``b_xy = 0``: no direction to turn to) and every light whose floor is 0 are returned
    unchanged.  ``min_lateral``: a float or a ``(B,)`` tensor (one floor per light), each
    in ``[0, 1)`` (checked for floats and CPU tensors; a tensor on an accelerator is taken
    as checked, so that the call never waits for the device).
    """
    if not torch.is_tensor(min_lateral):
        if not 0.0 <= float(min_lateral) < 1.0:
            raise ValueError(f"min_lateral must lie in [0, 1), got {min_lateral}")
        if float(min_lateral) == 0.0:
            return b
    floor = torch.as_tensor(min_lateral, dtype=b.dtype, device=b.device)
    if floor.ndim > 1 or (floor.ndim == 1 and floor.shape[0] != b.shape[0]):
        raise ValueError(f"min_lateral must be a number or one per light ({b.shape[0]}), got shape {tuple(floor.shape)}")
    # a tensor's values are checked where that costs no wait for the accelerator (on the
    # CPU); the sampler passes floors it has checked (Stage)
    on_cpu = torch.is_tensor(min_lateral) and min_lateral.device.type == "cpu"
    if on_cpu and bool(((min_lateral < 0) | (min_lateral >= 1)).any()):
        raise ValueError(f"min_lateral must lie in [0, 1), got {min_lateral}")
    floor = floor.expand(b.shape[0])[:, None]
    tiny = 1e-12 if b.dtype == torch.float64 else 1e-8
    length = b.norm(dim=1, keepdim=True)
    xy = b[:, :2].norm(dim=1, keepdim=True)
    turn = (xy < floor * length) & (xy > tiny * length.clamp_min(tiny))
    scale = torch.where(turn, floor * length / xy.clamp_min(tiny), torch.ones_like(xy))
    z_sign = torch.where(b[:, 2:] < 0, -torch.ones_like(xy), torch.ones_like(xy))
    bz = torch.where(turn, torch.sqrt(1.0 - floor**2) * length * z_sign, b[:, 2:])
    return torch.cat([b[:, :2] * scale, bz], dim=1)


#: below this ratio of the mean gradient along the axis to its root mean square, the sign
#: of :func:`image_tilt_axis` (``signed``) is not read from the image: on an image whose
#: frame edge is flat ground the gradients sum to the edge's differences, zero up to rounding
_SIGN_TOLERANCE = 1e-6


def image_tilt_axis(image: torch.Tensor, mask=None, *, frame_edge: bool = False, signed: bool = False) -> torch.Tensor:
    """The image-plane axis along which the shading varies most, per image.

    The principal axis of the covariance of the image gradient (x right, y up).  Under one
    distant light a surface without a preferred direction shades most strongly along the
    light's tilt, so the axis estimates the tilt up to its sign (the classical estimate from
    image statistics); the sign is what tells a reading from its inversion, and the axis
    leaves it open unless ``signed``.

    Which pixels count: by default (the shading guidance's light lock) central differences
    over the pixels whose four neighbours lie inside the frame and ``mask``.  With
    ``frame_edge`` (the classical baseline's light) also the pixels on the frame's edge,
    with one-sided differences there as :func:`torch.gradient` takes them, over the pixels
    of ``mask`` whose in-frame neighbours lie in ``mask`` (every pixel of ``mask`` where no
    such pixel exists).

    Args:
        image: ``(B, 1, H, W)`` shading.
        mask: optional foreground ``(B, 1, H, W)`` / ``(H, W)``.
        frame_edge: read the frame's edge pixels too (see above).
        signed: orient each axis along the mean gradient (Lee and Rosenfeld's sign: toward
            the light where bumps outweigh dents); where that mean along the axis is below
            1e-6 of the gradient's root mean square along it, the image gives no sign and
            the axis keeps ``y >= 0`` (the light from above).  Otherwise ``y >= 0``.
    Returns:
        ``(B, 2)`` unit axes ``(x, y)`` (unsigned: ``y >= 0``, ``(1, 0)`` for ``y = 0``); zero
        for an image without gradient (no axis).
    """
    if image.ndim != 4 or image.shape[1] != 1:
        raise ValueError(f"image must be (B, 1, H, W), got {tuple(image.shape)}")
    img = image[:, 0]
    m = _as_mask(mask, image)
    if frame_edge:
        g_row, g_col = torch.gradient(img, dim=(1, 2))
        gx, gy = g_col, -g_row  # rows run downwards; y is up
        w = torch.ones_like(img) if m is None else m[:, 0].expand_as(img).to(img.dtype)
        if m is not None:
            pad = F.pad(w, (1, 1, 1, 1), value=1.0)
            inner = w * pad[:, :-2, 1:-1] * pad[:, 2:, 1:-1] * pad[:, 1:-1, :-2] * pad[:, 1:-1, 2:]
            w = torch.where(inner.flatten(1).sum(1)[:, None, None] > 0, inner, w)
    else:
        gx = (img[:, 1:-1, 2:] - img[:, 1:-1, :-2]) / 2
        gy = (img[:, :-2, 1:-1] - img[:, 2:, 1:-1]) / 2  # rows run downwards; y is up
        w = torch.ones_like(gx)
        if m is not None:
            m = m[:, 0].to(img.dtype)
            w = m[:, 1:-1, 2:] * m[:, 1:-1, :-2] * m[:, :-2, 1:-1] * m[:, 2:, 1:-1]
    cxx, cyy, cxy = ((w * u * v).flatten(1).sum(1) for u, v in ((gx, gx), (gy, gy), (gx, gy)))
    angle = 0.5 * torch.atan2(2 * cxy, cxx - cyy)  # in (-pi/2, pi/2]
    axis = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    axis = torch.where(axis[:, 1:] < 0, -axis, axis)
    axis = torch.where((axis[:, 1:] == 0) & (axis[:, :1] < 0), -axis, axis)
    if signed:  # Lee and Rosenfeld: the mean gradient points toward the light
        along = axis[:, :1, None] * gx + axis[:, 1:, None] * gy  # the gradient along the axis
        mean = (w * along).flatten(1).sum(1)
        rms = ((w * along * along).flatten(1).sum(1) * w.flatten(1).sum(1)).sqrt()  # both times the weight
        axis = torch.where((mean < -_SIGN_TOLERANCE * rms)[:, None], -axis, axis)
    has = (cxx + cyy) > 0
    return axis * has[:, None].to(axis.dtype)


def lock_tilt(b: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """Lights ``(B, 3)`` whose image-plane part is turned onto ``axis`` ``(B, 2)``, up to sign.

    ``b_xy`` becomes ``s |b_xy| axis`` with ``s`` the sign of ``b_xy . axis`` (``+1`` at 0), so
    the light keeps its length, its slant and the side it comes from, and only its tilt is
    set.  Rows whose axis is zero (no axis, or not to be locked) are returned unchanged;
    non-zero axes must be unit length (checked for CPU tensors; on an accelerator the axes
    are taken as checked, so that the call never waits for the device).
    """
    if axis.ndim != 2 or axis.shape != (b.shape[0], 2):
        raise ValueError(f"axis must be ({b.shape[0]}, 2), got {tuple(axis.shape)}")
    if axis.device.type == "cpu":
        norm = axis.double().norm(dim=1)
        if bool(((norm > 0) & ((norm - 1).abs() > 1e-3)).any()):
            raise ValueError("each axis must be zero or of unit length")
    axis = axis.to(device=b.device, dtype=b.dtype)
    norm = axis.norm(dim=1)
    side = torch.where((b[:, :2] * axis).sum(1, keepdim=True) < 0, -1.0, 1.0).to(b.dtype)
    xy = side * b[:, :2].norm(dim=1, keepdim=True) * axis
    return torch.cat([torch.where(norm[:, None] > 0, xy, b[:, :2]), b[:, 2:]], dim=1)


def shading_loss(x0: torch.Tensor, image: torch.Tensor, mask=None, min_level: float = 0.02,
                 ridge: float = 1e-3, min_lateral=0.0, tilt_axis: torch.Tensor | None = None,
                 light: torch.Tensor | None = None) -> torch.Tensor:
    """How badly one light explains the image, per image (ours; docs/method.md#shading-guidance-ours).

    With unit normals ``n = x0 / |x0|`` and the lit pixels (image above ``min_level``,
    inside ``mask``; attached shadows carry no equation), the scaled light ``b = albedo * l``
    of the image is the least-squares fit of ``n . b = I`` (ridge ``ridge`` times the pixel
    count, so a flat field still gives a finite ``b``), held fixed (no gradient); the loss is
    the relative squared residual ``sum (n . b - I)^2 / sum I^2``.  It is 0 when the normals
    render to the image under one light and uniform albedo, whatever that light is, so it
    ties the whole image to one light without choosing it.  With ``min_lateral > 0`` the
    fitted light is turned off the view axis until its image-plane part is at least that
    share of its length (:func:`lateral_floor`; docs/method.md#shading-guidance-ours): a
    light along the view axis shades a surface by its slant alone, so the loss would
    hardly push a nearly flat estimate to take any slope.  With ``tilt_axis`` the fitted
    light's tilt is first set to that axis, up to sign (:func:`lock_tilt`), so the loss
    chooses only which side the light comes from and how steeply.

    Args:
        x0: ``(B, 3, H, W)`` normals (need not be unit length).
        image: ``(B, 1, H, W)`` shading in [0, 1].
        mask: optional foreground ``(B, 1, H, W)`` / ``(H, W)``.
        min_lateral: floor on the fitted light's image-plane share, in ``[0, 1)`` (0 = off):
            a float, or a ``(B,)`` tensor with one floor per image.
        tilt_axis: optional ``(B, 2)`` axes for :func:`lock_tilt` (a zero row leaves that
            image's light free), e.g. :func:`image_tilt_axis` of the image.
        light: optional ``(B, 3)`` unit light directions, e.g. read off an occluding
            contour: where a row is not zero, only the light's strength is fitted
            (``b = s l`` with ``s >= 0`` the least-squares strength) and the floor and the
            tilt lock do not apply; a zero row leaves that image's light free.
    Returns:
        ``(B,)`` loss; 0 for an image without lit pixels.
    """
    if image.shape[0] != x0.shape[0] or image.shape[-2:] != x0.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)} does not match normals {tuple(x0.shape)}")
    tiny = 1e-12 if x0.dtype == torch.float64 else 1e-8
    n = x0 / x0.norm(dim=1, keepdim=True).clamp_min(tiny)
    img = image[:, 0].to(x0.dtype)
    w = (img > min_level).to(x0.dtype)
    m = _as_mask(mask, x0)
    if m is not None:
        w = w * m[:, 0]
    with torch.no_grad():  # the light is held fixed
        a = torch.einsum("bihw,bjhw,bhw->bij", n, n, w)
        r = torch.einsum("bihw,bhw,bhw->bi", n, img, w)
        count = w.flatten(1).sum(1).clamp_min(1.0)
        eye = torch.eye(3, dtype=x0.dtype, device=x0.device)
        b = torch.linalg.solve(a + ridge * count[:, None, None] * eye, r.unsqueeze(-1))[..., 0]
        if tilt_axis is not None:
            b = lock_tilt(b, tilt_axis)
        b = lateral_floor(b, min_lateral)
        if light is not None:
            l = light.to(x0.dtype)
            shade = torch.einsum("bihw,bi->bhw", n, l)
            strength = ((w * shade * img).flatten(1).sum(1) /
                        ((w * shade**2).flatten(1).sum(1) + ridge * count)).clamp_min(0.0)
            given = (l.abs().sum(1) > 0)[:, None]
            b = torch.where(given, strength[:, None] * l, b)
    resid = torch.einsum("bihw,bi->bhw", n, b) - img
    return (w * resid**2).flatten(1).sum(1) / (w * img**2).flatten(1).sum(1).clamp_min(tiny)
