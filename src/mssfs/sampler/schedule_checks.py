"""Type and range checks of schedule fields, with messages that name the field.

:class:`mssfs.sampler.schedules.Stage` and :class:`~mssfs.sampler.schedules.Schedule`
call :func:`check_fields` from their ``__post_init__``, so a schedule from a file, a dict
or Python code is checked the same way before any sampling work: integers must be whole
numbers (``96.0`` is read as 96, ``96.5`` is refused), booleans must be ``true`` /
``false`` (the string ``"no"`` is refused, not read as true), numbers must be finite, and
the sizes that set the work and memory of a run have upper limits (:data:`LIMITS`).
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["LIMITS", "MAX_PATCH_FORWARDS", "ScheduleError", "check_fields"]


class ScheduleError(ValueError):
    """A schedule that cannot be run; the message names the field (and file) at fault."""


#: Upper limits (inclusive) of the fields that set a run's work and memory.
LIMITS = {
    "resolution": 2048,  # 16,384 patches per sample per call
    "num_steps": 300,  # the noise schedule's T: a finer DDIM grid repeats timesteps
    "inner_iters_high": 100,
    "inner_iters_low": 100,
    "stages": 64,
}

#: Most patch forwards one sample may need (the paper preset needs about 138,000).
MAX_PATCH_FORWARDS = 50_000_000


def _kind(annotation) -> str | None:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return text if text in ("int", "float", "bool", "str") else None


def check_fields(obj, where: str = "") -> None:
    """Check (and normalise: integral floats to int) every int/float/bool/str field of the
    frozen dataclass ``obj``; raise :class:`ScheduleError` naming ``where`` and the field."""
    prefix = f"{where}: " if where else ""
    for f in dataclasses.fields(obj):
        kind, value = _kind(f.type), getattr(obj, f.name)
        if kind is None:
            continue
        bad = None
        if kind == "bool":
            if not isinstance(value, bool):
                bad = "true or false"
        elif kind == "str":
            if not isinstance(value, str):
                bad = "a string"
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            bad = "a whole number" if kind == "int" else "a number"
        elif not math.isfinite(value):
            bad = "a finite number"
        elif kind == "int":
            if value != int(value):
                bad = "a whole number"
            else:
                object.__setattr__(obj, f.name, int(value))
        elif kind == "float":
            object.__setattr__(obj, f.name, float(value))
        if bad:
            raise ScheduleError(f"{prefix}{f.name} must be {bad}, got {value!r} ({type(value).__name__})")
        limit = LIMITS.get(f.name)
        if limit is not None and getattr(obj, f.name) > limit:
            raise ScheduleError(f"{prefix}{f.name} {getattr(obj, f.name)} is above the limit {limit}")
