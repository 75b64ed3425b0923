"""Writing files so that a kill at any instant leaves the old file or the new one, never a torn one.

Everything charnn writes for keeps (run folders, tokenizers, the corpus cache, plots)
goes through ``atomic_open``: the bytes go to a temporary name in the same folder,
are flushed to disk and renamed over the old file. A killed writer can leave only its
temporary behind, named ``.<file>.<random>.tmp``; ``remove_stale_temporaries`` clears
them once ``FolderLock`` shows that no live writer owns the folder.

This module sits below every other one (it imports nothing from charnn but errors).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from charnn.errors import CheckpointError

TEMPORARY_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write that replaces ``path`` only when the block ends without error.

    A failed write (a full disk, say) leaves the old file as it was and raises CheckpointError.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(
            f"cannot write {path}: {exc.strerror or exc}; the previous version of the file is intact"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a file opened with atomic_open."""
    with atomic_open(path) as f:
        write(f)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(folder: Path, names: tuple[str, ...] | None = None) -> None:
    """Delete the temporaries killed writers left in ``folder`` (they are never read).

    Only those of the files ``names``, when given. Call it only while holding the folder's
    FolderLock: a live writer's temporary is not stale.
    """
    for stale in folder.glob(f".*{TEMPORARY_SUFFIX}"):
        of = stale.name[1:].rsplit(".", 2)[0]  # .NAME.RANDOM.tmp -> NAME
        if stale.is_file() and (names is None or of in names):
            stale.unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (best effort: not every system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class FolderBusy(Exception):
    """Another live process holds the folder's lock."""


class FolderLock:
    """An exclusive advisory lock on a folder, held while this process writes in it.

    The lock is on the folder itself (flock on its descriptor), so it follows the folder
    through a rename and vanishes with the process that held it: a killed writer leaves
    no lock file behind and never blocks the next command.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> FolderLock:
        """Take the lock (waiting for it if ``wait``, else raising FolderBusy at once).

        Raises OSError if the folder cannot be opened.
        """
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusy(str(self.folder)) from None
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
