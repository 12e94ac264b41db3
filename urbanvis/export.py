"""Embeddings as GeoParquet: one file other tools read, written in chunks, and read back.

:func:`export_embeddings` writes one row per embedded capture: ``capture_id``, ``point_id``,
``model``, the capture's metadata from the ``captures`` layer (provider, pano_id,
captured_at, heading, image_path, attribution...), ``pc1..pc3``, the vector as a
``FixedSizeList<float32>[dim]`` column named ``vector`` and the capture's point as WKB in
``geometry``, with GeoParquet 1.0 ``geo`` metadata (CRS EPSG:4326 as PROJJSON, bbox), so
that ``geopandas.read_parquet``, DuckDB (``read_parquet``, spatial's ``ST_GeomFromWKB``),
GDAL/QGIS (3.8+ with the Parquet driver) and plain pyarrow read it.
:func:`read_embeddings_file` reads such a file back as :func:`urbanvis.vectors.read_embeddings`
does a study (which hands it any ``.parquet`` path).

The vectors are the only large part, so they stream: each vector file of the model is read
in batches of ``chunk_rows`` and each chunk goes to a :class:`pyarrow.parquet.ParquetWriter`
as one row group; the float32 values are copied from the store as they are, never converted.
The per-capture attributes (small) are converted once, through geopandas'
``GeoDataFrame.to_arrow``, so every chunk has the same schema. geopandas writes GeoParquet
only from a whole frame in memory and has no public builder of its ``geo`` metadata, so the
metadata comes from geopandas' own writer run on a two-point frame (the bbox corners, in the
same CRS): the same JSON it would write for the whole layer, without writing the layer.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._errors import InputError, StudyError
from ._files import atomic_file, not_a_file, writable_ancestor
from .study import Study
from .vectors import (
    LAYER,
    VECTOR_COLUMN,
    _sql_text,
    _vector_files,
    model_folder,
    resolve_model,
)
from .vectors import _plan as _store_plan

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "check_export_options", "export_embeddings", "read_embeddings_file"]

FORMATS = ("geoparquet",)
"""The formats :func:`export_embeddings` writes."""

CHUNK_ROWS = 4096
"""Vectors per chunk (and per Parquet row group): 12 MiB of 768-d float32 vectors; pyarrow
peaks at about six times a chunk while it reads and writes one."""

READ_BUFFER = 1 << 20
"""Bytes read at a time from a vector file. pyarrow's default (0) reads each column chunk,
all of a row group's vectors, into memory at once: ``vectors.parquet`` is one row group."""

CAPTURE_COLUMNS = (
    "provider",
    "pano_id",
    "captured_at",
    "heading",
    "pitch",
    "fov",
    "image_path",
    "width",
    "height",
    "sha256",
    "attribution",
    "distance_m",
)
"""Columns of the ``captures`` layer copied into an export, where the layer has them."""


class _Stopped(Exception):
    """``should_stop`` said stop: the temporary file is removed, nothing is written."""


def check_export_options(format: str, out: str | os.PathLike[str] | None) -> Path | None:  # noqa: A002
    """Refuse an unknown ``format`` or an ``out`` that could not be written, writing nothing."""
    if format not in FORMATS:
        raise InputError(f"`format` must be one of {', '.join(FORMATS)}, not {format!r}")
    if out is None:
        return None
    path = Path(out).expanduser()
    if path.is_dir():
        raise InputError(
            f"`out` {path} is a folder; give a file name, e.g. {path}/embeddings.parquet"
        )
    if path.suffix.lower() != ".parquet":
        raise InputError(f"`out` {path.name} must be a GeoParquet file name (.parquet)")
    if not path.parent.exists():
        raise InputError(
            f"`out` {path}: folder {path.parent} does not exist; create it or choose another `out`"
        )
    if not path.parent.is_dir():
        raise InputError(f"`out` {path}: {path.parent} is a file, not a folder")
    try:
        writable_ancestor(path.parent)
    except OSError as exc:
        raise StudyError(
            f"cannot write `out` {path}: folder {path.parent} is not writable "
            f"({exc.strerror or type(exc).__name__}); choose another `out`"
        ) from exc
    return path


def export_embeddings(
    study: Study,
    model: str | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    format: str = "geoparquet",  # noqa: A002 - the option is called format, like the CLI's
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int, int, Mapping[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """Write the embeddings of ``model`` to a GeoParquet file, ``chunk_rows`` vectors at a time.

    Parameters
    ----------
    study
        A study that ``urbanvis embed`` has run on.
    model
        The model id; may be left out when the study holds one model only.
    path
        The file to write (``.parquet``); default ``exports/embeddings_<model>.parquet``
        in the study. Written atomically: a failure or a stop leaves no file.
    format
        ``geoparquet`` (the only one so far).
    chunk_rows
        Vectors read and written per step (one Parquet row group each).

    Returns
    -------
    dict or None
        ``path``, ``model``, ``rows``, ``dim``, ``chunks``; None when ``should_stop``
        stopped the export (nothing written).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = check_export_options(format, path)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InputError(f"`chunk_rows` must be a whole number of at least 1, got {chunk_rows!r}")
    model = resolve_model(study, model)
    folder = model_folder(study, model)
    if out is None:
        out = study.root / "exports" / f"embeddings_{folder.name}.parquet"

    rows = study.read_layer(LAYER, where=f"model = '{_sql_text(model)}'").reset_index(drop=True)
    if rows.crs is not None and rows.crs.to_epsg() != 4326:  # urbanvis writes 4326 already
        rows = rows.to_crs(4326)
    files = _vector_files(folder)
    plan = _plan(files, rows["capture_id"], folder, model)
    attributes = _attributes(study, rows)
    table = pa.table(attributes.to_arrow(index=False, geometry_encoding="WKB"))
    vector_type = pq.read_schema(files[0]).field(VECTOR_COLUMN).type
    if not (
        pa.types.is_fixed_size_list(vector_type) and pa.types.is_floating(vector_type.value_type)
    ):
        raise InputError(f"{files[0]} holds no fixed-size float vectors; rerun 'urbanvis embed'")
    at = table.schema.get_field_index("geometry")
    fields = list(table.schema)
    fields.insert(at, pa.field(VECTOR_COLUMN, vector_type, nullable=False))
    meta = {b"geo": _geo_metadata(attributes), b"urbanvis": _urbanvis_metadata(folder, model)}
    schema = pa.schema(fields, metadata=meta)

    # no dictionary for the vectors: distinct floats never fit one, and pyarrow's attempt
    # holds a hash table many times the chunk's size before it gives up
    names = [name for name in schema.names if name != VECTOR_COLUMN]
    total = int(sum(int(keep.sum()) for keep, _ in plan))
    stop = should_stop or (lambda: False)
    written = chunks = 0
    if progress is not None:
        progress(0, total, {})
    out.parent.mkdir(exist_ok=True)  # the default exports/ folder; a given out's folder exists
    try:
        with atomic_file(out) as fh, pq.ParquetWriter(fh, schema, use_dictionary=names) as writer:
            pending: list[pa.Table] = []
            for file, (keep, at_row) in zip(files, plan, strict=True):
                start = 0
                reader = pq.ParquetFile(file, buffer_size=READ_BUFFER, pre_buffer=False)
                for batch in reader.iter_batches(
                    batch_size=chunk_rows, columns=["capture_id", VECTOR_COLUMN]
                ):
                    n = batch.num_rows
                    mask = keep[start : start + n]
                    index = at_row[start : start + n][mask]
                    start += n
                    if not len(index):
                        continue
                    chunk = table.take(pa.array(index))
                    vectors = batch.column(VECTOR_COLUMN)
                    if not mask.all():  # a copy only when some rows are left out
                        vectors = vectors.filter(pa.array(mask))
                    vectors = vectors.cast(vector_type)
                    pending.append(chunk.add_column(at, schema.field(VECTOR_COLUMN), [vectors]))
                    while sum(len(t) for t in pending) >= chunk_rows:
                        if stop():
                            raise _Stopped
                        merged = pa.concat_tables(pending)
                        writer.write_table(merged.slice(0, chunk_rows), row_group_size=chunk_rows)
                        # a slice keeps its parent's buffers alive: keep only a real rest
                        rest_rows = merged.slice(chunk_rows)
                        pending = [rest_rows] if len(rest_rows) else []
                        written += chunk_rows
                        chunks += 1
                        if progress is not None:
                            progress(written, total, {})
            rest = pa.concat_tables(pending) if pending else None
            if rest is not None and len(rest):
                if stop():
                    raise _Stopped
                writer.write_table(rest, row_group_size=chunk_rows)
                written += len(rest)
                chunks += 1
                if progress is not None:
                    progress(written, total, {})
    except _Stopped:
        return None
    dim = vector_type.list_size
    log.debug("exported %d %d-d embeddings of %s to %s", written, dim, model, out)
    return {"path": out, "model": model, "rows": written, "dim": dim, "chunks": chunks}


def _plan(
    files: list[Path], layer_ids: pd.Series, folder: Path, model: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per vector file: which of its rows to write (the layer's captures, each once, the
    last copy as :func:`urbanvis.vectors.read_vectors` keeps it) and their layer row."""

    if not files:
        raise InputError(f"no vectors of model {model!r} in {folder}; rerun 'urbanvis embed'")
    # which copy of a capture counts, as the store's readers decide (vectors._plan)
    masks, layer_row = _store_plan(files, layer_ids)
    last = np.concatenate(masks)
    row = np.full(len(last), -1, dtype=np.int64)
    row[last] = layer_row
    keep = row >= 0
    missing = len(layer_ids) - int(keep.sum())
    if missing:
        raise InputError(
            f"{missing} rows of the embeddings layer have no vector in {folder}; "
            f"rerun 'urbanvis embed'"
        )
    plan, start = [], 0
    for part in masks:
        end = start + len(part)
        plan.append((keep[start:end], row[start:end]))
        start = end
    return plan


def _attributes(study: Study, rows):
    """The layer's rows with the captures' metadata columns, in the layer's order."""
    import geopandas as gpd
    import pyogrio

    have = (
        set(pyogrio.read_info(study.gpkg, layer="captures")["fields"])
        if study.has_layer("captures")
        else set()
    )
    wanted = [c for c in CAPTURE_COLUMNS if c in have]
    frame = pd.DataFrame(
        {"capture_id": rows["capture_id"], "point_id": rows["point_id"], "model": rows["model"]}
    )
    if wanted:
        caps = study.read_layer("captures", columns=["capture_id", *wanted], read_geometry=False)
        caps = caps.drop_duplicates("capture_id", keep="last").set_index("capture_id")
        frame = frame.join(caps[wanted], on="capture_id")
    for name in ("pc1", "pc2", "pc3"):
        if name in rows.columns:
            frame[name] = rows[name].to_numpy()
    return gpd.GeoDataFrame(frame, geometry=rows.geometry.to_numpy(), crs=rows.crs)


def _geo_metadata(frame) -> bytes:
    """geopandas' GeoParquet 1.0 ``geo`` metadata for ``frame``'s geometry column."""
    import geopandas as gpd
    import pyarrow.parquet as pq
    from shapely.geometry import Point

    x0, y0, x1, y1 = frame.total_bounds
    corners = gpd.GeoDataFrame(geometry=[Point(x0, y0), Point(x1, y1)], crs=frame.crs)
    buffer = io.BytesIO()
    corners.to_parquet(buffer, index=False, schema_version="1.0.0")
    buffer.seek(0)
    return pq.read_schema(buffer).metadata[b"geo"]


def _urbanvis_metadata(folder: Path, model: str) -> bytes:
    from ._version import __version__

    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    return json.dumps({"model": model, "meta": meta, "urbanvis": __version__}).encode("utf-8")


# ---------------------------------------------------------------------------- reading
def read_embeddings_file(path: str | os.PathLike[str], *, model: str | None = None):
    """The rows and vectors of an embeddings GeoParquet file, as ``read_embeddings`` gives them.

    Parameters
    ----------
    path
        A file written by :func:`export_embeddings` (``urbanvis export``), or any GeoParquet
        file with ``capture_id``, ``model`` and a fixed-size list ``vector`` column.
    model
        Keep this model's rows; may be left out when the file holds one model only.

    Returns
    -------
    (geopandas.GeoDataFrame, numpy.ndarray)
        The file's rows without the vectors (geometry in the file's CRS) and a float32
        matrix of shape ``(len(rows), dim)``: row ``i`` is the vector of
        ``rows.capture_id[i]``.
    """
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"`study` {path} {not_a_file(path)}")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"`study` {path.name} cannot be read as Parquet: {exc}") from exc
    need = {"capture_id", "model", VECTOR_COLUMN}
    if b"geo" not in (schema.metadata or {}) or not need <= set(schema.names):
        raise InputError(
            f"`study` {path.name} is not an embeddings export (GeoParquet with "
            f"{', '.join(sorted(need))}); write one with 'urbanvis export'"
        )
    vector_type = schema.field(VECTOR_COLUMN).type
    if not (
        pa.types.is_fixed_size_list(vector_type) and pa.types.is_floating(vector_type.value_type)
    ):
        raise InputError(
            f"`study` {path.name}: column vector is {vector_type}, not a fixed-size float list"
        )
    rows = gpd.read_parquet(path, columns=[n for n in schema.names if n != VECTOR_COLUMN])
    column = pq.read_table(path, columns=[VECTOR_COLUMN]).column(0).combine_chunks()
    if column.null_count:
        raise InputError(f"`study` {path.name} has {column.null_count} rows without a vector")
    dim = vector_type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    matrix = matrix.reshape(-1, dim)
    models = sorted(rows["model"].dropna().unique().tolist())
    if model is None and len(models) > 1:
        raise InputError(
            f"`study` {path.name} holds embeddings of {len(models)} models ({', '.join(models)}); "
            f"pass `model`=..."
        )
    if model is not None:
        if model not in models:
            raise InputError(
                f"no embeddings of `model` {model!r} in {path.name}; it has: {', '.join(models)}"
            )
        keep = (rows["model"] == model).to_numpy()
        rows, matrix = rows[keep].reset_index(drop=True), matrix[keep]
    return rows, matrix
