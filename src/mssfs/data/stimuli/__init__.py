"""The four test stimuli of the publication (MIT licence; see the NOTICE file here).

``load("circles")`` returns the publication's array unchanged (float64, values in [0, 1]):
circles 540x540, rings 512x512, star and snake 256x256.  On the command line they are
named ``stimulus:circles`` and so on.  They are never used for training.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

NAMES = ("circles", "rings", "star", "snake")

__all__ = ["NAMES", "load", "notice"]


def load(name: str) -> np.ndarray:
    """The stimulus ``name`` as a float64 ``(H, W)`` array."""
    if name not in NAMES:
        raise ValueError(f"unknown stimulus {name!r}; the bundled ones are: {', '.join(NAMES)}")
    with resources.files(__name__).joinpath(f"{name}.npy").open("rb") as f:
        return np.load(f, allow_pickle=False)


def notice() -> str:
    """The licence notice that comes with the stimuli."""
    return resources.files(__name__).joinpath("NOTICE").read_text()
