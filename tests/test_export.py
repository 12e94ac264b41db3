"""urbanvis export: GeoParquet that geopandas and pyarrow open, equal to the study, in chunks."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from urbanvis import stages as uv
from urbanvis.export import export_embeddings, read_embeddings_file
from urbanvis.study import open_study
from urbanvis.vectors import model_folder, read_embeddings, write_part

from .conftest import invoke, make_simulated_study
from .test_cli import assert_one_line_error, tree

pytest.importorskip("torch")
pytest.importorskip("timm")

MODEL = "random-init:vit_test_patch8:0"


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    """``harvested``: simulator captures, no embeddings; ``embedded``: the same, embedded."""
    root = tmp_path_factory.mktemp("export")
    harvested = make_simulated_study(root / "harvested")
    embedded = root / "embedded"
    shutil.copytree(harvested, embedded)
    uv.embed(embedded, model="vit_test_patch8", random_init=True, device="cpu", workers=0)
    return {"harvested": harvested, "embedded": embedded}


@pytest.fixture(scope="module")
def exported(studies) -> Path:
    """``urbanvis export --study EMBEDDED`` with the defaults."""
    result = invoke("export", "--study", str(studies["embedded"]))
    assert result.returncode == 0, result.stderr
    path = studies["embedded"] / "exports" / "embeddings_random-init_vit_test_patch8_0.parquet"
    assert str(path) in result.stdout and path.is_file()
    return path


def by_id(rows, matrix):
    order = np.argsort(rows["capture_id"].to_numpy())
    return rows.iloc[order].reset_index(drop=True), matrix[order]


def aligned(reference, rows, matrix):
    """``matrix`` (of ``rows``) in the order of the ``reference`` rows' capture ids."""
    at = pd.Index(rows["capture_id"]).get_indexer(reference["capture_id"])
    assert (at >= 0).all()
    return matrix[at]


def test_geopandas_opens_it_in_epsg_4326_with_the_captures_metadata(studies, exported):
    frame = gpd.read_parquet(exported)
    assert frame.crs.to_epsg() == 4326
    rows, _ = read_embeddings(open_study(studies["embedded"]))
    assert len(frame) == len(rows) > 100
    caps = open_study(studies["embedded"]).read_layer("captures").set_index("capture_id")
    caps = caps.loc[frame["capture_id"]]
    for name in ("point_id", "provider", "pano_id", "captured_at", "heading", "image_path"):
        assert frame[name].tolist() == caps[name].tolist(), name
    assert set(frame["model"]) == {MODEL}
    mine = frame.set_index("capture_id").loc[rows["capture_id"]]
    assert (mine.geometry.values == rows.geometry.values).all()
    assert np.allclose(mine[["pc1", "pc2", "pc3"]], rows[["pc1", "pc2", "pc3"]])


def test_pyarrow_reads_float32_vectors_equal_to_the_study(studies, exported):
    table = pq.read_table(exported)
    column = table.column("vector").type
    assert pa.types.is_fixed_size_list(column) and column.value_type == pa.float32()
    rows, matrix = read_embeddings(open_study(studies["embedded"]))
    assert column.list_size == matrix.shape[1]
    got = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    at = {cid: i for i, cid in enumerate(table.column("capture_id").to_pylist())}
    assert np.array_equal(got[[at[c] for c in rows["capture_id"]]], matrix)  # bit for bit


def test_the_geo_metadata_is_what_geopandas_writes_for_the_same_points(studies, exported, tmp_path):
    rows, _ = read_embeddings(open_study(studies["embedded"]))
    rows.to_parquet(tmp_path / "reference.parquet", schema_version="1.0.0")
    reference = json.loads(pq.read_schema(tmp_path / "reference.parquet").metadata[b"geo"])
    geo = json.loads(pq.read_schema(exported).metadata[b"geo"])
    assert geo["version"] == "1.0.0" and geo["primary_column"] == "geometry"
    assert geo["columns"] == reference["columns"]  # encoding, types, PROJJSON crs, bbox
    assert geo["columns"]["geometry"]["geometry_types"] == ["Point"]
    assert geo["columns"]["geometry"]["bbox"] == list(rows.total_bounds)


def test_read_embeddings_takes_the_file_and_gives_the_studys_rows_and_vectors(studies, exported):
    rows, matrix = by_id(*read_embeddings(open_study(studies["embedded"])))
    back_rows, back = by_id(*read_embeddings(str(exported)))
    assert back.dtype == np.float32 and np.array_equal(back, matrix)
    for name in ("capture_id", "point_id", "model"):
        assert back_rows[name].tolist() == rows[name].tolist(), name
    assert back_rows.crs.to_epsg() == 4326
    assert (back_rows.geometry.values == rows.geometry.values).all()
    same_rows, same = read_embeddings(exported, model=MODEL)  # a Path works too
    assert np.array_equal(by_id(same_rows, same)[1], matrix)
    with pytest.raises(ValueError, match="no embeddings of model 'other'"):
        read_embeddings(exported, model="other")


def test_duckdb_reads_it(exported):
    duckdb = pytest.importorskip("duckdb")  # optional: not a dependency of urbanvis
    found = duckdb.sql(f"SELECT capture_id, vector FROM '{exported}'").fetchall()
    ids, vectors = zip(*found, strict=True)
    rows, matrix = read_embeddings_file(exported)
    assert list(ids) == rows["capture_id"].tolist()
    assert np.array_equal(np.asarray(vectors, dtype=np.float32), matrix)


def test_it_is_written_chunk_by_chunk(studies, exported, tmp_path):
    st = open_study(studies["embedded"], create=False)
    seen: list[tuple[int, int]] = []
    done = export_embeddings(
        st,
        path=tmp_path / "small.parquet",
        chunk_rows=7,
        progress=lambda d, t, c: seen.append((d, t)),
    )
    meta = pq.read_metadata(done["path"])
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert meta.num_row_groups == done["chunks"] == math.ceil(meta.num_rows / 7) > 100
    assert max(sizes) == 7 and sum(sizes) == meta.num_rows
    assert len(seen) == done["chunks"] + 1 and seen[-1] == (meta.num_rows, meta.num_rows)
    assert pq.read_table(done["path"]).equals(pq.read_table(exported))


_PEAK = """
import sys, pyarrow as pa
from urbanvis.export import export_embeddings
from urbanvis.study import open_study
export_embeddings(open_study(sys.argv[1], create=False), path=sys.argv[2], chunk_rows=256)
print(pa.default_memory_pool().max_memory())
"""


def test_the_vectors_stream_through_a_bounded_amount_of_memory(tmp_path):
    """pyarrow's peak while exporting 40 MiB of vectors in 0.5 MiB chunks: a few chunks and
    the attributes (9 MiB measured), not the whole matrix (reading it all at once peaks at
    several times it; a dictionary tried on the vectors, at twice this)."""
    import subprocess
    import sys

    from urbanvis.vectors import LAYER, write_meta

    rows, dim, model = 20_000, 512, "random-init:vit_test_patch8:0"
    st = open_study(tmp_path / "big")
    rng = np.random.default_rng(0)
    ids = [f"c{i}" for i in range(rows)]
    frame = gpd.GeoDataFrame(
        {"capture_id": ids, "point_id": np.arange(rows), "model": model},
        geometry=gpd.points_from_xy(24.9 + rng.random(rows) / 10, 60.1 + rng.random(rows) / 10),
        crs=4326,
    )
    st.write_layer(LAYER, frame)
    write_meta(model_folder(st, model), {"model": model, "dim": dim})
    matrix = rng.standard_normal((rows, dim), dtype=np.float32)
    write_part(model_folder(st, model), 0, 0, ids, matrix)
    out = tmp_path / "big.parquet"
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(st.root), str(out)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    peak = int(done.stdout.split()[-1])
    assert peak < matrix.nbytes / 3, (peak, matrix.nbytes)
    back = read_embeddings_file(out)[1]
    assert np.array_equal(back, matrix)


def test_it_reads_unmerged_parts_and_keeps_the_last_copy_of_a_vector(studies, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(studies["embedded"], study)
    st = open_study(study, create=False)
    rows, before = read_embeddings(st)
    folder = model_folder(st, MODEL)
    write_part(folder, 0, 0, rows["capture_id"].tolist()[:5], before[:5] + 1.0)  # a killed merge
    write_part(folder, 0, 1, ["not-in-the-layer"], before[:1])
    rows, matrix = read_embeddings(st)
    assert np.array_equal(matrix[:5], before[:5] + 1.0)  # the reference keeps the last copy
    result = uv.export(study, out=tmp_path / "e.parquet")
    assert result.outputs["rows"] == len(rows) and result.files["geoparquet"].is_file()
    back_rows, back = read_embeddings_file(tmp_path / "e.parquet")
    assert np.array_equal(aligned(rows, back_rows, back), matrix)
    assert st.runs()[-1]["command"] == "export"


def test_a_stopped_export_writes_nothing(studies, tmp_path):
    out = tmp_path / "stopped.parquet"
    result = uv.export(studies["embedded"], out=out, should_stop=lambda: True)
    assert result.stopped and not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "args", "needles"),
    [
        ("harvested", [], ("no embeddings", "urbanvis embed")),
        ("embedded", ["--model", "nope"], ("--model 'nope'", MODEL)),
        ("embedded", ["--format", "csv"], ("--format",)),
        ("embedded", ["--out", "{tmp}/missing/e.parquet"], ("does not exist", "--out")),
        ("embedded", ["--out", "{tmp}/e.gpkg"], (".parquet", "--out")),
        ("embedded", ["--out", "{tmp}"], ("--out",)),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(studies, tmp_path, kind, args, needles):
    study = tmp_path / "study"
    shutil.copytree(studies[kind], study)
    before = tree(tmp_path), sorted(tmp_path.rglob("*"))  # files and their bytes, folders
    result = invoke("export", "--study", str(study), *[a.format(tmp=tmp_path) for a in args])
    assert_one_line_error(result, *needles)
    assert not result.stdout and (tree(tmp_path), sorted(tmp_path.rglob("*"))) == before


def test_read_embeddings_file_refuses_what_is_not_an_export(tmp_path):
    (tmp_path / "notes.parquet").write_text("hello\n")
    with pytest.raises(ValueError, match="cannot be read as Parquet"):
        read_embeddings(tmp_path / "notes.parquet")
    pq.write_table(pa.table({"capture_id": ["a"]}), tmp_path / "plain.parquet")
    with pytest.raises(ValueError, match="not an embeddings export"):
        read_embeddings(str(tmp_path / "plain.parquet"))
    with pytest.raises(ValueError, match="does not exist"):
        read_embeddings(tmp_path / "missing.parquet")
