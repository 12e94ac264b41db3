"""The streamed vector store: merge, PCA and layer in blocks equal the in-memory path."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely

from urbanvis import vectors
from urbanvis._errors import InputError
from urbanvis.study import open_study
from urbanvis.vectors import (
    LAYER,
    finalise,
    iter_vectors,
    model_folder,
    pending_captures,
    read_embedding_rows,
    read_embeddings,
    read_vectors,
    write_meta,
    write_part,
)
from urbanvis.zones import zone_embeddings, zone_embeddings_from_blocks, zones_from_grid

N, DIM, CHUNK = 20_000, 64, 777  # a chunk size that divides nothing, so blocks straddle files
MODEL = "vit_test@0123456789ab"


def vectors_for(ids: np.ndarray, seed: int) -> np.ndarray:
    """Vectors with a mean far from 0 and three well-separated leading variances."""
    rng = np.random.default_rng(seed)
    scale = np.r_[9.0, 6.0, 4.0, np.linspace(1.5, 0.5, DIM - 3)]
    return (rng.normal(size=(len(ids), DIM)) * scale + 50.0).astype(np.float32)


@pytest.fixture
def store(tmp_path):
    """A study with N ok captures, a vectors.parquet a merge killed halfway left behind,
    and parts that repeat some of its captures (with other vectors) and hold some that are
    no longer ok captures."""
    study = open_study(tmp_path / "study")
    rng = np.random.default_rng(0)
    ids = np.array([f"c{i:06d}" for i in range(N)], dtype=object)
    x = 385_000 + rng.uniform(0, 3_000, N)
    y = 6_670_000 + rng.uniform(0, 3_000, N)
    captures = gpd.GeoDataFrame(
        {
            "capture_id": ids,
            "point_id": np.arange(N, dtype=np.int64) // 2,
            "image_path": [f"images/{i}.jpg" for i in ids],
            "status": np.where(np.arange(N) % 97 == 5, "failed", "ok"),
        },
        geometry=shapely.points(x, y),
        crs="EPSG:32635",
    )
    study.write_layer("captures", captures)
    folder = model_folder(study, MODEL)
    write_meta(folder, {"model": MODEL, "dim": DIM})
    # the merged file of an earlier, killed merge: the first 6,000 captures
    write_part(folder, 0, 0, list(ids[:6000]), vectors_for(ids[:6000], 1))
    (folder / "parts" / "part-r000-000000.parquet").rename(folder / "vectors.parquet")
    # parts of two ranks: captures 4,000.. (2,000 repeat the merged file) and 300 strays
    later = np.r_[ids[4000:], np.array([f"gone{i}" for i in range(300)], dtype=object)]
    vectors = vectors_for(later, 2)
    for seq, start in enumerate(range(0, len(later), 1000)):
        rank, block = seq % 2, slice(start, start + 1000)
        write_part(folder, rank, seq // 2, list(later[block]), vectors[block])
    ok = captures[captures["status"] == "ok"].reset_index(drop=True)
    return study, folder, ok


def naive(folder):
    """Today's in-memory reading: every file whole, a capture's last vector kept."""
    files = [folder / "vectors.parquet", *sorted((folder / "parts").glob("part-*.parquet"))]
    frame = pd.concat([pq.read_table(p).to_pandas() for p in files], ignore_index=True)
    frame = frame.drop_duplicates("capture_id", keep="last")
    return frame["capture_id"].to_numpy(), np.stack(frame["vector"].to_numpy()).astype(np.float32)


def reference_scores(matrix: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=3, svd_solver="full").fit_transform(matrix.astype(np.float64))


@pytest.mark.parametrize("bucket_ids", [None, 997])
def test_finalise_in_blocks_equals_the_in_memory_path(store, bucket_ids, monkeypatch):
    """Also with the ids coded in hash buckets of 997 (as beyond a million ids)."""
    if bucket_ids is not None:
        monkeypatch.setattr(vectors, "_BUCKET_IDS", bucket_ids)
    study, folder, ok = store
    ids, matrix = naive(folder)
    assert finalise(study, folder, MODEL, chunk_rows=CHUNK)
    # merged: one row per capture, in the order today's merge gives, the parts deleted
    merged = pq.read_table(folder / "vectors.parquet")
    assert merged.column("capture_id").to_pylist() == list(ids)
    np.testing.assert_array_equal(np.stack(merged.column("vector").to_numpy(False)), matrix)
    assert not list((folder / "parts").glob("*.parquet"))
    assert (
        max(
            pq.ParquetFile(folder / "vectors.parquet").metadata.row_group(i).num_rows
            for i in range(pq.ParquetFile(folder / "vectors.parquet").num_row_groups)
        )
        <= 2 * CHUNK
    )
    # the layer: the ok captures' rows in that order, PCA scores equal up to sign
    known = np.isin(ids, ok["capture_id"])
    layer = study.read_layer(LAYER)
    assert layer["capture_id"].tolist() == list(ids[known])
    assert len(layer) < len(ids) and len(layer) > 0.9 * len(ok)
    at = ok.set_index("capture_id").loc[layer["capture_id"]]
    np.testing.assert_array_equal(layer["point_id"].to_numpy(), at["point_id"].to_numpy())
    expected = gpd.GeoSeries(at.geometry.to_crs(4326).values, index=layer.index)
    assert layer.geometry.geom_equals_exact(expected, 1e-9).all()
    ours = layer[["pc1", "pc2", "pc3"]].to_numpy()
    ref = reference_scores(matrix[known])
    for j in range(3):
        sign = np.sign(ours[:, j] @ ref[:, j])
        np.testing.assert_allclose(ours[:, j], sign * ref[:, j], rtol=1e-5, atol=1e-5)
    # signs follow the convention: the largest loading of each axis is positive
    centred = matrix[known].astype(np.float64) - matrix[known].mean(axis=0)
    loadings = np.linalg.lstsq(centred, ours, rcond=None)[0]
    assert (loadings[np.abs(loadings).argmax(axis=0), range(3)] > 0).all()


def test_a_partial_layer_is_noticed_and_rewritten(store):
    study, folder, ok = store
    other = "thumbnail:16x16"
    other_folder = model_folder(study, other)
    write_meta(other_folder, {"model": other, "dim": 3})
    few = ok["capture_id"].to_numpy()[:50]
    write_part(other_folder, 0, 0, list(few), np.ones((50, 3), np.float32))
    assert finalise(study, other_folder, other, chunk_rows=CHUNK)
    assert finalise(study, folder, MODEL, chunk_rows=CHUNK)
    full = read_embedding_rows(study, model=MODEL)
    assert not finalise(study, folder, MODEL, chunk_rows=CHUNK)  # current: nothing written
    # a kill mid-write leaves some of this model's rows: the next call writes them all
    study.delete_rows(LAYER, "model = ? AND fid % 3 = 0", [MODEL])
    assert finalise(study, folder, MODEL, chunk_rows=CHUNK)
    again = read_embedding_rows(study, model=MODEL)
    assert again["capture_id"].tolist() == full["capture_id"].tolist()
    np.testing.assert_allclose(again[["pc1", "pc2"]].to_numpy(), full[["pc1", "pc2"]], rtol=1e-9)
    assert len(read_embedding_rows(study, model=other)) == 50  # other models untouched


def test_iter_and_read_vectors_equal_the_naive_reading(store):
    study, folder, _ = store
    ids, matrix = naive(folder)
    blocks = list(iter_vectors(study, MODEL, chunk_rows=CHUNK))
    assert len(blocks) > 10 and max(len(b[0]) for b in blocks) < 2 * CHUNK
    np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), ids)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), matrix)
    got_ids, got = read_vectors(study, MODEL)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, matrix)


def test_zone_means_in_blocks_equal_zone_embeddings(store):
    study, folder, ok = store
    finalise(study, folder, MODEL, chunk_rows=CHUNK)
    rows, vectors = read_embeddings(study)
    grid = zones_from_grid(rows, kind="hex", cell_size=400.0).rename(columns={"zone_id": "Z"})
    frame, means = zone_embeddings(rows, vectors, grid, id_field="Z", min_images=40)
    rows_only = read_embedding_rows(study)
    got_frame, got = zone_embeddings_from_blocks(
        rows_only, iter_vectors(study, MODEL, chunk_rows=CHUNK), grid, id_field="Z",
        min_images=40,
    )  # fmt: skip
    assert got.dtype == np.float32 and got.shape == means.shape
    np.testing.assert_allclose(got, means, rtol=1e-6, atol=1e-6)
    assert np.isnan(means).any() == np.isnan(got).any()
    pd.testing.assert_frame_equal(
        pd.DataFrame(got_frame.drop(columns="geometry")),
        pd.DataFrame(frame.drop(columns="geometry")),
    )
    assert frame["flagged"].any() and not frame["flagged"].all()
    # a row whose capture has no vector is an error, not a silently smaller mean
    first = rows["capture_id"][0]
    short = (b for b in iter_vectors(study, MODEL, chunk_rows=CHUNK) if first not in set(b[0]))
    with pytest.raises(ValueError, match="have no vector"):
        zone_embeddings_from_blocks(rows_only, short, grid, id_field="Z")


@pytest.mark.parametrize("bucket_ids", [None, 997])
def test_pending_captures_are_the_ok_ones_without_a_vector(store, bucket_ids, monkeypatch):
    """What embed still has to do, in layer order, against a naive set difference."""
    if bucket_ids is not None:
        monkeypatch.setattr(vectors, "_BUCKET_IDS", bucket_ids)
    study, folder, ok = store
    done = set(naive(folder)[0])
    todo = ok[~ok["capture_id"].isin(done)]
    ids, paths, total, done_before = pending_captures(study, folder)
    assert (total, done_before) == (len(ok), len(ok) - len(todo))
    assert ids.to_pylist() == todo["capture_id"].tolist()
    assert paths.to_pylist() == todo["image_path"].tolist()
    ids, paths, *_ = pending_captures(study, folder, limit=7)
    assert ids.to_pylist() == todo["capture_id"].tolist()[:7]
    fresh = pending_captures(study, model_folder(study, "none@000000000000"))
    assert fresh[0].to_pylist() == ok["capture_id"].tolist() and fresh[2:] == (len(ok), 0)
    assert fresh[1].to_pylist() == ok["image_path"].tolist()


def test_pending_captures_refuses_repeated_capture_ids(tmp_path):
    study = open_study(tmp_path / "study")
    captures = gpd.GeoDataFrame(
        {"capture_id": ["a", "b", "a"], "point_id": [0, 1, 2], "image_path": ["x", "y", "z"],
         "status": "ok"},
        geometry=shapely.points([0, 1, 2], [0, 1, 2]), crs="EPSG:32635",
    )  # fmt: skip
    study.write_layer("captures", captures)
    with pytest.raises(InputError, match="repeats capture ids"):
        pending_captures(study, model_folder(study, MODEL))
