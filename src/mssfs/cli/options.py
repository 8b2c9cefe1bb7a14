"""Options several sub-commands share, spelled the same everywhere.

``--device`` (default ``auto``), ``--precision auto|fp32|bf16`` (default ``auto``;
``--bf16`` is kept as a hidden alias), ``--quiet``/``-q`` (no progress bars), ``--resolution auto|preset|R``
and ``--out``.
"""

from __future__ import annotations

import argparse

__all__ = ["add_device", "add_precision", "add_quiet", "add_resolution", "precision_of", "resolution"]

DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda or cuda:N (default auto)"


def add_device(p) -> None:
    p.add_argument("--device", default="auto", metavar="DEV", help=DEVICE_HELP)


def add_precision(p) -> None:
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="arithmetic of the denoiser: fp32, bf16 (bfloat16 autocast), or auto = bf16 on a CPU "
                   "with bfloat16 instructions (AVX-512 BF16, AMX), where it is fastest, else fp32 (default auto)")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help=argparse.SUPPRESS)


def precision_of(args, device, prog: str) -> bool:
    """Whether to run in bf16 for ``args.precision`` on ``device`` (:func:`mssfs.core.device.resolve_precision`);
    ``args.precision`` becomes the resolved ``fp32``/``bf16``, and a note on slow bf16 goes to stderr."""
    import sys

    from ..core.device import resolve_precision

    bf16, note = resolve_precision(args.precision, device)
    if note:
        print(f"{prog}: note: {note}", file=sys.stderr)
    args.precision = "bf16" if bf16 else "fp32"
    return bf16


def add_quiet(p) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def resolution_word(text: str):
    """``auto``, ``preset`` or an integer, unchecked (argparse type; the caller checks the range)."""
    if text in ("auto", "preset"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'preset' or a multiple of 16, got {text!r}") from None


def resolution(text: str):
    """``auto``, ``preset`` or a multiple of 16 of at least 32 (argparse type)."""
    r = resolution_word(text)
    if isinstance(r, str):
        return r
    if r < 32 or r % 16:
        raise argparse.ArgumentTypeError(f"a resolution must be a multiple of 16 and at least 32, got {r}")
    return r


def add_resolution(p, what: str) -> None:
    p.add_argument("--resolution", type=resolution, default="auto", metavar="auto|preset|R",
                   help="finest working resolution: auto = the preset's, scaled down to the " + what +
                   " when that is smaller (default); preset = as the preset has it; R = the preset's stages "
                   "scaled so the finest is R")
