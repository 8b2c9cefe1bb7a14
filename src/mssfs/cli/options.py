"""Options several sub-commands share, spelled the same everywhere.

``--device`` (default ``auto``), ``--precision fp32|bf16`` (``--bf16`` is kept as a
hidden alias), ``--quiet``/``-q`` (no progress bars), ``--resolution auto|preset|R``
and ``--out``.
"""

from __future__ import annotations

import argparse

__all__ = ["add_device", "add_precision", "add_quiet", "add_resolution", "resolution"]

DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda or cuda:N (default auto)"


def add_device(p) -> None:
    p.add_argument("--device", default="auto", metavar="DEV", help=DEVICE_HELP)


def add_precision(p) -> None:
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="arithmetic of the denoiser: fp32, or bf16 (bfloat16 autocast) (default fp32)")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help=argparse.SUPPRESS)


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
