"""Visual place recognition: Recall@K of frozen descriptors on a database and queries.

The protocol of the paper's Table 1 (design section 7): every image is described by an
encoder, descriptors are L2-normalised, and each query's ``K`` nearest database images are
found exactly by inner product. A query is correct at ``K`` when any of its ``K`` nearest
database images is a *positive* (an image of the same place). Recall@K is the percentage
of correct queries, for ``K`` in 1, 5, 10, 15, 20 and 25.

Two dataset layouts are read (:func:`read_dataset` tells them apart by their files):

``utm``
    A folder holding ``database/`` and ``queries/``, images (``.jpg``, ``.jpeg``, ``.png``,
    searched recursively) named ``@utm_east@utm_north@zone_number@zone_letter@...@.jpg``,
    the layout of Pitts30k, Tokyo 24/7 and MSLS as the VPR benchmarks ship them. The two
    fields after the leading ``@`` are UTM easting and northing in metres and must be
    numbers; the remaining fields are optional and ignored, except that a whole-number
    third field (the UTM zone) keeps images of different zones apart. The positives of a
    query are the database images within ``threshold`` metres (default 25).
``gsv-cities``
    The ground-truth files that gsv-cities and MixVPR ship for their validation sets:
    ``<ds>_dbImages.npy`` and ``<ds>_qImages.npy`` (arrays of image paths, relative to the
    folder holding the ``.npy`` files; absolute paths are kept) and ``<ds>_gt.npy`` (read
    with ``allow_pickle``: an object array, per query the indices of its positive database
    images; ``<ds>_gt_25m.npy`` is accepted too). The MSLS variant, ``<ds>_qIdx.npy`` (the
    queries that are scored) with ``<ds>_pIdx.npy`` (their positives), is read the same
    way. ``threshold`` does not apply: the positives are given. Pass the folder, or the
    ``<ds>_dbImages.npy`` file itself when the folder holds several sets.

Queries without any positive cannot be scored: they are excluded, counted in
``n_excluded``, and never searched.

Ties
----
Neighbours are ordered by decreasing inner product, and *equal* inner products by
increasing database index (the first image in the database comes first). faiss alone does
not promise that order among equal scores, so :func:`nearest` asks it for one neighbour
more than it needs and, for the rare queries whose last two scores are equal, widens the
search until the group of equal scores ends; the numpy path sorts the same way, so both
give the same neighbours wherever they compute the same scores.

Memory
------
The database is searched in blocks of ``block_rows`` rows (by default as many as fill
:data:`BLOCK_BYTES` in float32): each block is normalised into a copy of its own and
searched (``faiss.knn`` with the inner product, the kernel under
``faiss.IndexFlatIP.search``, or a numpy matrix product where faiss is missing), and the
per-block top lists are merged. The caller's arrays are never modified and no full copy of
the database is made (``faiss.IndexFlatIP.add`` would make one), so a search needs the
database, the queries, one block and the top lists: on 1,000,000 x 768 float32 descriptors
(3.07 GB) and 10,000 queries the search adds 0.15 GB to the loaded data (``bench/vpr.py``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError, InputFileError

RECALL_KS: tuple[int, ...] = (1, 5, 10, 15, 20, 25)
"""The ``K`` of Recall@K, as in the paper's Table 1."""

DEFAULT_THRESHOLD = 25.0
"""Metres within which a database image is a positive of a query (``utm`` layout)."""

COLUMNS: tuple[str, ...] = (
    "model",
    "dataset",
    "n_queries",
    "n_excluded",
    *(f"R@{k}" for k in RECALL_KS),
)
"""The columns of :func:`evaluate_vpr`'s table, in order."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_DB_SUFFIX = "_dbImages.npy"

BLOCK_BYTES = 1 << 26
"""Size of the normalised copy of one database block that :func:`nearest` searches (64 MiB):
small next to a large database, and faiss tiles its search by 1,024 database rows anyway,
so smaller blocks cost no speed until the per-block merge of top lists begins to count."""


@dataclass(frozen=True)
class VPRDataset:
    """A place-recognition test set, read by :func:`read_dataset`.

    Attributes
    ----------
    name
        The set's name (the folder's, or ``<ds>`` of the gsv-cities files).
    layout
        ``"utm"`` or ``"gsv-cities"``.
    database, queries
        Image files, in the set's order.
    positives
        Per query, the sorted indices of its positive database images (may be empty).
    threshold
        The positive distance in metres (None where the set gives its positives).
    """

    name: str
    layout: str
    database: tuple[Path, ...]
    queries: tuple[Path, ...]
    positives: tuple[np.ndarray, ...]
    threshold: float | None = None

    @property
    def scored(self) -> np.ndarray:
        """Indices of the queries that have at least one positive."""
        return np.array([i for i, p in enumerate(self.positives) if len(p)], dtype=np.int64)

    @property
    def n_excluded(self) -> int:
        """Queries without a positive (not scored)."""
        return len(self.queries) - len(self.scored)


# --------------------------------------------------------------------------- readers
def read_dataset(
    path: str | os.PathLike[str], *, threshold: float = DEFAULT_THRESHOLD
) -> VPRDataset:
    """Read a VPR test set in either layout (see the module's documentation).

    Raises
    ------
    InputFileError
        The folder is missing, holds neither layout, or an image name or a ``.npy`` file
        cannot be read (the first bad one is named).
    InputError
        ``threshold`` is not a positive number, or no query has a positive.
    """
    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0):
        raise InputError(f"`threshold` must be a positive number of metres, got {threshold!r}")
    root = Path(path).expanduser()
    if root.is_file() and root.name.endswith(_DB_SUFFIX):
        data = _read_gsv(root.parent, root.name.removesuffix(_DB_SUFFIX))
    elif not root.is_dir():
        raise InputFileError(f"VPR dataset {root} is not a folder; check `dataset`")
    elif sets := sorted(p.name.removesuffix(_DB_SUFFIX) for p in root.glob(f"*{_DB_SUFFIX}")):
        if len(sets) > 1:
            raise InputError(
                f"{root} holds {len(sets)} gsv-cities sets ({', '.join(sets)}); pass one "
                f"file, e.g. `dataset` {root / (sets[0] + _DB_SUFFIX)}"
            )
        data = _read_gsv(root, sets[0])
    else:
        data = _read_utm(root, float(threshold))
    if not len(data.queries):
        raise InputFileError(f"VPR dataset {root} has no query images; add some")
    if not len(data.scored):
        where = f"within `threshold` {threshold:g} m" if data.threshold is not None else "in its gt"
        raise InputError(
            f"no query of {root} has a positive database image {where}; check the image "
            "coordinates, or raise `threshold`"
        )
    return data


def _images(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_utm_name(name: str) -> tuple[float, float, int | None]:
    """``(easting, northing, zone)`` from a name ``@east@north@zone@letter@...@.jpg``.

    ``zone`` is None when the third field is missing or not a whole number.

    Raises
    ------
    ValueError
        The name does not start with ``@`` followed by two numbers.
    """
    fields = name.split("@")
    if len(fields) < 4 or fields[0] or not all(_NUMBER.match(f) for f in fields[1:3]):
        raise ValueError(name)
    east, north = float(fields[1]), float(fields[2])
    if not (math.isfinite(east) and math.isfinite(north)):
        raise ValueError(name)
    zone = int(fields[3]) if fields[3].isdigit() else None
    return east, north, zone


def _read_utm(root: Path, threshold: float) -> VPRDataset:
    parts = {}
    for part in ("database", "queries"):
        folder = root / part
        if not folder.is_dir():
            raise InputFileError(
                f"{root} has no {part}/ folder; a VPR set holds database/ and queries/ "
                "(images named @utm_east@utm_north@...@.jpg) or gsv-cities <ds>_dbImages.npy "
                "files"
            )
        files = _images(folder)
        if not files:
            raise InputFileError(f"{folder} holds no .jpg or .png images; add them")
        coords = []
        for f in files:
            try:
                coords.append(parse_utm_name(f.name))
            except ValueError:
                raise InputFileError(
                    f"cannot read UTM coordinates from image name {f.name!r} in {folder}; "
                    "name images @utm_east@utm_north@zone@letter@...@.jpg"
                ) from None
        parts[part] = (files, coords)
    db_files, db_coords = parts["database"]
    q_files, q_coords = parts["queries"]
    positives = _positives_within(db_coords, q_coords, threshold)
    return VPRDataset(
        name=root.name,
        layout="utm",
        database=tuple(db_files),
        queries=tuple(q_files),
        positives=tuple(positives),
        threshold=threshold,
    )


def _positives_within(db, queries, threshold: float) -> list[np.ndarray]:
    """Per query, sorted indices of database points within ``threshold`` m in its zone."""
    from scipy.spatial import cKDTree

    db_xy = np.array([(e, n) for e, n, _ in db], dtype=np.float64).reshape(-1, 2)
    db_zone = np.array([-1 if z is None else z for _, _, z in db])
    q_xy = np.array([(e, n) for e, n, _ in queries], dtype=np.float64).reshape(-1, 2)
    q_zone = np.array([-1 if z is None else z for _, _, z in queries])
    out: list[np.ndarray] = [np.empty(0, np.int64)] * len(queries)
    for zone in np.unique(q_zone):
        # a query without a zone is compared with every database image
        in_zone = np.flatnonzero((db_zone == zone) | (db_zone == -1) | (zone == -1))
        qi = np.flatnonzero(q_zone == zone)
        if not len(in_zone):
            continue
        tree = cKDTree(db_xy[in_zone])
        for i, hits in zip(qi, tree.query_ball_point(q_xy[qi], r=threshold), strict=True):
            out[i] = np.sort(in_zone[np.asarray(hits, dtype=np.int64)])
    return out


def _load_npy(path: Path, *, pickle: bool = False) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=pickle)
    except FileNotFoundError:
        raise InputFileError(f"{path} is missing; a gsv-cities set needs it") from None
    except Exception as exc:  # numpy raises several kinds on a corrupt file
        raise InputFileError(f"cannot read {path}: {exc}; replace the file") from exc


def _read_gsv(root: Path, ds: str) -> VPRDataset:
    db_names = _load_npy(root / f"{ds}{_DB_SUFFIX}")
    q_names = _load_npy(root / f"{ds}_qImages.npy")
    if (root / f"{ds}_qIdx.npy").is_file():  # MSLS: scored queries and their positives
        q_idx = _load_npy(root / f"{ds}_qIdx.npy").astype(np.int64).reshape(-1)
        gt_file = root / f"{ds}_pIdx.npy"
        q_names = q_names[q_idx]
    else:
        gt_file = root / f"{ds}_gt.npy"
        if not gt_file.is_file() and (root / f"{ds}_gt_25m.npy").is_file():
            gt_file = root / f"{ds}_gt_25m.npy"
    gt = _load_npy(gt_file, pickle=True)
    if len(gt) != len(q_names):
        raise InputFileError(
            f"{gt_file.name} has {len(gt)} entries for {len(q_names)} queries; it needs one "
            "list of positives per query"
        )
    n_db = len(db_names)
    positives = []
    for i, entry in enumerate(gt):
        try:
            p = np.unique(np.asarray(entry, dtype=np.int64).reshape(-1))
        except (TypeError, ValueError):
            raise InputFileError(
                f"{gt_file.name} entry {i} is not a list of database indices; fix the file"
            ) from None
        if len(p) and (p[0] < 0 or p[-1] >= n_db):
            raise InputFileError(
                f"{gt_file.name} entry {i} names database image {p[-1] if p[-1] >= n_db else p[0]}"
                f" of {n_db}; fix the file"
            )
        positives.append(p)

    def paths(names: np.ndarray, npy: str) -> tuple[Path, ...]:
        out = tuple(root / str(n) for n in names.reshape(-1))
        for p in out:
            if not p.is_file():
                raise InputFileError(
                    f"image {p} listed in {npy} does not exist; its paths are relative to "
                    "the folder holding the .npy files"
                )
        return out

    return VPRDataset(
        name=ds,
        layout="gsv-cities",
        database=paths(db_names, f"{ds}{_DB_SUFFIX}"),
        queries=paths(q_names, gt_file.name.replace(gt_file.stem, f"{ds}_qImages")),
        positives=tuple(positives),
    )


# --------------------------------------------------------------------------- search
def faiss_available() -> bool:
    """True when faiss can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _normalised(block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``block``'s rows scaled to unit length, in float32, written to ``out`` (C order, of
    ``block``'s shape) or a new array."""
    if out is None:
        out = np.empty(block.shape, dtype=np.float32)
    np.copyto(out, block)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64)).astype(np.float32)
    norms[norms == 0] = 1.0  # a zero vector stays zero (scores 0 with everything)
    out /= norms[:, None]
    return out


def _sorted_rows(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best by (score descending, id ascending)."""
    order = np.lexsort((ids, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _block_numpy(q: np.ndarray, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = max(1, (1 << 24) // max(1, block.shape[0]))  # score matrices of at most 64 MB
    parts = [_rows_numpy(q[i : i + rows], block, k) for i in range(0, len(q), rows)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _rows_numpy(q: np.ndarray, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = q @ block.T
    n = scores.shape[1]
    if k >= n:
        ids = np.broadcast_to(np.arange(n, dtype=np.int64), scores.shape)
        return _sorted_rows(scores, ids, k)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(scores, part, 1)
    kth = top.min(axis=1)
    tied = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
    for r in tied:  # the k-th score is shared beyond the partition: sort the whole row
        order = np.argsort(-scores[r], kind="stable")[:k]
        part[r] = order
        top[r] = scores[r, order]
    return _sorted_rows(top, part.astype(np.int64), k)


def _block_faiss(q: np.ndarray, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    n = block.shape[0]
    want = min(k + 1, n)
    scores, ids = faiss.knn(q, block, want, metric=faiss.METRIC_INNER_PRODUCT)
    if want > k:
        # rows whose k-th and (k+1)-th scores are equal: the group of equal scores may go
        # on past what faiss returned, and faiss picks its members in no set order
        for r in np.flatnonzero(scores[:, k - 1] == scores[:, k]):
            wide = want
            while True:
                wide = min(2 * wide, n)
                s, i = faiss.knn(q[r : r + 1], block, wide, metric=faiss.METRIC_INNER_PRODUCT)
                if wide == n or s[0, -1] < s[0, k - 1]:
                    break
            srt_s, srt_i = _sorted_rows(s, i, k)
            scores[r, :k], ids[r, :k] = srt_s[0], srt_i[0]
            scores[r, k:], ids[r, k:] = -np.inf, n  # sorted last, dropped below
    return _sorted_rows(scores, ids, min(k, n))


def nearest(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    backend: str = "auto",
    block_rows: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest database rows of each query by cosine similarity.

    Parameters
    ----------
    database, queries
        ``(n, d)`` and ``(m, d)`` descriptors (any float dtype; normalised here, in copies).
    k
        Neighbours per query (at most the database's size).
    backend
        ``"faiss"``, ``"numpy"`` or ``"auto"`` (faiss when it is installed).
    block_rows
        Database rows normalised and searched at a time; None: as many as fill
        :data:`BLOCK_BYTES` (21,845 rows of 768 values).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(m, k)`` float32 inner products, decreasing, and int64 database indices; equal
        scores in increasing index order.
    """
    if backend not in ("auto", "faiss", "numpy"):
        raise InputError(f"`backend` must be auto, faiss or numpy, not {backend!r}")
    if backend == "auto":
        backend = "faiss" if faiss_available() else "numpy"
    elif backend == "faiss" and not faiss_available():
        from .._errors import MissingDependencyError

        raise MissingDependencyError("faiss is not installed: pip install faiss-cpu")
    database = np.asarray(database)
    queries = np.asarray(queries)
    if database.ndim != 2 or queries.ndim != 2 or database.shape[1] != queries.shape[1]:
        raise InputError(
            f"database {database.shape} and queries {queries.shape} must be 2-d descriptors "
            "of one width"
        )
    n = database.shape[0]
    if not 1 <= k <= n:
        raise InputError(f"`k` must be 1..{n} (the database's size), got {k}")
    if block_rows is None:
        block_rows = max(1, BLOCK_BYTES // (4 * max(1, database.shape[1])))
    elif not block_rows >= 1:
        raise InputError(f"`block_rows` must be a positive number of rows, got {block_rows}")
    search = _block_faiss if backend == "faiss" else _block_numpy
    q = _normalised(queries)
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    # one buffer holds each normalised block in turn: one block's memory, allocated once
    buffer = np.empty((min(block_rows, n), database.shape[1]), dtype=np.float32)
    for start in range(0, n, block_rows):
        if should_stop is not None and should_stop():
            from .._errors import Stopped

            raise Stopped("stopped during the nearest-neighbour search; nothing written")
        rows = database[start : start + block_rows]
        block = _normalised(rows, buffer[: len(rows)])
        s, i = search(q, block, min(k, len(block)))
        best_s, best_i = _sorted_rows(
            np.concatenate([best_s, s], axis=1), np.concatenate([best_i, i + start], axis=1), k
        )
    return best_s, best_i


def recall_at_k(
    neighbours: np.ndarray,
    positives: Sequence[np.ndarray],
    ks: Sequence[int] = RECALL_KS,
) -> dict[int, float]:
    """Percentage of queries with a positive among their first ``K`` neighbours, per ``K``.

    ``neighbours`` is ``(m, k)`` database indices, nearest first; ``positives`` one array
    of database indices per row. ``K`` beyond ``k`` counts the ``k`` neighbours there are.
    """
    m = len(neighbours)
    if m != len(positives):
        raise InputError(f"{m} neighbour lists for {len(positives)} queries")
    if m == 0:
        raise InputError("no query to score")
    first = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    for r in range(m):
        hit = np.flatnonzero(np.isin(neighbours[r], positives[r]))
        if len(hit):
            first[r] = hit[0]
    return {k: float(100.0 * np.mean(first < k)) for k in ks}


# --------------------------------------------------------------------------- evaluation
def evaluate_vpr(
    dataset: str | os.PathLike[str] | VPRDataset,
    specs: Sequence[Any],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    image_size: int | None = None,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "auto",
    backend: str = "auto",
    descriptor: str = "cls",
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Any:
    """Recall@K of each encoder on a VPR set: one row per encoder.

    Parameters
    ----------
    dataset
        A folder (or gsv-cities ``<ds>_dbImages.npy``) for :func:`read_dataset`, or a
        :class:`VPRDataset`.
    specs
        :class:`~urbanvis.evaluate.encoders.EncoderSpec` from ``encoder_specs``.
    descriptor
        ``cls`` (the paper's [CLS] vector) or ``tokens`` (centred patch tokens; see
        :mod:`urbanvis.evaluate.encoders`). With ``tokens`` each model's label ends in
        " (tokens)".

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: ``model``, ``dataset``, ``n_queries`` (scored),
        ``n_excluded`` (no positive) and ``R@1`` ... ``R@25`` in percent.
    """
    import pandas as pd

    from .encoders import check_descriptor, features_from_files

    check_descriptor(descriptor)
    data = dataset
    if not isinstance(data, VPRDataset):
        data = read_dataset(data, threshold=threshold)
    scored = data.scored
    files = list(data.database) + [data.queries[i] for i in scored]
    positives = [data.positives[i] for i in scored]
    n_db = len(data.database)
    rows = []
    for spec in specs:
        features, _meta = features_from_files(
            files,
            spec,
            image_size=image_size,
            batch_size=batch_size,
            workers=workers,
            device=device,
            descriptor=descriptor,
            progress=progress,
            should_stop=should_stop,
        )
        _, ids = nearest(
            features[:n_db],
            features[n_db:],
            min(max(RECALL_KS), n_db),
            backend=backend,
            should_stop=should_stop,
        )
        recall = recall_at_k(ids, positives)
        rows.append(
            {
                "model": spec.label if descriptor == "cls" else f"{spec.label} ({descriptor})",
                "dataset": data.name,
                "n_queries": len(scored),
                "n_excluded": data.n_excluded,
                **{f"R@{k}": recall[k] for k in RECALL_KS},
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))
