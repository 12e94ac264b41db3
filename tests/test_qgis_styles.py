"""QGIS styles stored in a study's GeoPackage (no QGIS needed: SQLite and QML text)."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import pyogrio
from shapely.geometry import Point, box

from urbanvis.qgis_styles import quantile_breaks, style_study


def _styles(gpkg):
    with sqlite3.connect(gpkg) as con:
        return con.execute(
            "SELECT f_table_name, f_geometry_column, styleName, styleQML, useAsDefault "
            "FROM layer_styles ORDER BY id"
        ).fetchall()


def test_quantile_breaks_match_numpy_quantiles():
    values = list(np.random.default_rng(0).normal(size=101))
    expected = np.quantile(values, np.linspace(0, 1, 6), method="nearest")
    assert np.allclose(quantile_breaks(values), expected)
    assert quantile_breaks([3.0, 3.0]) == [3.0, 3.0]
    assert quantile_breaks([]) == []


def test_predictions_get_a_default_graduated_style_per_indicator(tmp_path):
    gpkg = tmp_path / "study.gpkg"
    zones = gpd.GeoDataFrame(
        {
            "zone_id": [str(i) for i in range(10)],
            "income": np.arange(10.0),
            "income_pred": np.full(10, 5.0),  # a constant prediction: one class
            "crime_pred": np.arange(10.0) ** 2,
        },
        geometry=[box(i, 0, i + 1, 1) for i in range(10)],
        crs=4326,
    )
    pyogrio.write_dataframe(zones, gpkg, layer="predictions_blockgroup")
    captures = gpd.GeoDataFrame(
        {"captured_at": ["2015-06", "2019-01", "2019-05", "2024-12"]},
        geometry=[Point(0, 0)] * 4,
        crs=4326,
    )
    pyogrio.write_dataframe(captures, gpkg, layer="captures")
    assert style_study(gpkg) == ["captures", "predictions_blockgroup"]
    style_study(gpkg)  # rerunning replaces, never duplicates
    rows = _styles(gpkg)
    names = [(r[0], r[2]) for r in rows]
    assert len(names) == len(set(names))
    defaults = {r[0]: r for r in rows if r[4]}
    assert set(defaults) == {"captures", "predictions_blockgroup"}
    pred = defaults["predictions_blockgroup"]
    assert pred[1] == "geom" and pred[2] == "crime_pred"  # the first varying prediction
    renderer = ET.fromstring(pred[3].split("\n", 1)[1]).find("renderer-v2")
    assert renderer.get("type") == "graduatedSymbol" and renderer.get("attr") == "crime_pred"
    assert len(renderer.find("ranges")) == len(renderer.find("symbols")) == 5
    cap = ET.fromstring(defaults["captures"][3].split("\n", 1)[1]).find("renderer-v2")
    labels = [r.get("label") for r in cap.find("ranges")]
    assert labels == [str(y) for y in range(2015, 2025)]
    assert "layer_styles" in pyogrio.list_layers(gpkg)[:, 0]


def test_the_style_table_is_not_a_study_layer(tmp_path):
    from urbanvis.study import open_study

    st = open_study(tmp_path / "s", create=True)
    st.write_layer("points", gpd.GeoDataFrame(geometry=[Point(0, 0)], crs=4326))
    style_study(st.gpkg)
    assert st.layers() == ["points"]
