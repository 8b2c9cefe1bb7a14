"""The training run's log (``log.csv``): reading, appending, truncating on resume, plotting.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..model.checkpoint import (
    atomic_write_bytes,
)

__all__ = ["append_log", "read_log", "truncate_log"]


#: Columns of ``log.csv``.  ``val_loss`` is in the run's prediction target; ``val_x0`` (the
#: Huber loss of the predicted normals) compares runs of different targets.  A resumed run
#: rewrites the header through :func:`truncate_log`, so a log begun with fewer columns
#: gains the new ones (empty in its earlier rows).
LOG_FIELDS = ("step", "loss", "val_loss", "val_x0", "patches_per_s", "lr", "time")


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                int(row["step"])
                rows.append(row)
            except (KeyError, TypeError, ValueError):
                continue  # a line cut short by a kill
    return rows


def truncate_log(path: Path, step: int) -> None:
    """Keep the log rows up to ``step`` (used when resuming)."""
    rows = [r for r in read_log(path) if int(r["step"]) <= step]
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOG_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def plot_log(log_path: Path, png_path: Path) -> None:
    """Training and validation loss against step, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "train (mean since last log)"), ("val_loss", "validation (EMA)"),
                       ("val_x0", "validation x0 (EMA)")):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), label=label, marker=None if key == "loss" else "o", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("Huber loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(png_path, buf.getvalue())


def append_log(path: Path, row: dict) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS, lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow(row)
