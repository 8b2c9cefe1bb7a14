"""A progress bar that costs nothing when switched off (tqdm when on).
"""

from __future__ import annotations

__all__ = ["interactive", "progress_bar"]


class _NoBar:
    def update(self, k):
        pass

    def close(self):
        pass


def progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="map")


def interactive() -> bool:
    """Whether someone is watching: a notebook kernel, or standard error is a terminal.

    The Python API shows progress bars by default only then (``progress=None``).
    """
    import sys

    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False
