"""The study folder: layout, layers through pyogrio, provenance, schema versions."""

from __future__ import annotations

import sqlite3
import tomllib

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from urbanvis._errors import InputError, SchemaVersionError, StudyError
from urbanvis.study import META_LAYER, SCHEMA_VERSION, check_writable, open_study


def test_open_creates_the_layout(tmp_path):
    study = open_study(tmp_path / "s")
    for sub in ("images", "pairs", "checkpoints", "reports"):
        assert (study.root / sub).is_dir()
    assert study.gpkg.exists()
    assert study.layers() == []  # the metadata table is not a data layer
    with sqlite3.connect(study.gpkg) as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        version = con.execute(f"SELECT value FROM {META_LAYER} WHERE key='schema_version'")
        assert version.fetchone()[0] == str(SCHEMA_VERSION)


def test_points_layer_round_trips_through_pyogrio(tmp_path, helsinki_points):
    study = open_study(tmp_path)
    study.write_layer("points", helsinki_points)
    back = pyogrio.read_dataframe(study.gpkg, layer="points")
    assert back.crs.to_epsg() == 4326
    assert list(back.columns) == list(helsinki_points.columns)
    assert back["point_id"].dtype == np.int64
    assert np.array_equal(back["point_id"], helsinki_points["point_id"])
    assert np.allclose(back["bearing"], helsinki_points["bearing"])
    assert (back.geometry.geom_equals_exact(helsinki_points.geometry, tolerance=1e-12)).all()
    info = pyogrio.read_info(study.gpkg, layer="points")
    assert info["geometry_type"] == "Point"
    assert info["features"] == len(helsinki_points)
    assert study.read_layer("points", columns=["point_id"]).shape == (len(helsinki_points), 2)


def test_write_replaces_and_appends(tmp_path, helsinki_points):
    study = open_study(tmp_path)
    study.write_layer("points", helsinki_points.iloc[:10])
    study.write_layer("points", helsinki_points.iloc[:5])
    assert len(study.read_layer("points")) == 5
    study.write_layer("points", helsinki_points.iloc[5:8], append=True)
    assert len(study.read_layer("points")) == 8


def test_reading_a_missing_layer_names_the_stage(tmp_path):
    study = open_study(tmp_path)
    with pytest.raises(InputError, match="no 'captures' layer"):
        study.read_layer("captures")


def test_layer_without_crs_is_refused(tmp_path, helsinki_points):
    study = open_study(tmp_path)
    with pytest.raises(InputError, match="no CRS"):
        study.write_layer("points", helsinki_points.set_crs(None, allow_override=True))


def test_provenance_records_runs_without_secrets(tmp_path):
    study = open_study(tmp_path)
    study.record_run(
        "sample",
        {
            "spacing": 15.0,
            "osm": tmp_path / "x.pbf",
            "api_key": "SECRET1",
            "signing_secret": "SECRET2",
            "city": None,
        },
        points=12,
    )
    study.record_run("sample", {"spacing": 30.0}, points=6)
    text = study.toml.read_text()
    assert "SECRET" not in text
    doc = tomllib.loads(text)
    assert doc["study"]["schema_version"] == SCHEMA_VERSION
    first, second = doc["runs"]
    assert first["command"] == "sample"
    assert first["parameters"] == {"spacing": 15.0, "osm": str(tmp_path / "x.pbf")}
    assert first["outputs"] == {"points": 12}
    assert {"python", "urbanvis", "geopandas", "shapely"} <= set(first["versions"])
    assert second["parameters"]["spacing"] == 30.0
    assert len(study.runs()) == 2


def test_newer_schema_is_refused(tmp_path):
    study = open_study(tmp_path)
    with sqlite3.connect(study.gpkg) as con:
        con.execute(
            f"UPDATE {META_LAYER} SET value='{SCHEMA_VERSION + 1}' WHERE key='schema_version'"
        )
    with pytest.raises(SchemaVersionError, match="upgrade urbanvis"):
        open_study(tmp_path)
    with pytest.raises(SchemaVersionError):
        check_writable(tmp_path)


def test_a_file_that_is_not_a_geopackage_is_refused(tmp_path):
    (tmp_path / "study.gpkg").write_text("not sqlite at all " * 100)
    with pytest.raises(StudyError, match="not a GeoPackage"):
        open_study(tmp_path)


def test_study_path_that_is_a_file(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(StudyError, match="is a file"):
        open_study(path)
    with pytest.raises(StudyError):
        check_writable(path / "below")


def test_unwritable_folder_is_reported_without_creating_anything(tmp_path):
    # /proc refuses new entries even to root, unlike a chmod'ed folder
    with pytest.raises(StudyError, match="not writable"):
        check_writable("/proc/urbanvis-study")
    with pytest.raises(StudyError, match="not writable"):
        open_study("/proc/urbanvis-study")


def test_open_without_create_needs_a_study(tmp_path):
    with pytest.raises(StudyError, match="not a study"):
        open_study(tmp_path, create=False)


WRITER = """
import sys
import geopandas as gpd, numpy as np, shapely
from urbanvis.study import open_study
n = int(sys.argv[2])
frame = gpd.GeoDataFrame({"value": np.arange(n)}, geometry=shapely.points(
    np.random.default_rng(0).random((n, 2))), crs=4326)
print("writing", flush=True)
open_study(sys.argv[1]).write_layer("points", frame)
print("done", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 1.5, 2.5, 3.5, 5.0])
def test_a_killed_layer_write_never_leaves_a_partial_layer(tmp_path, delay):
    import signal
    import subprocess
    import sys
    import time

    study = open_study(tmp_path)
    keep = gpd.GeoDataFrame({"value": [1, 2]}, geometry=shapely.points([(0, 0), (1, 1)]), crs=4326)
    study.write_layer("other", keep)
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), "1000"], check=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), "1500000"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with sqlite3.connect(study.gpkg) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # the untouched layer is intact; the replaced one is old, new or absent, never partial,
    # and its feature count (which QGIS shows) is right once the study is opened again
    study = open_study(tmp_path)
    assert len(pyogrio.read_dataframe(study.gpkg, layer="other")) == 2
    if "points" in study.layers():
        with sqlite3.connect(study.gpkg) as con:
            rows = con.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        con.close()
        assert rows in (1000, 1_500_000)
        assert pyogrio.read_info(study.gpkg, layer="points")["features"] in (1000, 1_500_000)


def test_a_hot_journal_left_by_a_kill_is_rolled_back_on_open(tmp_path):
    import subprocess
    import sys

    study = open_study(tmp_path)
    frame = gpd.GeoDataFrame({"v": [1]}, geometry=shapely.points([(0, 0)]), crs=4326)
    study.write_layer("points", frame)
    # a writer killed mid-transaction after SQLite spilled pages: a hot rollback journal
    writer = (
        "import sqlite3, sys, time\n"
        "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "con.execute('PRAGMA cache_size = 2')\n"
        "con.execute('BEGIN')\n"
        "con.execute('CREATE TABLE junk (x BLOB)')\n"
        "for _ in range(300):\n"
        "    con.execute('INSERT INTO junk VALUES (randomblob(4000))')\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", writer, str(study.gpkg)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    journal = study.gpkg.with_name("study.gpkg-journal")
    assert journal.exists()
    with pytest.raises(pyogrio.errors.DataSourceError, match="readonly"):
        pyogrio.read_dataframe(study.gpkg, layer="points")  # what GDAL alone would do
    again = open_study(tmp_path)
    assert not journal.exists()
    assert len(pyogrio.read_dataframe(again.gpkg, layer="points")) == 1
    assert "junk" not in {r[0] for r in pyogrio.list_layers(again.gpkg)}


def test_appending_a_frame_with_new_columns_adds_them(tmp_path):
    # a study written before a provider gained a column (distance_m, attribution) resumes
    study = open_study(tmp_path / "s")
    old = gpd.GeoDataFrame({"capture_id": ["a"]}, geometry=gpd.points_from_xy([1.0], [2.0]),
                           crs="EPSG:4326")  # fmt: skip
    study.write_layer("captures", old)
    new = gpd.GeoDataFrame(
        {"capture_id": ["b"], "distance_m": [3.25], "attribution": ["© x"], "n": [np.int64(4)]},
        geometry=gpd.points_from_xy([5.0], [6.0]),
        crs="EPSG:4326",
    )
    study.write_layer("captures", new, append=True)
    back = study.read_layer("captures")
    assert list(back["capture_id"]) == ["a", "b"]
    assert np.isnan(back["distance_m"][0]) and back["distance_m"][1] == 3.25
    assert back["attribution"][1] == "© x" and back["n"][1] == 4
    study.write_layer("captures", old, append=True)  # and a frame without them still appends
    assert len(study.read_layer("captures")) == 3


def test_layers_go_through_arrow_and_fall_back_when_arrow_cannot_convert(tmp_path, monkeypatch):
    import pandas as pd

    from urbanvis import study as study_module

    if not study_module._arrow_io():
        pytest.skip("this pyogrio/GDAL cannot write Arrow batches (GDAL < 3.8)")
    calls = []
    real = pyogrio.write_dataframe

    def spy(*args, **kwargs):
        calls.append(kwargs.get("use_arrow", False))
        return real(*args, **kwargs)

    study = open_study(tmp_path)
    monkeypatch.setattr(pyogrio, "write_dataframe", spy)
    points = shapely.points([(0, 0), (1, 1), (2, 2)])
    plain = gpd.GeoDataFrame({"value": [1, 2, 3]}, geometry=points, crs=4326)
    study.write_layer("plain", plain)
    assert calls == [True]
    text = pd.Series(["a", None, "c"], dtype=object)
    labels = pd.Categorical(["x", "y", "x"])
    plain_text = gpd.GeoDataFrame({"t": text, "c": labels}, geometry=points, crs=4326)
    study.write_layer("text", plain_text)
    assert calls == [True, True]
    # Arrow would split a column of dicts into a column per key: written the other way
    dicts = pd.Series([{"a": 1}, {"b": 2}, {"c": 3}], dtype=object)
    study.write_layer("dicts", gpd.GeoDataFrame({"d": dicts}, geometry=points, crs=4326))
    assert calls == [True, True, False]
    assert study.read_layer("dicts")["d"].tolist() == ["{'a': 1}", "{'b': 2}", "{'c': 3}"]
    mixed = pd.Series([1, "a", 2.5], dtype=object)
    study.write_layer("mixed", gpd.GeoDataFrame({"m": mixed}, geometry=points, crs=4326))
    assert calls == [True, True, False, False]
    assert study.read_layer("mixed")["m"].tolist() == ["1", "a", "2.5"]
    back = study.read_layer("text")
    assert back["t"].tolist()[::2] == ["a", "c"] and pd.isna(back["t"][1])
    assert back["c"].tolist() == ["x", "y", "x"]
    back = study.read_layer("plain")
    assert back["value"].tolist() == [1, 2, 3] and back.crs.to_epsg() == 4326
