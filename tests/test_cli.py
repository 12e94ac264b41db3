"""The command line as a user runs it: success paths, --help, and every bad input.

Bad input must give one line on stderr naming the fix, exit code 2, and write nothing.
"""

from __future__ import annotations

import hashlib
import sqlite3
import textwrap
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from urbanvis.demo import helsinki_pbf
from urbanvis.study import META_LAYER

from .conftest import invoke, run_cli
from .data import osm
from .data.osm import lonlat


def assert_one_line_error(result, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.lower().startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr  # log lines may precede
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle.lower() in errors[0].lower(), (needle, errors[0])
    return errors[0]


def tree(path: Path) -> dict[str, str]:
    """Every file under path with its sha256, to prove nothing was written."""
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------- success
def test_sample_osm_xml_into_a_study(tmp_path, town_osm):
    study = tmp_path / "town"
    result = run_cli("sample", "--study", str(study), "--osm", str(town_osm))
    assert result.returncode == 0, result.stderr
    assert "points" in result.stdout
    points = pyogrio.read_dataframe(study / "study.gpkg", layer="points")
    assert points.crs.to_epsg() == 4326
    assert len(points) == 50  # see tests/data/osm.py: 21 + 7 + 11 + 11
    assert "sampled 50 points" in result.stderr
    doc = (study / "study.toml").read_text()
    assert 'command = "sample"' in doc and "spacing = 15.0" in doc


def test_sample_pbf_clipped_to_bbox(tmp_path):
    study = tmp_path / "hel"
    bbox = (24.935, 60.160, 24.950, 60.170)
    result = run_cli(
        "sample",
        "--study",
        str(study),
        "--osm",
        str(helsinki_pbf()),
        "--bbox",
        ",".join(map(str, bbox)),
    )
    assert result.returncode == 0, result.stderr
    points = pyogrio.read_dataframe(study / "study.gpkg", layer="points")
    assert 50 < len(points) < 1697
    assert shapely.covers(shapely.box(*bbox).buffer(1e-7), points.geometry.values).all()


def test_sample_clipped_to_a_polygon_file_in_another_crs(tmp_path, town_osm):
    # a polygon around Main Street only, stored in UTM metres
    area = gpd.GeoDataFrame(
        geometry=[
            shapely.box(
                osm.ORIGIN_UTM[0] - 5,
                osm.ORIGIN_UTM[1] - 10,
                osm.ORIGIN_UTM[0] + 305,
                osm.ORIGIN_UTM[1] + 10,
            )
        ],
        crs=osm.UTM,
    )
    area.to_file(tmp_path / "area.gpkg")
    result = run_cli(
        "sample",
        "--study",
        str(tmp_path / "s"),
        "--osm",
        str(town_osm),
        "--area",
        str(tmp_path / "area.gpkg"),
    )
    assert result.returncode == 0, result.stderr
    points = pyogrio.read_dataframe(tmp_path / "s" / "study.gpkg", layer="points")
    # Main Street 0..300 m (21 points) and North Road cut at the area's edge, 10 m north
    assert len(points) == 22
    assert set(points["highway"]) == {"residential"}
    cut = points.to_crs(osm.UTM).geometry
    assert np.isclose(cut.y.max() - osm.ORIGIN_UTM[1], 10.0, atol=0.01)


def test_sample_graphml(tmp_path, town_osm):
    import osmnx as ox

    from urbanvis.network import _filter_osm_xml, highway_filter

    filtered, _, _ = _filter_osm_xml(town_osm, highway_filter("drive"))
    graph = ox.graph_from_xml(filtered, simplify=True, retain_all=True)
    Path(filtered).unlink()
    ox.save_graphml(graph, tmp_path / "town.graphml")
    result = run_cli(
        "sample", "--study", str(tmp_path / "g"), "--osm", str(tmp_path / "town.graphml")
    )
    assert result.returncode == 0, result.stderr
    points = pyogrio.read_dataframe(tmp_path / "g" / "study.gpkg", layer="points")
    assert len(points) == 50


def test_walk_network_includes_footways(tmp_path, town_osm):
    result = run_cli(
        "sample", "--study", str(tmp_path / "w"), "--osm", str(town_osm), "--network", "walk"
    )
    assert result.returncode == 0, result.stderr
    points = pyogrio.read_dataframe(tmp_path / "w" / "study.gpkg", layer="points")
    assert "footway" in set(points["highway"])


def test_grid_method(tmp_path):
    result = run_cli(
        "sample",
        "--study",
        str(tmp_path / "grid"),
        "--method",
        "grid",
        "--spacing",
        "50",
        "--bbox",
        "24.93,60.16,24.94,60.165",
    )
    assert result.returncode == 0, result.stderr
    points = pyogrio.read_dataframe(tmp_path / "grid" / "study.gpkg", layer="points")
    assert (points["source"] == "grid").all() and 100 < len(points) < 150  # ~555 m x 556 m


@pytest.mark.slow
def test_demo_never_touches_the_network(tmp_path):
    # every socket connection in the demo process raises: the demo must not need one
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import socket
        _connect = socket.socket.connect
        def _refuse(*args, **kwargs):
            raise OSError("network used by the demo")
        def _local_only(self, address):
            # Unix sockets (DataLoader workers share tensors through them) are not network
            if self.family in (socket.AF_INET, socket.AF_INET6):
                _refuse()
            return _connect(self, address)
        socket.socket.connect = _local_only
        socket.create_connection = _refuse
        socket.getaddrinfo = _refuse
    """)
    )
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("urbanvis")
    env = dict(os.environ, PYTHONPATH=str(guard))
    out = tmp_path / "demo"
    cmd = [str(exe), "demo", "--out", str(out), "--limit", "30", "--workers", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "layer points: 1,697 features" in result.stdout
    assert "layer captures: 120 features" in result.stdout  # 30 points x 2 dates x 2 headings
    assert "layer zones_sim:" in result.stdout
    # the learning chain: pairs -> pretraining -> embeddings -> predicted zone indicators
    assert "layer embeddings: 240 features" in result.stdout  # pretrained + random init
    assert "| topic | indicator | pretrained (2 epochs) | random init |" in result.stdout
    assert "| Transport | public_transit |" in result.stdout
    assert (out / "checkpoints" / "demo-temporal-vit_mini_patch16").is_dir()
    points = pyogrio.read_dataframe(out / "study.gpkg", layer="points")
    assert len(points) == 1697
    for name in (
        "study.toml",
        "reports/contact_sheet.png",
        "reports/map_captures.html",
        "reports/map_zones.html",
        "reports/predict_blockgroup.md",
        "pairs/temporal.parquet",
        "truth/indicators.csv",
        "truth/safety_scores.csv",
        "truth/safety_votes.csv",
    ):
        assert (out / name).exists(), name
    # rerunning resumes: 30 more points, nothing redone
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "layer captures: 240 features" in again.stdout
    assert "layer embeddings: 480 features" in again.stdout  # 240 captures x 2 models


def test_help_teaches():
    result = invoke("--help")
    assert result.returncode == 0
    assert "sample" in result.stdout and "demo" in result.stdout
    result = invoke("sample", "--help")
    assert result.returncode == 0
    for option in (
        "--city",
        "--area",
        "--bbox",
        "--osm",
        "--network",
        "--spacing",
        "--method",
        "Examples",
    ):
        assert option in result.stdout


def test_version():
    result = invoke("--version")
    assert result.returncode == 0 and "urbanvis" in result.stdout


# ----------------------------------------------------------------- bad input
def test_bbox_west_not_less_than_east(tmp_path):
    result = invoke("sample", "--study", str(tmp_path / "s"), "--bbox", "25,60,24,61")
    assert_one_line_error(result, "west", "W,S,E,N")
    assert not (tmp_path / "s").exists()


def test_bbox_not_numbers(tmp_path):
    result = invoke("sample", "--study", str(tmp_path / "s"), "--bbox", "a,b,c,d")
    assert_one_line_error(result, "W,S,E,N")


@pytest.mark.parametrize("spacing", ["0", "-15"])
def test_spacing_not_positive(tmp_path, town_osm, spacing):
    result = invoke(
        "sample", "--study", str(tmp_path / "s"), "--osm", str(town_osm), "--spacing", spacing
    )
    assert_one_line_error(result, "spacing", "--spacing")
    assert not (tmp_path / "s").exists()


def test_osm_file_missing(tmp_path):
    result = invoke(
        "sample", "--study", str(tmp_path / "s"), "--osm", str(tmp_path / "nope.osm.pbf")
    )
    assert_one_line_error(result, "does not exist", "--osm")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", ["empty.osm.pbf", "empty.osm", "empty.graphml"])
def test_osm_file_empty(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    result = invoke("sample", "--study", str(tmp_path / "s"), "--osm", str(tmp_path / name))
    assert_one_line_error(result, "empty")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", ["junk.osm.pbf", "junk.osm", "junk.graphml"])
def test_osm_file_corrupt(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(1).bytes(4096))
    result = invoke("sample", "--study", str(tmp_path / "s"), "--osm", str(tmp_path / name))
    assert_one_line_error(
        result, "cannot read" if "pbf" in name or "graphml" in name else "not valid"
    )
    assert not (tmp_path / "s").exists()


def test_osm_file_unknown_extension(tmp_path):
    (tmp_path / "roads.shp").write_bytes(b"x")
    result = invoke("sample", "--study", str(tmp_path / "s"), "--osm", str(tmp_path / "roads.shp"))
    assert_one_line_error(result, ".osm.pbf")


def test_osm_file_without_drivable_roads(tmp_path):
    path = osm.footpaths_only(tmp_path / "paths.osm")
    result = invoke("sample", "--study", str(tmp_path / "s"), "--osm", str(path))
    assert_one_line_error(result, "no drive roads", "--network all")
    assert not (tmp_path / "s").exists()


def test_area_outside_the_osm_file(tmp_path, town_osm):
    result = invoke(
        "sample",
        "--study",
        str(tmp_path / "s"),
        "--osm",
        str(town_osm),
        "--bbox",
        "10,50,10.01,50.01",
    )
    assert_one_line_error(result, "inside the area")


def test_area_file_without_polygons(tmp_path, town_osm):
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(lonlat(0, 0))], crs=4326)
    pts.to_file(tmp_path / "points.geojson")
    result = invoke(
        "sample",
        "--study",
        str(tmp_path / "s"),
        "--osm",
        str(town_osm),
        "--area",
        str(tmp_path / "points.geojson"),
    )
    assert_one_line_error(result, "no polygons", "Point")
    assert not (tmp_path / "s").exists()


@pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning")
def test_area_file_without_crs(tmp_path, town_osm):
    poly = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs=None)
    poly.to_file(tmp_path / "nocrs.shp")
    assert not (tmp_path / "nocrs.prj").exists()
    result = invoke(
        "sample",
        "--study",
        str(tmp_path / "s"),
        "--osm",
        str(town_osm),
        "--area",
        str(tmp_path / "nocrs.shp"),
    )
    assert_one_line_error(result, "no CRS", ".prj")
    assert not (tmp_path / "s").exists()


def test_area_file_missing(tmp_path, town_osm):
    result = invoke(
        "sample",
        "--study",
        str(tmp_path / "s"),
        "--osm",
        str(town_osm),
        "--area",
        str(tmp_path / "nope.gpkg"),
    )
    assert_one_line_error(result, "does not exist", "--area")


def test_no_area_given(tmp_path):
    result = invoke("sample", "--study", str(tmp_path / "s"))
    assert_one_line_error(result, "--city", "--osm")


def test_two_areas_given(tmp_path):
    result = invoke(
        "sample", "--study", str(tmp_path / "s"), "--city", "Helsinki", "--bbox", "24,60,25,61"
    )
    assert_one_line_error(result, "only one")


def test_unknown_network_is_a_usage_error(tmp_path, town_osm):
    result = invoke(
        "sample", "--study", str(tmp_path / "s"), "--osm", str(town_osm), "--network", "boat"
    )
    assert result.returncode == 2
    assert "drive" in result.stderr and "Traceback" not in result.stderr


def test_study_folder_not_writable(town_osm):
    result = invoke("sample", "--study", "/proc/urbanvis-study", "--osm", str(town_osm))
    assert_one_line_error(result, "not writable", "--study")


def test_study_from_a_newer_schema_is_left_untouched(tmp_path, town_osm):
    study = tmp_path / "s"
    assert invoke("sample", "--study", str(study), "--osm", str(town_osm)).returncode == 0
    with sqlite3.connect(study / "study.gpkg") as con:
        con.execute(f"UPDATE {META_LAYER} SET value='99' WHERE key='schema_version'")
    con.close()
    before = tree(study)
    result = invoke("sample", "--study", str(study), "--osm", str(town_osm))
    assert_one_line_error(result, "schema 99", "upgrade")
    assert tree(study) == before


def test_failed_run_leaves_an_existing_study_untouched(tmp_path, town_osm):
    study = tmp_path / "s"
    assert invoke("sample", "--study", str(study), "--osm", str(town_osm)).returncode == 0
    before = tree(study)
    result = invoke("sample", "--study", str(study), "--osm", str(town_osm), "--spacing", "0")
    assert result.returncode == 2
    assert tree(study) == before


def test_verbose_shows_the_traceback(tmp_path):
    result = invoke("--verbose", "sample", "--study", str(tmp_path / "s"), "--bbox", "25,60,24,61")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: bbox west")


def test_missing_osm_file_is_reported_before_any_geocoding(tmp_path):
    # with --city the place would be geocoded first; a typo in --osm must not cost that
    result = invoke(
        "sample",
        "--study",
        str(tmp_path / "s"),
        "--city",
        "Helsinki",
        "--osm",
        str(tmp_path / "typo.osm.pbf"),
        "--nominatim-url",
        "http://127.0.0.1:9/",
    )
    assert_one_line_error(result, "does not exist", "--osm")


def test_sampling_is_the_same_under_any_hash_seed(tmp_path, town_osm):
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("urbanvis")
    layers = []
    for seed in ("1", "2"):
        study = tmp_path / f"s{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run(
            [str(exe), "sample", "--study", str(study), "--osm", str(town_osm)],
            check=True,
            capture_output=True,
            env=env,
        )
        layers.append(pyogrio.read_dataframe(study / "study.gpkg", layer="points"))
    assert layers[0].drop(columns="geometry").equals(layers[1].drop(columns="geometry"))
    assert layers[0].geometry.geom_equals_exact(layers[1].geometry, 0).all()
