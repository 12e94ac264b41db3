"""The embedding store: vector files, the ``embeddings`` layer, and reading them back.

Torch-free: :mod:`urbanvis.engine.inference` computes the vectors and writes them through
the functions here; everything that only reads or finalises them lives here, so reading
embeddings (``read_embeddings``, ``embedding_models``) never imports torch.

Where things go (design section 3)::

    embeddings/<model>/meta.json        what the model is: name, checkpoint sha256, size, dim
    embeddings/<model>/parts/*.parquet  one file per batch, written atomically while running
    embeddings/<model>/vectors.parquet  all vectors: capture_id + a float32 fixed-size list
    study.gpkg, layer ``embeddings``    capture_id, point_id, model, pc1..pc3, geometry

A run writes one part file per batch (``part-r<rank>-<n>.parquet``, one series per
torchrun rank); :func:`vector_ids` lists the captures a model has done, so a killed run
resumes where it stopped. When every capture is done :func:`finalise` merges the parts
into ``vectors.parquet``, fits a PCA on all of that model's vectors (the same fit as
:func:`principal_components`) and replaces the model's rows of the ``embeddings`` layer.

Nothing here holds all of a model's vectors unless asked to (:func:`read_vectors`,
:func:`read_embeddings`): :func:`finalise` streams blocks of ``chunk_rows`` vectors through
the merge, the PCA fit (mean and scatter matrix summed in float64, :class:`_Scatter`) and
the layer write, and :func:`iter_vectors` reads a store block by block, so their memory is
flat in the number of vectors. What grows is small: capture ids are read as Arrow strings
(a few bytes each) and coded to integers (:func:`_codes`, in hash buckets of 262,144 ids,
so the hash table stays bounded); across the blocks :func:`finalise` holds 5 bytes a
vector and reads each block's captures (point id, point) from the captures layer by
feature id. :func:`pending_captures` gives ``embed`` the captures still to do in the same
compact form. Read the result with :func:`read_embeddings`, or :func:`read_embedding_rows`
and :func:`iter_vectors` for a store too large to hold.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._errors import InputError
from ._files import atomic_file, atomic_write_text
from .study import Study

__all__ = [
    "LAYER",
    "VECTOR_COLUMN",
    "embedding_models",
    "finalise",
    "iter_vectors",
    "model_folder",
    "next_part_number",
    "ok_captures",
    "pending_captures",
    "principal_components",
    "read_embedding_rows",
    "read_embeddings",
    "read_vectors",
    "remove_temporaries",
    "resolve_model",
    "vector_ids",
    "write_meta",
    "write_part",
]

log = logging.getLogger(__name__)

LAYER = "embeddings"
VECTOR_COLUMN = "vector"
DEFAULT_CHUNK_ROWS = 16_384
"""Vectors per block when merging, fitting and writing: 16,384 x 768 float64 is 100 MB."""
_BUCKET_IDS = 1 << 18
"""Ids coded together by :func:`_codes` (a hash table of some 15 MB)."""


def model_folder(study: Study, model_id: str) -> Path:
    """The folder holding a model's vectors: ``embeddings/<model id made file-safe>``."""
    return study.root / "embeddings" / re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)


def _check_captures(study: Study, *, ok: bool = True) -> None:
    """Raise unless ``study`` has a captures layer (with an ``ok`` row, if ``ok``)."""
    import pyogrio

    if not study.has_layer("captures"):
        raise InputError(
            f"study {study.root} has no 'captures' layer; run 'urbanvis harvest' first"
        )
    if ok:
        _, one = pyogrio.read_arrow(
            study.gpkg, layer="captures", columns=["capture_id"], where="status = 'ok'",
            read_geometry=False, max_features=1,
        )  # fmt: skip
        if one.num_rows == 0:
            raise _no_ok_captures(study)


def _no_ok_captures(study: Study) -> InputError:
    return InputError(
        f"study {study.root} has no ok captures to embed; run 'urbanvis harvest' first"
    )


def _repeated_ids() -> InputError:
    return InputError("the captures layer repeats capture ids; it was not written by urbanvis")


def ok_captures(study: Study) -> pd.DataFrame:
    """The ``ok`` rows of the captures layer (capture_id, point_id, image_path, status).

    A frame of Python objects, about half a kilobyte a capture: for a few images, or a
    sample; ``embed`` reads what it needs with :func:`pending_captures` instead.
    """
    _check_captures(study, ok=False)
    caps = study.read_layer(
        "captures", columns=["capture_id", "point_id", "image_path", "status"],
        where="status = 'ok'", read_geometry=False,
    )  # fmt: skip
    if len(caps) == 0:
        raise _no_ok_captures(study)
    if not caps["capture_id"].is_unique:
        raise _repeated_ids()
    return caps.reset_index(drop=True)


def pending_captures(study: Study, folder: Path, *, limit: int | None = None):
    """The ``ok`` captures that have no vector in ``folder`` yet, as Arrow arrays.

    Returns ``(capture ids, image paths, ok captures, ok captures already done)``: the
    first two in the captures layer's order (at most ``limit`` of them). Reads only those
    two columns of the ok rows and holds them as Arrow strings (a few bytes each, not a
    Python object per capture); ids are compared through :func:`_codes`, whose memory is
    bounded whatever the number of captures.
    """
    import pyarrow as pa
    import pyogrio

    _check_captures(study, ok=False)
    _, table = pyogrio.read_arrow(
        study.gpkg, layer="captures", columns=["capture_id", "image_path"],
        where="status = 'ok'", read_geometry=False,
    )  # fmt: skip
    ids = table.column("capture_id").cast(pa.string())
    if len(ids) == 0:
        raise _no_ok_captures(study)
    done_columns = [_id_column(p) for p in _vector_files(folder)]
    codes, n_codes = _codes([ids, *done_columns])
    del done_columns
    seen = np.zeros(n_codes, dtype=bool)
    seen[codes[0]] = True
    if int(seen.sum()) != len(ids):
        raise _repeated_ids()
    seen[:] = False
    for done in codes[1:]:
        seen[done] = True
    is_done = seen[codes[0]]
    del codes, seen
    total, done_before = len(ids), int(is_done.sum())
    paths = table.column("image_path").cast(pa.string())
    del table
    rows = np.flatnonzero(~is_done) if done_before else None  # None: all of them, no copy
    del is_done
    if limit is not None and max(int(limit), 0) < total - done_before:
        rows = (np.arange(total) if rows is None else rows)[: max(int(limit), 0)]
    if rows is not None:
        take = pa.array(rows)
        ids, paths = ids.take(take), paths.take(take)
    return ids, paths, total, done_before


# -------------------------------------------------------------------------- storage
def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` (and create ``parts/``); refuse a folder of another width."""
    path = folder / "meta.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("dim") != meta["dim"]:
            raise InputError(
                f"{folder} holds {old.get('dim')}-d vectors but this model gives {meta['dim']}; "
                f"move the folder away"
            )
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")


def _table(ids: list[str], vectors: np.ndarray):
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    return pa.table({"capture_id": pa.array(ids, type=pa.string()), VECTOR_COLUMN: column})


def _write_parquet(path: Path, ids: list[str], vectors: np.ndarray) -> None:
    import pyarrow.parquet as pq

    with atomic_file(path) as fh:
        pq.write_table(_table(ids, vectors), fh)


def write_part(folder: Path, rank: int, seq: int, ids: list[str], vectors) -> None:
    """Write one batch: ``parts/part-r<rank>-<seq>.parquet``, atomically."""
    _write_parquet(folder / "parts" / f"part-r{rank:03d}-{seq:06d}.parquet", ids, vectors)


def remove_temporaries(folder: Path) -> None:
    """Delete the temporary files of writes a kill interrupted (never read as output)."""
    for path in [*folder.glob(".*.tmp"), *(folder / "parts").glob(".*.tmp")]:
        path.unlink(missing_ok=True)


def next_part_number(folder: Path, rank: int) -> int:
    """The number of this rank's next part file (after those already on disk)."""
    numbers = [
        int(p.stem.rsplit("-", 1)[1]) for p in (folder / "parts").glob(f"part-r{rank:03d}-*")
    ]
    return max(numbers, default=-1) + 1


def _vector_files(folder: Path) -> list[Path]:
    merged = folder / "vectors.parquet"
    parts = sorted((folder / "parts").glob("part-*.parquet")) if folder.exists() else []
    return ([merged] if merged.exists() else []) + parts


def _parts(folder: Path) -> list[Path]:
    return sorted((folder / "parts").glob("part-*.parquet"))


def vector_ids(folder: Path) -> list[str]:
    """The capture ids that have a vector in the folder (merged file and parts)."""
    import pyarrow.parquet as pq

    ids: list[str] = []
    for path in _vector_files(folder):
        ids.extend(pq.read_table(path, columns=["capture_id"]).column(0).to_pylist())
    return ids


# ------------------------------------------------------------------------ blocks
def _id_column(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["capture_id"]).column(0).cast(pa.string())


def _codes(columns: list) -> tuple[list[np.ndarray], int]:
    """Integer codes of the ids in ``columns`` (Arrow arrays): equal ids, equal codes.

    Only the ids are held (as Arrow strings, a few bytes each), never a Python object per
    id. Up to :data:`_BUCKET_IDS` ids, one hash pass (Arrow's ``dictionary_encode`` shares
    one dictionary across chunks); beyond, the ids are split by a hash of their text
    (pandas' ``hash_array``) into buckets of about that many (262,144), each coded on its own (codes
    offset by the earlier buckets' counts), so the hash table's memory, some 60 bytes an
    id, stays bounded. The second value is the number of distinct ids.
    """
    import pyarrow as pa

    chunks = [
        c.cast(pa.string())
        for col in columns
        for c in (col.chunks if isinstance(col, pa.ChunkedArray) else [col])
    ]
    total = sum(len(c) for c in chunks)
    codes = np.empty(total, dtype=np.int64 if total >= 2**31 else np.int32)
    n_buckets = -(-total // _BUCKET_IDS)
    where = np.concatenate([_bucket(c, n_buckets) for c in chunks]) if n_buckets > 1 else None
    ends = np.cumsum([len(c) for c in chunks])
    n_codes = 0
    for b in range(max(n_buckets, 1)):
        pieces = chunks if where is None else [
            c.filter(pa.array(where[end - len(c) : end] == b))
            for c, end in zip(chunks, ends, strict=True)
        ]  # fmt: skip
        encoded = pa.chunked_array(pieces, type=pa.string()).dictionary_encode()
        parts = [c.indices.to_numpy(zero_copy_only=False) for c in encoded.chunks]
        found = np.concatenate(parts) if parts else np.zeros(0, dtype=codes.dtype)
        if where is None:
            codes[:] = found
        else:
            codes[where == b] = found + n_codes
        n_codes += len(encoded.chunks[0].dictionary) if encoded.num_chunks else 0
        del encoded, pieces, parts, found
    del chunks, where
    pa.default_memory_pool().release_unused()  # before the blocks: peaks do not add up
    return np.split(codes, np.cumsum([len(c) for c in columns])[:-1]), n_codes


def _bucket(ids, n_buckets: int) -> np.ndarray:
    """A bucket number in ``[0, n_buckets)`` for each id of an Arrow array, from its text."""
    out = np.empty(len(ids), dtype=np.uint16 if n_buckets <= 2**16 else np.uint32)
    step = 1 << 18  # Python strings for this many ids at a time
    for start in range(0, len(ids), step):
        text = ids.slice(start, step).to_numpy(zero_copy_only=False)
        out[start : start + len(text)] = pd.util.hash_array(text, categorize=False) % n_buckets
    return out


def _last_occurrences(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """True where a row holds the last occurrence of its id (later files win)."""
    dtype = np.int32 if len(codes) < 2**31 else np.int64
    last = np.full(n_codes, -1, dtype=dtype)
    order = np.arange(len(codes), dtype=dtype)
    np.maximum.at(last, codes, order)
    return last[codes] == order


def _keep_masks(files: list[Path]) -> list[np.ndarray]:
    """Per file, the rows that are their id's last occurrence over all ``files``."""
    return _plan(files)[0]


def _plan(files: list[Path], ids=None, *, values: np.ndarray | None = None):
    """Which rows of ``files`` to keep (per file), and what each kept row maps to in ``ids``.

    A capture in several files keeps its last vector (later files win: a merge killed
    halfway leaves the merged file and the parts). The second value, with ``ids`` (capture
    ids: Arrow strings, or any sequence of them), gives for each kept row in order its
    position in ``ids``, or ``values`` at that position (-1: not in ``ids``), as the
    smallest integer type that holds them.
    """
    import pyarrow as pa

    columns = [_id_column(p) for p in files]
    lengths = [len(c) for c in columns]
    given = []
    if ids is not None:
        if not isinstance(ids, pa.Array | pa.ChunkedArray):
            ids = pa.array(np.asarray(ids, dtype=object).astype(str), type=pa.string())
        given = [ids]
    codes, n_codes = _codes([*given, *columns])
    del columns, given
    file_codes = np.concatenate(codes[-len(files) :]) if files else np.zeros(0, np.int32)
    keep = _last_occurrences(file_codes, n_codes)
    masks = np.split(keep, np.cumsum(lengths)[:-1])
    if ids is None:
        return masks, None
    if values is None:
        values = np.arange(len(ids))
    wide = len(values) and (values.max() >= 2**31 or values.min() < -(2**31))
    at = np.full(n_codes, -1, dtype=np.int64 if wide else np.int32)
    at[codes[0]] = values
    return masks, at[file_codes[keep]]


def _usable_captures(study: Study):
    """The ok captures with a point id: their ids (Arrow strings) and feature ids."""
    import pyogrio

    _check_captures(study, ok=False)
    _, table = pyogrio.read_arrow(
        study.gpkg, layer="captures", columns=["capture_id"], read_geometry=False,
        where="status = 'ok' AND point_id IS NOT NULL", return_fids=True,
    )  # fmt: skip
    return table.column("capture_id"), table.column("fid").to_numpy()


def _tables(files: list[Path], keep: list[np.ndarray], chunk_rows: int):
    """The kept rows of ``files`` in order, as Arrow tables of about ``chunk_rows`` rows.

    Small part files are gathered into one table; a large file is read ``chunk_rows`` rows
    at a time, so no more than about two blocks are held at once.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    waiting: list = []
    count = 0
    for path, mask in zip(files, keep, strict=True):
        at = 0
        # pre_buffer=False: with it, the reader caches every row group it has read until
        # the file is closed, so memory grew with the file (measured: 453 MB of 460)
        for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=chunk_rows):
            rows = mask[at : at + batch.num_rows]
            at += batch.num_rows
            if not rows.all():
                batch = batch.filter(pa.array(rows))
            if batch.num_rows:
                waiting.append(batch)
                count += batch.num_rows
            if count >= chunk_rows:
                yield pa.Table.from_batches(waiting).combine_chunks()
                waiting, count = [], 0
    if waiting:
        yield pa.Table.from_batches(waiting).combine_chunks()


def _matrix(column) -> np.ndarray:
    """A float32 matrix from a fixed-size-list column (one row per list)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(-1, dim)


def _no_vectors(study: Study, model: str) -> InputError:
    return InputError(f"study {study.root} has no vectors of model {model!r}; run 'urbanvis embed'")


def iter_vectors(
    study: Study, model: str, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The vectors of one model id, block by block: ``(capture_ids, float32 matrix)``.

    The same rows, in the same order, as :func:`read_vectors` (``vectors.parquet``, then
    the part files of an unfinished run, each capture once: its last vector), in blocks of
    about ``chunk_rows``; only the capture ids and about two blocks are held at once.
    """
    files = _vector_files(model_folder(study, model))
    if not files:
        raise _no_vectors(study, model)
    for table in _tables(files, _keep_masks(files), chunk_rows):
        ids = np.asarray(table.column("capture_id").to_pylist(), dtype=object)
        yield ids, _matrix(table.column(VECTOR_COLUMN))


def read_vectors(study: Study, model: str) -> tuple[np.ndarray, np.ndarray]:
    """All vectors of one model id: ``(capture_ids, float32 matrix)``, one row per capture.

    Reads ``vectors.parquet`` and any part files of an unfinished run (a capture present
    twice, which a merge killed halfway leaves, counts once: its last vector). Holds the
    matrix once (blocks are copied into it as they are read); to go through a large store
    without holding it, use :func:`iter_vectors`.
    """
    import pyarrow.parquet as pq

    files = _vector_files(model_folder(study, model))
    if not files:
        raise _no_vectors(study, model)
    keep = _keep_masks(files)
    total = int(sum(int(k.sum()) for k in keep))
    field = pq.read_schema(files[0]).field(VECTOR_COLUMN)
    ids = np.empty(total, dtype=object)
    matrix = np.empty((total, field.type.list_size), dtype=np.float32)
    at = 0
    for table in _tables(files, keep, DEFAULT_CHUNK_ROWS):
        n = table.num_rows
        ids[at : at + n] = table.column("capture_id").to_pylist()
        matrix[at : at + n] = _matrix(table.column(VECTOR_COLUMN))
        at += n
    return ids, matrix


# --------------------------------------------------------------------------- PCA
def _components(scatter: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` principal axes of a centred scatter matrix ``X^T X`` (columns).

    Signs fixed: each axis's largest loading is positive.
    """
    values, vectors = np.linalg.eigh(scatter)
    order = np.argsort(values)[::-1][: min(n, scatter.shape[0])]
    comps = vectors[:, order]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    comps *= np.where(signs == 0, 1, signs)
    return comps


def principal_components(matrix: np.ndarray, n: int = 3) -> np.ndarray:
    """Scores on the first ``n`` principal components (signs fixed: largest loading > 0).

    Fitted in float64 from the covariance matrix of a matrix held in memory (``finalise``
    fits the same thing block by block, see :class:`_Scatter`). Columns beyond the data's
    rank are NaN.
    """
    out = np.full((len(matrix), n), np.nan)
    if len(matrix) < 2:
        return out
    x = matrix.astype(np.float64)
    x -= x.mean(axis=0)
    comps = _components(x.T @ x, n)
    out[:, : comps.shape[1]] = x @ comps
    return out


class _Scatter:
    """Mean and centred scatter matrix ``sum (x - mean)(x - mean)^T``, added block by block.

    Exact in float64 and independent of the block size: sums are taken about a shift (the
    first block's mean), so the final correction ``n d d^T`` (``d`` = mean - shift) is
    small and loses no precision, unlike the one-pass ``X^T X - n mean mean^T``. Written
    here because scikit-learn's ``IncrementalPCA`` works on SVDs of each batch and does
    not give the full-data covariance eigenvectors the in-memory path gives.
    """

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.shift: np.ndarray | None = None
        self.sum = np.zeros(dim)
        self.cross = np.zeros((dim, dim))

    def add(self, block: np.ndarray) -> None:
        if not len(block):
            return
        x = block.astype(np.float64)
        if self.shift is None:
            self.shift = x.mean(axis=0)
        x -= self.shift
        self.n += len(x)
        self.sum += x.sum(axis=0)
        self.cross += x.T @ x

    def mean(self) -> np.ndarray:
        assert self.shift is not None
        return self.shift + self.sum / self.n

    def scatter(self) -> np.ndarray:
        d = self.sum / self.n
        return self.cross - self.n * np.outer(d, d)


# ---------------------------------------------------------------------- finalise
def _merge_parts(
    folder: Path, files: list[Path], keep: list[np.ndarray], chunk_rows: int, each
) -> None:
    """Write the kept rows of ``files`` to ``vectors.parquet`` (atomically), calling
    ``each(row offset, table)`` on every block written; then delete the part files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = pq.read_schema(files[0]).field(VECTOR_COLUMN).type.list_size
    schema = pa.schema([("capture_id", pa.string()), (VECTOR_COLUMN, pa.list_(pa.float32(), dim))])
    at = 0
    with (
        atomic_file(folder / "vectors.parquet") as fh,
        pq.ParquetWriter(
            fh,
            schema,
            compression="none",  # float32 noise: snappy saves ~nothing, doubles the time
        ) as out,
    ):
        for table in _tables(files, keep, chunk_rows):
            table = table.cast(schema)
            out.write_table(table, row_group_size=chunk_rows)
            each(at, table)
            at += table.num_rows
    for part in _parts(folder):  # a kill here leaves duplicates, which readers drop
        part.unlink()


def _layer_is_current(study: Study, model_id: str, ids) -> bool:
    """Whether the layer holds exactly one row for each of ``ids`` (Arrow strings)."""
    import pyarrow.compute as pc
    import pyogrio

    if not study.has_layer(LAYER):
        return False
    _, table = pyogrio.read_arrow(
        study.gpkg,
        layer=LAYER,
        columns=["capture_id"],
        where=f"model = '{_sql_text(model_id)}'",
        read_geometry=False,
    )
    existing = table.column("capture_id")
    return (
        len(existing) == len(ids)
        and pc.count_distinct(existing).as_py() == len(ids)
        and pc.all(pc.is_in(existing, value_set=ids)).as_py() is not False
    )


def _layer_frame(model_id, ids, point_ids, pcs, geometry, crs):
    import geopandas as gpd

    return gpd.GeoDataFrame(
        {
            "capture_id": np.asarray(ids, dtype=object).astype(str),
            "point_id": np.asarray(point_ids).astype(np.int64),
            "model": model_id,
            "pc1": pcs[:, 0],
            "pc2": pcs[:, 1],
            "pc3": pcs[:, 2],
        },
        geometry=gpd.GeoSeries(geometry, crs=crs).to_crs(4326).values,
        crs="EPSG:4326",
    )


def finalise(
    study: Study,
    folder: Path,
    model_id: str,
    *,
    failed: int = 0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> bool:
    """Merge the parts, fit the PCA and replace this model's rows of the layer.

    Works through the vectors ``chunk_rows`` at a time: one pass merges the parts into
    ``vectors.parquet`` (each capture once, its last vector) while adding up the mean and
    scatter matrix of the ok captures' vectors; a second pass writes their principal
    component scores to the ``embeddings`` layer, one transaction per block, each with the
    point ids and points of its captures read from the captures layer by feature id.
    Memory holds the blocks, a ``dim`` x ``dim`` matrix and 5 bytes per vector (whether
    kept, its capture's feature id), whatever the number of vectors; the captures are read
    from ``study`` (the ok ones with a point id), never held whole. ``failed``: captures
    whose image could not be read (for the message when no vector was written). Returns
    False when the layer was already current (nothing written).

    A kill leaves something the next call completes: during the merge, the parts and the
    old ``vectors.parquet`` (written atomically; parts are deleted only once the merged
    file is in place, and a capture in both counts once); during the layer write, this
    model's rows partly written (other models' rows are never touched), which the next
    call notices (the layer's ids for this model differ from the vectors') and rewrites.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _vector_files(folder)
    if not files and failed:
        raise InputError(
            f"none of the {failed:,} captures could be read, so nothing was embedded; check "
            f"the files under {study.images} (the warnings above name each one)"
        )
    if not files:
        raise _no_vectors(study, model_id)
    has_parts = bool(_parts(folder))
    cap_ids, fids = _usable_captures(study)
    keep, cap_fid = _plan(files, cap_ids, values=fids)
    del cap_ids, fids
    known = cap_fid >= 0  # vectors of captures no longer ok are left out of the layer
    dim = pq.read_schema(files[0]).field(VECTOR_COLUMN).type.list_size
    fit = _Scatter(dim)

    def add(at: int, table) -> None:
        fit.add(_matrix(table.column(VECTOR_COLUMN))[known[at : at + table.num_rows]])

    merged = folder / "vectors.parquet"
    if has_parts or not keep[0].all():  # (a merged file repeating ids: not written by us)
        _merge_parts(folder, files, keep, chunk_rows, add)
    else:
        kept = _id_column(merged).combine_chunks().filter(pa.array(keep[0]))
        if _layer_is_current(study, model_id, kept.filter(pa.array(known))):
            return False  # nothing new: the layer is already current
        _each_block(merged, chunk_rows, add)

    comps = _components(fit.scatter(), 3) if fit.n >= 2 else np.zeros((dim, 0))
    mean = fit.mean() if fit.n else np.zeros(dim)
    if study.has_layer(LAYER):
        study.delete_rows(LAYER, "model = ?", [model_id])
    wrote = False

    def write(at: int, table) -> None:
        nonlocal wrote
        rows = known[at : at + table.num_rows]
        if not rows.any():
            return
        x = _matrix(table.column(VECTOR_COLUMN))[rows].astype(np.float64)
        x -= mean
        pcs = np.full((len(x), 3), np.nan)
        pcs[:, : comps.shape[1]] = x @ comps
        ids = table.column("capture_id").filter(pa.array(rows)).to_pylist()
        caps = _captures_at(study, cap_fid[at : at + table.num_rows][rows])
        frame = _layer_frame(
            model_id, ids, caps["point_id"].to_numpy(), pcs, caps.geometry.to_numpy(), caps.crs
        )
        study.write_layer(LAYER, frame, append=True)
        wrote = True

    _each_block(merged, chunk_rows, write)
    if not wrote:  # no ok capture has a vector: the layer still exists, empty of this model
        caps = _captures_at(study, np.zeros(0, dtype=np.int64))
        empty = np.zeros(0, dtype=np.int64)
        frame = _layer_frame(model_id, [], empty, np.zeros((0, 3)), caps.geometry.to_numpy(),
                             caps.crs)  # fmt: skip
        study.write_layer(LAYER, frame, append=True)
    log.info("%s: %s vectors in %s, %s rows in the layer", model_id, f"{len(known):,}",
             merged.name, f"{int(known.sum()):,}")  # fmt: skip
    return True


def _captures_at(study: Study, fids: np.ndarray):
    """The point id and point of the captures with feature ids ``fids``, in that order."""
    import geopandas as gpd
    import pyogrio

    if len(fids):
        return pyogrio.read_dataframe(study.gpkg, layer="captures", columns=["point_id"], fids=fids)
    crs = pyogrio.read_info(study.gpkg, layer="captures")["crs"]
    return gpd.GeoDataFrame({"point_id": np.zeros(0, dtype=np.int64)},
                            geometry=gpd.GeoSeries([], crs=crs), crs=crs)  # fmt: skip


def _each_block(path: Path, chunk_rows: int, each) -> None:
    """Call ``each(row offset, table)`` on ``path``'s rows, ``chunk_rows`` at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    at = 0
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=chunk_rows):
        each(at, pa.Table.from_batches([batch]))
        at += batch.num_rows


# ---------------------------------------------------------------------------- reading
def embedding_models(study: Study) -> list[str]:
    """Model ids with rows in the study's ``embeddings`` layer."""
    if not study.has_layer(LAYER):
        return []
    frame = study.read_layer(LAYER, columns=["model"], read_geometry=False)
    return sorted(frame["model"].unique().tolist())


def read_embedding_rows(study: Study, *, model: str | None = None):
    """The ``embeddings`` layer rows of one model, without the vectors.

    ``model`` as in :func:`read_embeddings`. Pair the rows with :func:`iter_vectors`
    (``model=rows["model"].iloc[0]``) to go through a store too large to hold.
    """
    model = resolve_model(study, model)
    return study.read_layer(LAYER, where=f"model = '{_sql_text(model)}'").reset_index(drop=True)


def resolve_model(study: Study, model: str | None) -> str:
    """The model id ``model`` names in the study's embeddings (the only one when None)."""
    models = embedding_models(study)
    if not models:
        raise InputError(f"study {study.root} has no embeddings; run 'urbanvis embed' first")
    if model is None:
        if len(models) > 1:
            raise InputError(
                f"study {study.root} holds embeddings of {len(models)} models "
                f"({', '.join(models)}); choose one with `model`"
            )
        return models[0]
    if model not in models:
        raise InputError(f"no embeddings of `model` {model!r}; this study has: {', '.join(models)}")
    return model


def _missing_vectors(study: Study, model: str, missing: int) -> InputError:
    """The error for layer rows whose capture has no vector in the store."""
    return InputError(
        f"{missing} rows of the embeddings layer have no vector in "
        f"{model_folder(study, model)}; rerun 'urbanvis embed'"
    )


def read_embeddings(study: Study, *, model: str | None = None):
    """The ``embeddings`` layer rows of one model and their vectors, aligned.

    Holds every vector of the model in memory (4 bytes x ``dim`` per capture); for a store
    larger than that, use :func:`read_embedding_rows` and :func:`iter_vectors`.

    Parameters
    ----------
    study
        A study that ``urbanvis embed`` has run on, or a .parquet file ``urbanvis export`` wrote.
    model
        The model id (``<arch>@<sha256[:12]>``, or ``random-init:<arch>:<seed>``); may be
        left out when the study holds one model only.

    Returns
    -------
    (geopandas.GeoDataFrame, numpy.ndarray)
        The layer's rows for ``model`` (capture_id, point_id, model, pc1..pc3, geometry in
        EPSG:4326) and a float32 matrix of shape ``(len(rows), dim)``: row ``i`` is the
        vector of ``rows.capture_id[i]``.

    Examples
    --------
    >>> from urbanvis.study import open_study
    >>> from urbanvis.vectors import read_embeddings
    >>> rows, vectors = read_embeddings(open_study("hel"))  # doctest: +SKIP
    """
    if isinstance(study, str | Path) and str(study).lower().endswith(".parquet"):
        from .export import read_embeddings_file  # a file written by 'urbanvis export'

        return read_embeddings_file(study, model=model)
    rows = read_embedding_rows(study, model=model)
    model = str(rows["model"].iloc[0])  # the layer holds rows of every model it names
    ids, matrix = read_vectors(study, model)
    at = pd.Index(ids).get_indexer(rows["capture_id"])
    if (at < 0).any():
        raise _missing_vectors(study, model, int((at < 0).sum()))
    return rows, matrix[at]


def _sql_text(value: str) -> str:
    return value.replace("'", "''")
