"""The command line's error edge: which exceptions are the user's to fix, and their one line.

Every error class the library raises on bad input (an image, a model, a schedule, a
sample folder, a training config, an output location, a resource limit) and the
operating system's complaints about files (permissions, full disk, file size limits,
missing paths) are user errors: :func:`describe` gives the one line ``mssfs`` prints
before exiting with code 2.  Anything else is a bug and keeps its traceback; so does
every error when the environment variable ``MSSFS_DEBUG`` is set to a non-empty value.
"""

from __future__ import annotations

import errno
import importlib

__all__ = ["describe", "user_error_types"]

#: ``(module, class)`` of every library exception that means "bad input".
USER_ERRORS = (
    ("mssfs.core.images", "ImageError"),
    ("mssfs.core.outputs", "OutputError"),
    ("mssfs.core.limits", "ResourceError"),
    ("mssfs.model.checkpoint", "CheckpointError"),
    ("mssfs.sampler.schedules", "ScheduleError"),
    ("mssfs.analysis.sample_set", "SampleSetError"),
    ("mssfs.train.config", "TrainingError"),
    ("mssfs.data.user_maps", "MapImportError"),
    ("mssfs.data.shards", "ShardError"),
)

#: ``errno`` values of file-system errors caused by the user's paths or machine.
FILE_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (a file-size limit is set)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "exists already",
    errno.ENOTEMPTY: "folder not empty",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
    errno.EIO: "input/output error",
}


def user_error_types() -> tuple[type, ...]:
    """The classes in :data:`USER_ERRORS` that this installation has."""
    found = []
    for module, name in USER_ERRORS:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe(exc: BaseException) -> str | None:
    """The one-line message for a user error, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, user_error_types()):
        return _one_line(exc)
    if isinstance(exc, OSError) and exc.errno in FILE_ERRNOS:
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        what = FILE_ERRNOS[exc.errno]
        hint = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            hint = "; nothing was half-written (earlier results are untouched), free space and run again"
        return _one_line(f"{where}: {what}{hint}" if where else f"{what} ({exc}){hint}")
    if isinstance(exc, OSError) and exc.errno is None and "writing" in str(exc):  # numpy's tofile
        return _one_line(f"could not write a file ({exc}): the disk is full or a file-size limit is set; "
                         "nothing was half-written (earlier results are untouched), free space and run again")
    if isinstance(exc, MemoryError):
        return ("out of memory; ask for less at once (fewer --samples, a smaller --batch-samples, a smaller image "
                "or schedule resolution)")
    return None
