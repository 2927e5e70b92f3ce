"""Files on disk: one atomic writer, paths that stay inside a folder, the folder lock.

Every file genbench writes goes through :func:`atomic_write` (a temporary file in the
same folder, flushed, then renamed over the target), so a killed process leaves either
the old file or the new one, never a torn or empty one, and a failed write removes its
temporary file. A results folder is untrusted data: :func:`inside` is the one place a
path is built from its content.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import UserError

TMP_SUFFIX = ".genbench-tmp"
LOCK = ".genbench.lock"
_UMASK = os.umask(0)
os.umask(_UMASK)


class OutputError(UserError):
    """The results folder cannot be written (full, read-only, not a folder...)."""


def describe_os_error(err: OSError, what: str = "") -> str:
    """One line: the file, what failed and why, without a traceback."""
    name = err.filename or what or "?"
    reason = err.strerror or type(err).__name__
    return f"{name}: {reason}" + (f" ({what})" if what and err.filename else "")


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Yield a file object whose content replaces ``path`` only when the block succeeds.

    A write that fails (a full disk, a read-only folder) removes its temporary file and
    raises :class:`OutputError` naming the file.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=TMP_SUFFIX)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the rename must not reach the disk before the data
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write {path}: {err.strerror or type(err).__name__}") from None
        raise


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def finite(data):
    """``data`` with every NaN or infinite float replaced by None (strict JSON has neither)."""
    if isinstance(data, float):
        return data if data == data and data not in (float("inf"), float("-inf")) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def write_json(path: Path, data) -> None:
    text = json.dumps(finite(data), indent=2, sort_keys=False, default=str, allow_nan=False)
    write_text(path, text + "\n")


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files left by a killed process (call with the folder locked)."""
    removed = 0
    for tmp in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


_SAFE_PART = re.compile(r"[A-Za-z0-9_=+-][A-Za-z0-9_.=+-]{0,199}")


def safe_part(name: object) -> bool:
    """True for a single, harmless path component (no separators, no '..', no leading dot)."""
    return isinstance(name, str) and bool(_SAFE_PART.fullmatch(name))


def inside(root: Path, *parts: str) -> Path:
    """``root / parts`` after checking each part is one plain component that stays inside."""
    for part in parts:
        if not safe_part(part):
            raise ValueError(f"refusing the path component {part!r}: not a plain file or folder name")
    path = Path(root).joinpath(*parts)
    base = Path(root).resolve()
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:  # e.g. a symbolic link pointing out
        raise ValueError(f"refusing {path}: it leads outside {root}")
    return path


def slug(text: str) -> str:
    """A file-name-safe form of ``text``, different for different texts.

    A text that is already a plain name is kept; any other gets its unsafe characters
    replaced and a short hash of the original appended, so labels such as ``x/y`` and
    ``x y`` never share a folder.
    """
    text = str(text)
    if len(text) <= 80 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=-]*", text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_.=-")[:60] or "run"
    return f"{cleaned}_{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written there, before any work."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{folder}: exists and is not a folder; choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
        # A plain file named for this process: a temporary of atomic_write could be swept
        # as stale by another process that holds the folder's lock.
        probe = folder / f".genbench-probe-{os.getpid()}"
        with open(probe, "wb") as f:
            f.write(b"ok\n")
        probe.unlink()
    except OutputError as err:
        raise OutputError(f"cannot write results to {folder}: {err}") from None
    except OSError as err:
        raise OutputError(f"cannot write results to {folder}: {describe_os_error(err)}") from None


class FolderLock:
    """An exclusive lock on a results folder, released when the process ends however it ends.

    The lock file names its holder (command, pid, host, time) so a refused process can
    say who has the folder.
    """

    def __init__(self, folder: Path, command: str, create: bool = False):
        self.path = Path(folder) / LOCK
        self.command = command
        self.create = create  # make the folder again if a holder removed it (see release)
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        for _ in range(3):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = ""
                for _ in range(25):  # the holder may have the lock but not yet have written its name
                    holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                    if holder:
                        break
                    time.sleep(0.02)
                holder = holder or "another process"
                os.close(fd)
                raise UserError(f"{self.path.parent} is in use by {holder}; wait for it to finish, "
                                f"or choose another --out") from None
            # A holder that removed its empty folder unlinked the lock file before letting
            # go: a lock on a file no longer at the path would lock nothing.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        else:
            raise OutputError(f"cannot lock {self.path.parent}: its lock file keeps being replaced")
        info = (f"`genbench {self.command}` (pid {os.getpid()} on {socket.gethostname()}, "
                f"since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode("utf-8"), 0)
        self._fd = fd
        return self

    def _open(self) -> int:
        try:
            if self.create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        except OSError as err:
            raise OutputError(f"cannot lock {self.path.parent}: {describe_os_error(err)}") from None

    def release(self, remove_empty_folder: bool = False) -> None:
        """Let go of the folder; with ``remove_empty_folder``, first remove it if nothing but
        the lock file is in it. That happens while the lock is still held, so a process that
        takes the folder next can never lose it (or its lock file) to this one."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        if remove_empty_folder:
            with contextlib.suppress(OSError):
                if [p.name for p in self.path.parent.iterdir()] == [LOCK]:
                    self.path.unlink()
                    self.path.parent.rmdir()  # fails, and keeps it, if another process wrote there since
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
