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
into ``vectors.parquet``, fits a PCA on all of that model's vectors
(:func:`principal_components`) and replaces the model's rows of the ``embeddings`` layer
in one transaction. Read the result with :func:`read_embeddings`.
"""

from __future__ import annotations

import json
import re
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
    "model_folder",
    "next_part_number",
    "ok_captures",
    "principal_components",
    "read_embeddings",
    "read_vectors",
    "remove_temporaries",
    "vector_ids",
    "write_meta",
    "write_part",
]

LAYER = "embeddings"
VECTOR_COLUMN = "vector"


def model_folder(study: Study, model_id: str) -> Path:
    """The folder holding a model's vectors: ``embeddings/<model id made file-safe>``."""
    return study.root / "embeddings" / re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)


def ok_captures(study: Study) -> pd.DataFrame:
    """The ``ok`` rows of the captures layer (capture_id, point_id, image_path, status)."""
    if not study.has_layer("captures"):
        raise InputError(
            f"study {study.root} has no 'captures' layer; run 'urbanvis harvest' first"
        )
    caps = study.read_layer("captures", columns=["capture_id", "point_id", "image_path", "status"])
    caps = caps[caps["status"] == "ok"]
    if len(caps) == 0:
        raise InputError(
            f"study {study.root} has no ok captures to embed; run 'urbanvis harvest' first"
        )
    if not caps["capture_id"].is_unique:
        raise InputError("the captures layer repeats capture ids; it was not written by urbanvis")
    return caps.reset_index(drop=True)


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


def vector_ids(folder: Path) -> list[str]:
    """The capture ids that have a vector in the folder (merged file and parts)."""
    import pyarrow.parquet as pq

    ids: list[str] = []
    for path in _vector_files(folder):
        ids.extend(pq.read_table(path, columns=["capture_id"]).column(0).to_pylist())
    return ids


def read_vectors(study: Study, model: str) -> tuple[np.ndarray, np.ndarray]:
    """All vectors of one model id: ``(capture_ids, float32 matrix)``, one row per capture.

    Reads ``vectors.parquet`` and any part files of an unfinished run.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = model_folder(study, model)
    files = _vector_files(folder)
    if not files:
        raise InputError(
            f"study {study.root} has no vectors of model {model!r}; run 'urbanvis embed'"
        )
    table = pa.concat_tables([pq.read_table(p) for p in files])
    ids = np.asarray(table.column("capture_id").to_pylist(), dtype=object)
    column = table.column(VECTOR_COLUMN).combine_chunks()
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    keep = ~pd.Series(ids).duplicated(keep="last").to_numpy()  # a merge killed halfway
    return ids[keep], matrix[keep]


def _merge_parts(folder: Path, ids: np.ndarray, matrix: np.ndarray) -> None:
    parts = sorted((folder / "parts").glob("part-*.parquet"))
    if not parts:
        return
    _write_parquet(folder / "vectors.parquet", list(ids), matrix)
    for part in parts:  # a kill here leaves duplicates, which readers drop
        part.unlink()


def principal_components(matrix: np.ndarray, n: int = 3) -> np.ndarray:
    """Scores on the first ``n`` principal components (signs fixed: largest loading > 0).

    Fitted in float64 from the covariance matrix, so memory grows with the width, not the
    number of vectors. Columns beyond the data's rank are NaN.
    """
    out = np.full((len(matrix), n), np.nan)
    if len(matrix) < 2:
        return out
    x = matrix.astype(np.float64)
    x -= x.mean(axis=0)
    values, vectors = np.linalg.eigh(x.T @ x)
    order = np.argsort(values)[::-1][: min(n, x.shape[1])]
    comps = vectors[:, order]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    comps *= np.where(signs == 0, 1, signs)
    out[:, : comps.shape[1]] = x @ comps
    return out


def finalise(
    study: Study, folder: Path, model_id: str, captures: pd.DataFrame, failed: int = 0
) -> bool:
    """Merge the parts, fit the PCA and replace this model's rows of the layer."""
    import geopandas as gpd

    if not _vector_files(folder) and failed:
        raise InputError(
            f"none of the {failed:,} captures could be read, so nothing was embedded; check "
            f"the files under {study.images} (the warnings above name each one)"
        )
    ids, matrix = read_vectors(study, model_id)
    has_parts = any((folder / "parts").glob("part-*.parquet"))
    _merge_parts(folder, ids, matrix)
    rows = captures.set_index("capture_id").reindex(ids)
    known = rows["point_id"].notna().to_numpy()  # vectors of captures no longer ok: left out
    ids, matrix, rows = ids[known], matrix[known], rows[known]
    if not has_parts and study.has_layer(LAYER):
        existing = study.read_layer(
            LAYER,
            columns=["capture_id"],
            where=f"model = '{_sql_text(model_id)}'",
            read_geometry=False,
        )
        if set(existing["capture_id"]) == set(ids):
            return False  # nothing new: the layer is already current
    pcs = principal_components(matrix)
    frame = gpd.GeoDataFrame(
        {
            "capture_id": ids.astype(str),
            "point_id": rows["point_id"].astype(np.int64).to_numpy(),
            "model": model_id,
            "pc1": pcs[:, 0],
            "pc2": pcs[:, 1],
            "pc3": pcs[:, 2],
        },
        geometry=gpd.GeoSeries(rows.geometry.to_numpy(), crs=captures.crs).to_crs(4326).values,
        crs="EPSG:4326",
    )
    frame = gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
    if study.has_layer(LAYER):
        # only this model's rows change: other models' rows are never rewritten, so a kill
        # can at worst leave this model's rows missing (the next run writes them again)
        study.delete_rows(LAYER, "model = ?", [model_id])
        study.write_layer(LAYER, frame, append=True)
    else:
        study.write_layer(LAYER, frame)
    return True


# ---------------------------------------------------------------------------- reading
def embedding_models(study: Study) -> list[str]:
    """Model ids with rows in the study's ``embeddings`` layer."""
    if not study.has_layer(LAYER):
        return []
    frame = study.read_layer(LAYER, columns=["model"], read_geometry=False)
    return sorted(frame["model"].unique().tolist())


def read_embeddings(study: Study, *, model: str | None = None):
    """The ``embeddings`` layer rows of one model and their vectors, aligned.

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
    models = embedding_models(study)
    if not models:
        raise InputError(f"study {study.root} has no embeddings; run 'urbanvis embed' first")
    if model is None:
        if len(models) > 1:
            raise InputError(
                f"study {study.root} holds embeddings of {len(models)} models "
                f"({', '.join(models)}); pass `model`=..."
            )
        model = models[0]
    if model not in models:
        raise InputError(f"no embeddings of `model` {model!r}; this study has: {', '.join(models)}")
    rows = study.read_layer(LAYER, where=f"model = '{_sql_text(model)}'").reset_index(drop=True)
    ids, matrix = read_vectors(study, model)
    at = pd.Index(ids).get_indexer(rows["capture_id"])
    if (at < 0).any():
        raise InputError(
            f"{int((at < 0).sum())} rows of the embeddings layer have no vector in "
            f"{model_folder(study, model)}; rerun 'urbanvis embed'"
        )
    return rows, matrix[at]


def _sql_text(value: str) -> str:
    return value.replace("'", "''")
