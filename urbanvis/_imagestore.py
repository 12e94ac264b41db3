"""A provider's image folder inside a study: names, a pending-file journal, reuse, a lock.

Kept small in memory whatever the harvest's size (tens of millions of images):

- Names are deterministic: an image several captures can share is stored under its key
  (``images/<provider>/<2 hex>/<key>.jpg``), any other under its capture id
  (``images/<provider>/<point_id // 1000>/<capture_id>.jpg``).
- Before an image file is written its name goes to ``.harvest-<provider>.pending`` in the
  study folder; the
  journal is fsynced with the batch's images and emptied once their rows are committed.
  At the next start, only the files the journal names are checked against the
  ``captures`` layer and removed when no row refers to them: no walk over millions of files.
- Whether a shared image is already stored is answered from the images written recently
  (a bounded map) or from the disk: every file there is committed (or written by this run)
  once the journal is swept, and a file found on disk is decoded before it is trusted.
- One harvest per provider and study at a time: an exclusive lock on
  ``.harvest-<provider>.lock`` (released by the OS however the process ends).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import TextIO

from ._errors import InputError
from ._files import DurableBatch

log = logging.getLogger(__name__)

JOURNAL = ".harvest-{}.pending"
LOCK = ".harvest-{}.lock"


def safe_name(text: object) -> str:
    """``text`` with anything but letters, digits, ``-_.`` replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


class ImageStore:
    """The image files of one provider in one study (module docstring)."""

    def __init__(self, study, provider: str, *, recent: int = 200_000) -> None:
        self.study = study
        self.provider = provider
        self.folder = study.images / provider
        self.recent_size = int(recent)
        self._recent: collections.OrderedDict[str, tuple[str, str, int, int]] = (
            collections.OrderedDict()
        )
        self._files = DurableBatch()
        self._root = str(study.root)
        self._made: set[str] = set()  # folders known to exist
        self.journal = study.root / JOURNAL.format(safe_name(provider))
        self.lock_path = study.root / LOCK.format(safe_name(provider))
        self._journal: TextIO | None = None
        self._lock_fh: TextIO | None = None

    # ------------------------------------------------------------------- names
    def rel_for_key(self, key: str, suffix: str = ".jpg") -> str:
        bucket = hashlib.sha1(key.encode()).hexdigest()[:2]
        return f"images/{self.provider}/{bucket}/{safe_name(key)}{suffix}"

    def rel_for_capture(self, point_id: int, capture_id: str, suffix: str) -> str:
        return f"images/{self.provider}/{int(point_id) // 1000:05d}/{safe_name(capture_id)}{suffix}"

    # ------------------------------------------------------------- run control
    def lock(self) -> None:
        """Hold the provider's lock for this process, or say who holds it."""
        import fcntl

        fh = open(self.lock_path, "a+")  # noqa: SIM115 (held until close())
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise InputError(
                f"another harvest of {self.provider} is running on {self.study.root}; wait for "
                f"it to finish (or stop it) before starting this one"
            ) from None
        self._lock_fh = fh

    def sweep(self) -> int:
        """Remove the files a killed run wrote but never committed; return how many."""
        journal = self.journal
        if not journal.exists():
            return 0
        names = sorted({n for n in journal.read_text(errors="replace").splitlines() if n})
        committed = self._committed(names)
        removed = 0
        for rel in names:
            path = self.study.root / rel
            for tmp in path.parent.glob(f".{path.name}.*.tmp"):  # cut short before its rename
                tmp.unlink(missing_ok=True)
            if rel not in committed and path.is_file():
                path.unlink()
                removed += 1
        journal.unlink()
        if removed:
            log.info("removed %d image files left by an interrupted harvest", removed)
        return removed

    def _committed(self, names: list[str]) -> set[str]:
        if not names or not self.study.gpkg.exists():
            return set()
        found: set[str] = set()
        with contextlib.closing(sqlite3.connect(self.study.gpkg)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            if "captures" not in tables:
                return found
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = con.execute(
                    f"SELECT image_path FROM captures WHERE image_path IN ({marks})", chunk
                )
                found.update(r[0] for r in rows)
        return found

    # ------------------------------------------------------------------ images
    def known(self, key: str) -> bool:
        """Is the image of ``key`` stored already? (Safe to call from another thread.)"""
        if key in self._recent:
            return True
        return self._from_disk(key) is not None

    def recent(self, key: str) -> tuple[str, str, int, int] | None:
        """The image of ``key`` if this run wrote or found it lately (no disk access)."""
        return self._recent.get(key)

    def lookup(self, key: str) -> tuple[str, str, int, int] | None:
        """``(image_path, sha256, width, height)`` of the stored image of ``key``, or None."""
        found = self._recent.get(key)
        if found is None:
            found = self._from_disk(key)
            if found is not None:
                self._remember(key, found)
        return found

    def _from_disk(self, key: str) -> tuple[str, str, int, int] | None:
        rel = self.rel_for_key(key)
        path = os.path.join(self._root, rel)
        if not os.path.isfile(path):  # the common case: a new image (os.path: cheap)
            return None
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            from .providers._imagecheck import BadImage, check_image

            width, height, _ = check_image(data, placeholder=False)
        except (OSError, BadImage):
            return None  # unreadable or cut short by a power cut: fetch it again
        return rel, hashlib.sha256(data).hexdigest(), width, height

    def write(self, rel: str, data: bytes, key: str | None, size: tuple[int, int]) -> str:
        """Write one image (journal first, then the file); return its sha256."""
        if self._journal is None:
            self._journal = open(self.journal, "a", encoding="utf-8")  # noqa: SIM115
        self._journal.write(rel + "\n")
        self._journal.flush()  # in the OS before the file exists: a kill cannot hide it
        path = Path(self._root, rel)
        folder = os.path.dirname(rel)
        if folder not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        self._files.write(path, data)
        sha = hashlib.sha256(data).hexdigest()
        if key is not None:
            self._remember(key, (rel, sha, int(size[0]), int(size[1])))
        return sha

    def _remember(self, key: str, value: tuple[str, str, int, int]) -> None:
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > self.recent_size:
            self._recent.popitem(last=False)

    def flush(self) -> None:
        """Make this batch's images (and the journal naming them) durable."""
        if self._journal is not None:
            self._journal.flush()
            os.fsync(self._journal.fileno())
        self._files.flush()

    def committed(self) -> None:
        """The batch's rows are committed: its files need no sweeping any more."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
            self.journal.unlink(missing_ok=True)

    def close(self) -> None:
        self._files.close()
        if self._journal is not None:  # rows not committed: leave the journal for the sweep
            self._journal.close()
            self._journal = None
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None
