"""The distinct image files of a list of captures, held compactly: what ``embed`` runs over.

Torch-free, so the bookkeeping ``embed`` does before inference can be measured on its own
(``bench/embed_scale.py``). Captures and paths are held as Arrow strings and numpy
integers (tens of bytes a capture), never a Python object per capture: at millions of
captures those were about half a kilobyte each.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["ImageFiles"]

_STEP = 1 << 16
"""Paths normalised (in Python) this many at a time."""


class ImageFiles:
    """Distinct image files of a list of captures, in order of first appearance.

    File ``j`` is ``path(j)`` (its normalised ``image_path``, relative to the study) and
    its captures are ``ids_of(j)``. Held as Arrow strings (the paths; the capture ids
    sorted by file) and each file's start among the ids.
    """

    def __init__(self, paths, ids, starts: np.ndarray) -> None:
        self.paths = paths
        """The files' paths (Arrow strings)."""
        self._ids = ids
        self._starts = starts

    @classmethod
    def of(cls, ids, image_paths) -> ImageFiles:
        """Group captures ``ids`` by their ``image_paths`` (sequences or Arrow arrays)."""
        import pyarrow as pa

        from .vectors import _codes

        ids = _arrow_strings(ids)
        raw = _arrow_strings(image_paths)
        keys = pa.chunked_array(
            [
                _normalised(chunk.slice(s, _STEP))
                for chunk in (raw.chunks if isinstance(raw, pa.ChunkedArray) else [raw])
                for s in range(0, len(chunk), _STEP)
            ],
            type=pa.string(),
        )
        del raw
        n = len(keys)
        if n == 0:
            return cls(pa.array([], type=pa.string()), ids, np.zeros(1, dtype=np.int64))
        (codes,), n_files = _codes([keys])
        index = np.int32 if n < 2**31 else np.int64
        if n_files == n:  # every capture its own file: files in capture order, no copies
            return cls(keys, ids, np.arange(n + 1, dtype=index))
        first = np.full(n_files, n, dtype=codes.dtype)
        np.minimum.at(first, codes, np.arange(n, dtype=codes.dtype))
        by_first = np.argsort(first, kind="stable")  # codes in order of first appearance
        paths = keys.take(pa.array(first[by_first]))
        del first, keys
        number = np.empty(n_files, dtype=codes.dtype)
        number[by_first] = np.arange(n_files, dtype=codes.dtype)
        del by_first
        codes = number[codes]  # each capture's file number
        del number
        order = np.argsort(codes, kind="stable")  # a file's captures keep their order
        starts = np.zeros(n_files + 1, dtype=index)
        np.cumsum(np.bincount(codes, minlength=n_files), out=starts[1:])
        del codes
        if not _increasing(order):
            ids = ids.take(pa.array(order))
        return cls(paths, ids, starts)

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, j: int) -> str:
        return str(self.paths[j].as_py())

    def shard(self, rank: int, world: int) -> ImageFiles:
        """Every ``world``-th file from ``rank`` on, with all of its captures."""
        import pyarrow as pa

        if world == 1:
            return self
        take = np.arange(rank, len(self), world)
        sizes = self._starts[take + 1] - self._starts[take]
        file_of = np.repeat(np.arange(len(self)), np.diff(self._starts))
        flat = np.flatnonzero(file_of % world == rank)  # captures sorted by file: in order
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return ImageFiles(self.paths.take(pa.array(take)), self._ids.take(pa.array(flat)), starts)

    def ids_of(self, j: int) -> list[str]:
        start, stop = int(self._starts[j]), int(self._starts[j + 1])
        return self._ids.slice(start, stop - start).to_pylist()

    def expand(self, files: list[int]) -> tuple[list[str], np.ndarray]:
        """The capture ids of ``files`` and, for each, its file's row in the batch."""
        index = np.asarray(files, dtype=np.int64)
        sizes = self._starts[index + 1] - self._starts[index]
        ids = [cid for j in files for cid in self.ids_of(j)]
        return ids, np.repeat(np.arange(len(files)), sizes)


def _normalised(paths):
    """``os.path.normpath`` of each of an Arrow array of paths (the array itself if none
    changes)."""
    import pyarrow as pa

    text = paths.to_pylist()
    normal = [os.path.normpath(p) for p in text]
    return paths if normal == text else pa.array(normal, type=pa.string())


def _increasing(order: np.ndarray) -> bool:
    return bool(len(order) < 2 or (order[1:] > order[:-1]).all())


def _arrow_strings(values):
    """``values`` as Arrow strings (a chunked array stays one: no copy)."""
    import pyarrow as pa

    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array([str(v) for v in values], type=pa.string())
    return values.cast(pa.string())
