"""Output folders that concurrent or interrupted runs cannot lose.

``mssfs sample`` writes each input's results to ``OUT/<stem>/``.  Four rules keep every
result that was ever written:

* :func:`safe_stem` turns any input name into one plain folder name: never empty, ``.``,
  ``..``, hidden (leading dot), and without path separators or control characters.
* :func:`claim` takes an exclusive lock on ``OUT/<stem>`` (``OUT/.<stem>.lock``, an
  ``flock``) before any work and keeps it until the result is in place: a second run into
  the same folder is refused at once, not after its work.  The kernel drops the lock when
  its process dies (SIGKILL included), so a killed run never blocks the next one.
* results are written into a temporary folder ``OUT/.<stem>.tmp-XXXXXXXX`` and renamed
  into place by :func:`publish` (the previous result, with ``--overwrite``, is moved
  aside to ``OUT/.<stem>.old-XXXXXXXX`` first and deleted last).
* the next claim of a stem cleans up after an interrupted run (:func:`sweep`):
  temporary folders are removed, and a previous result caught between the two renames
  of :func:`publish` is moved back.  Readers skip these folders (:func:`is_temporary`).

Folders and files get the permissions the user's umask gives (not ``mkdtemp``'s 0700).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Claim",
    "OutputError",
    "check_stem",
    "claim",
    "ensure_folder",
    "folder_lock",
    "is_temporary",
    "make_temp_dir",
    "publish",
    "remove_parts",
    "safe_stem",
    "sweep",
    "umask",
]

#: Longest stem kept (characters); longer names are cut.
MAX_STEM = 120
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
_TEMP = re.compile(r"^\.(?P<stem>.+)\.(?P<kind>tmp|old)-[A-Za-z0-9_]{6,}$")


class OutputError(ValueError):
    """An output location that cannot be used; the message names it and says why."""


def safe_stem(name: str, fallback: str = "input") -> str:
    """A plain folder name for ``name``: control characters and path separators become
    ``_``, leading dots and surrounding spaces are dropped, at most :data:`MAX_STEM`
    characters; ``fallback`` when nothing is left (``".png"`` -> stem ``""``, ``"..png"``
    -> stem ``"."``)."""
    text = _UNSAFE.sub("_", str(name)).strip().lstrip(".").strip()
    return text[:MAX_STEM] or fallback


def check_stem(name: str) -> str:
    """``name`` if it is already a safe stem (:func:`safe_stem` leaves it unchanged), else
    :class:`OutputError`: a folder named ``""``, ``.``, ``..`` or with a separator would
    resolve to the output folder itself or outside it."""
    if not name or safe_stem(name, fallback="") != name:
        raise OutputError(f"{name!r} is not a plain folder name (empty, hidden, '.', '..', separators or "
                          "control characters); it could resolve to the output folder itself or outside it")
    return name


def is_temporary(name: str) -> bool:
    """Whether a folder name is a temporary or set-aside folder of a (possibly killed) run."""
    return bool(_TEMP.match(name))


def umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(parent: str | os.PathLike, stem: str, kind: str = "tmp") -> Path:
    """A new empty folder ``parent/.<stem>.<kind>-XXXXXXXX`` with the umask's permissions."""
    path = Path(tempfile.mkdtemp(prefix=f".{stem}.{kind}-", dir=parent))
    os.chmod(path, 0o777 & ~umask())
    return path


def publish(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing a previous ``target``.

    The previous folder is moved aside first and deleted only after the new one is in
    place; :func:`sweep` puts it back if the process dies between the two renames.
    """
    old = None
    if target.exists():
        old = make_temp_dir(target.parent, target.name, "old")
        os.replace(target, old / target.name)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sweep(parent: str | os.PathLike, stem: str) -> list[str]:
    """Clean up what interrupted runs left for ``parent/<stem>``; returns notes on what was done.

    Call only while holding the :func:`claim` of that folder (no live run is using them).
    """
    parent = Path(parent)
    target, notes, removed = parent / stem, [], 0
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return notes
    for name in names:
        m = _TEMP.match(name)
        if not m or m.group("stem") != stem:
            continue
        path = parent / name
        if m.group("kind") == "old" and (path / stem).is_dir() and not target.exists():
            os.replace(path / stem, target)
            notes.append(f"{target}: restored the previous result an interrupted --overwrite run had moved aside")
        shutil.rmtree(path, ignore_errors=True)
        removed += m.group("kind") == "tmp"
    if removed:
        notes.append(f"{parent}: removed {removed} unfinished temporary folder(s) of interrupted runs for {stem}")
    return notes


def _drop_lock(path: Path, fd: int) -> None:
    """Remove a held lock file, then close (and so unlock) its descriptor.

    The file goes first: a waiting process that then gets the lock on the old inode sees
    that ``path`` no longer names it and starts over (see :func:`_lock`)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
    os.close(fd)


@dataclass
class Claim:
    """An exclusive claim on one output folder (see :func:`claim`); release it, or use it
    as a context manager."""

    folder: Path
    lock: Path
    fd: int
    created: list[Path]
    notes: list[str] = field(default_factory=list)
    depth: int = 1

    def release(self) -> None:
        """Drop the claim (the lock file is removed); folders the claim created and that
        stayed empty are removed too."""
        with _HELD_GUARD:
            self.depth -= 1
            if self.depth > 0 or self.fd < 0:
                return
            _HELD.pop(str(self.lock), None)
            _drop_lock(self.lock, self.fd)
            self.fd = -1
        for folder in self.created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> Claim:  # noqa: PYI034 -- typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.release()


_HELD: dict[str, Claim] = {}
_HELD_GUARD = threading.RLock()


def _mkdirs(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; returns the created ones, deepest first."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{folder}: cannot be created, a part of this path is a file, not a folder") from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    return missing


def claim(folder: str | os.PathLike, exist_ok: bool = False) -> Claim:
    """Claim the output folder ``folder`` for this process before any work.

    Creates its parent (the ``--out`` folder) if needed, checks that it is writable, takes
    the lock, cleans up after interrupted runs (:func:`sweep`; notes in ``Claim.notes``),
    and, unless ``exist_ok``, refuses a ``folder`` that exists already.  A claim this
    process already holds is returned again (released when every holder released it).

    Raises:
        OutputError: the location cannot be written, another live run holds the claim,
            or the folder exists (without ``exist_ok``).
    """
    folder = Path(folder)
    check_stem(folder.name)
    parent = folder.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{parent}: exists and is not a folder")
    created = _mkdirs(parent)
    lock = parent / f".{folder.name}.lock"
    key = str(lock.absolute())
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None:
            held.depth += 1
            return held
        fd = _lock(lock, folder, created)
        c = Claim(folder, Path(key), fd, created)
        _HELD[key] = c
    try:
        c.notes = sweep(parent, folder.name)
        if folder.exists() and not exist_ok:
            raise OutputError(f"{folder}: exists already (use --overwrite to replace it)")
        _check_writable(parent)
    except BaseException:
        c.release()
        raise
    return c


def _lock(lock: Path, folder: Path, created: list[Path], held: str | None = None) -> int:
    """Take ``lock`` (guarding ``folder``) and return its descriptor; ``held``: the error
    message when another process holds it (default: another run writes this output)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: exclusive create only
        fcntl = None
    while True:
        try:
            flags = os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL)
            fd = os.open(lock, flags, 0o666)
        except FileExistsError:
            raise OutputError(held or f"{folder}: another mssfs run is writing this output ({lock} exists)") from None
        except OSError as exc:
            for p in created:
                try:
                    p.rmdir()
                except OSError:
                    break
            raise OutputError(f"{folder.parent}: cannot write into this folder ({exc.strerror or exc})") from None
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(held or f"{folder}: another mssfs run is writing this output right now; wait for "
                              "it to finish or choose another --out") from None
        except OSError:  # a file system without locks: the exclusive checks below still apply
            return fd
        try:  # the file may have been removed (and re-created) by its last holder meanwhile
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _check_writable(folder: Path) -> None:
    """Create and remove a probe folder in ``folder`` (what :func:`make_temp_dir` will do)."""
    try:
        probe = Path(tempfile.mkdtemp(prefix=".mssfs-probe-", dir=folder))
        probe.rmdir()
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write into this folder ({exc.strerror or exc})") from None


class FolderLock:
    """An exclusive lock on one folder for one kind of writer (see :func:`folder_lock`)."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd >= 0:
            _drop_lock(self.path, self.fd)
            self.fd = -1

    def __enter__(self) -> FolderLock:  # noqa: PYI034 -- typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def folder_lock(folder: str | os.PathLike, what: str) -> FolderLock:
    """Lock ``folder`` for the writer ``what`` (e.g. ``"depth"``: lock file ``.depth.lock``).

    Raises :class:`OutputError` when another live process holds it or the folder cannot be
    written.
    """
    folder = Path(folder)
    lock = folder / f".{what}.lock"
    held = f"{folder}: another mssfs {what} run is writing into this folder right now; wait for it to finish"
    return FolderLock(lock, _lock(lock, folder, [], held))


def remove_parts(folder: str | os.PathLike, names) -> int:
    """Remove the temporary files (:func:`mssfs.core.fileio.atomic_path`) that killed
    writers of ``names`` left in ``folder``; call it only while holding the folder's lock.
    Returns how many were removed."""
    folder, removed = Path(folder), 0
    wanted = set(names)
    for p in folder.glob(".*.part"):
        stem = p.name[1:].rsplit(".", 2)[0]
        if stem in wanted:
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def ensure_folder(folder: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``folder`` (and its parents) if needed and check that files can be written
    into it, before any work; :class:`OutputError` naming ``option`` otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder}: exists and is not a folder")
    try:
        _mkdirs(folder)
        _check_writable(folder)
    except OutputError as exc:
        raise OutputError(f"{option} {exc}") from None
    return folder
