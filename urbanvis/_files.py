"""Writing files so that a crash or a kill never leaves a truncated one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ._errors import StudyError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str], mode: str = "wb", *, fsync: bool = True
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it to ``path``.

    A failure (or a kill) leaves the old ``path``, if any, untouched and removes the
    temporary file; an OSError becomes a one-line StudyError. ``fsync=False`` leaves the
    fsync to the caller (see :class:`DurableBatch`, which fsyncs many files together).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StudyError(f"could not write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def not_a_file(path: str | os.PathLike[str]) -> str:
    """Why ``path`` is not a file to read, for an error message: it is a folder, or absent."""
    return "is a folder, not a file" if Path(path).is_dir() else "does not exist"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, "w") as fh:
        fh.write(text)


def writable_ancestor(path: str | os.PathLike[str]) -> Path:
    """The nearest existing folder at or above ``path``, checked by writing a probe file.

    Creates nothing that stays. Raises NotADirectoryError when that ancestor is a file, and
    the OSError of the probe when the folder cannot be written (``os.access`` says yes to
    root even on read-only mounts, so the check writes for real).
    """
    import tempfile

    probe = Path(path).expanduser().absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(str(probe))
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".urbanvis-write-test-"):
            pass
    except OSError as exc:  # name the folder, not the probe file
        raise OSError(exc.errno, exc.strerror, str(probe)) from exc
    return probe


class DurableBatch:
    """Files written one by one and made durable together, before the rows that name them.

    :meth:`write` puts each file under a temporary name and renames it into place (so no
    reader ever sees a partial file); :meth:`flush` then fsyncs every file written since the
    last flush, and their folders, on a small thread pool. One fsync per file in a row costs
    milliseconds each on most disks; concurrent fsyncs share journal commits. Callers commit
    the rows that refer to the files only after :meth:`flush` returns, so a crash or power
    cut leaves at worst uncommitted files (which the next run removes), never a committed
    row whose file is missing or short.
    """

    def __init__(self, workers: int = 16) -> None:
        self.workers = workers
        self._files: list[Path] = []
        self._dirs: set[Path] = set()
        self._pool: ThreadPoolExecutor | None = None

    def write(self, path: str | os.PathLike[str], data: bytes) -> None:
        path = Path(path)
        with atomic_file(path, "wb", fsync=False) as fh:  # fsynced by flush()
            fh.write(data)
        self._files.append(path)
        self._dirs.add(path.parent)

    def flush(self) -> None:
        """fsync every file written since the last flush, then their folders."""
        if not self._files:
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="urbanvis-fsync")
        try:
            list(self._pool.map(_fsync_path, self._files))
            list(self._pool.map(_fsync_path, sorted(self._dirs)))
        except OSError as exc:
            raise StudyError(f"could not save images to disk: {exc.strerror or exc}") from exc
        self._files.clear()
        self._dirs.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
