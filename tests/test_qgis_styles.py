"""QGIS styles stored in a study's GeoPackage (no QGIS needed: SQLite and QML text)."""

from __future__ import annotations

import re
import sqlite3
import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import pyogrio
from shapely.geometry import Point, box

from urbanvis.qgis_styles import DIVERGING, quantile_breaks, style_study, symmetric_breaks


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


def test_symmetric_breaks_centre_on_zero():
    assert symmetric_breaks([-0.5, 3.0, None, float("nan")]) == [
        -3.0,
        -2.0,
        -1.0,
        0.0,
        1.0,
        2.0,
        3.0,
    ]
    assert symmetric_breaks([0.0, 0.0], classes=2) == [-1.0, 0.0, 1.0]
    assert symmetric_breaks([]) == []


def _renderer(qml):
    return ET.fromstring(qml.split("\n", 1)[1]).find("renderer-v2")


def _bounds(renderer):
    return [(float(r.get("lower")), float(r.get("upper"))) for r in renderer.find("ranges")]


def _colours(renderer):
    found = []
    for symbol in renderer.find("symbols"):
        prop = symbol.find("layer").find("prop[@k='color']")
        found.append(prop.get("v").rsplit(",", 1)[0])
    return found


def test_predictions_get_the_observed_predicted_residual_trio(tmp_path):
    gpkg = tmp_path / "study.gpkg"
    rng = np.random.default_rng(1)
    crime = rng.normal(size=10)
    zones = gpd.GeoDataFrame(
        {
            "zone_id": [str(i) for i in range(10)],
            "income": np.arange(10.0),
            "income_pred": np.full(10, 5.0),  # a constant prediction: one class
            "crime": crime,
            "crime_pred": crime + rng.normal(scale=0.5, size=10),
            "noise_pred": np.arange(10.0),  # predict --apply: no observed column
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
    styles = {r[2]: r for r in rows if r[0] == "predictions_blockgroup"}
    assert set(styles) == {
        "income predicted", "income observed", "income residual",
        "crime predicted", "crime observed", "crime residual", "noise predicted",
    }  # fmt: skip
    defaults = {r[0]: r for r in rows if r[4]}
    assert set(defaults) == {"captures", "predictions_blockgroup"}
    pred = defaults["predictions_blockgroup"]
    assert pred[1] == "geom" and pred[2] == "crime predicted"  # the first varying prediction
    renderer = _renderer(pred[3])
    assert renderer.get("type") == "graduatedSymbol" and renderer.get("attr") == "crime_pred"
    assert len(renderer.find("ranges")) == len(renderer.find("symbols")) == 5
    # observed on the prediction's classes: one colour means one value in both maps
    observed = _renderer(styles["crime observed"][3])
    assert observed.get("attr") == "crime" and _bounds(observed) == _bounds(renderer)
    both = np.concatenate([zones["crime"], zones["crime_pred"]])
    assert _bounds(renderer)[0][0] == both.min() and _bounds(renderer)[-1][1] == both.max()
    # residual = observed - predicted on a diverging ramp centred on 0, covering every zone
    residual = _renderer(styles["crime residual"][3])
    assert residual.get("attr") == '"crime" - "crime_pred"'
    bounds = _bounds(residual)
    edges = [lo for lo, _ in bounds] + [bounds[-1][1]]
    r = zones["crime"] - zones["crime_pred"]
    assert np.isclose(edges[0], -np.abs(r).max()) and np.isclose(edges[-1], np.abs(r).max())
    assert 0.0 in edges and np.allclose(edges, -np.array(edges[::-1]))
    assert _colours(residual) == list(DIVERGING)
    assert _colours(residual)[0].startswith("33,") and _colours(residual)[-1].startswith("178,")
    cap = _renderer(defaults["captures"][3])
    labels = [r.get("label") for r in cap.find("ranges")]
    assert labels == [str(y) for y in range(2015, 2025)]
    assert "layer_styles" in pyogrio.list_layers(gpkg)[:, 0]


def test_embeddings_are_coloured_by_pc1_pc2_pc3(tmp_path):
    """Per model, each pc stretched from its 2nd to its 98th percentile (numpy's) to 0-255."""
    gpkg = tmp_path / "study.gpkg"
    rng = np.random.default_rng(0)
    n = 37
    frame = gpd.GeoDataFrame(
        {
            "capture_id": [str(i) for i in range(2 * n)],
            "model": ["vit_test_patch8@abc"] * n + ["random-init:vit_test_patch8:0"] * n,
            "pc1": np.r_[rng.normal(size=n), 100 + rng.normal(size=n)],
            "pc2": np.r_[rng.normal(size=n), rng.normal(scale=1e-4, size=n)],
            "pc3": np.r_[rng.normal(size=n), np.full(n, 3.0)],  # constant: a span of 1
        },
        geometry=[Point(i, 0) for i in range(2 * n)],
        crs=4326,
    )
    pyogrio.write_dataframe(frame, gpkg, layer="embeddings")
    assert style_study(gpkg, layers=["embeddings"]) == ["embeddings"]
    (row,) = _styles(gpkg)
    assert row[2] == "pc1-pc3 as RGB" and row[4]
    renderer = _renderer(row[3])
    assert renderer.get("type") == "singleSymbol"
    layer = renderer.find("symbols/symbol/layer")
    assert layer.get("class") == "SimpleMarker"
    fill = layer.find(".//Option[@name='fillColor']")
    assert fill.find("Option[@name='active']").get("value") == "true"
    expression = fill.find("Option[@name='expression']").get("value")
    assert expression.startswith("color_rgb(CASE WHEN ")
    red, green, blue = expression.removeprefix("color_rgb(").removesuffix(")").split(", CASE")
    for column, channel in zip(("pc1", "pc2", "pc3"), (red, green, blue), strict=True):
        for model, rows in frame.groupby("model"):
            found = re.search(
                rf"\"model\" = '{re.escape(model)}' THEN scale_linear\(\"{column}\", "
                rf"([-+.e0-9]+), ([-+.e0-9]+), 0, 255\)",
                channel,
            )
            assert found, (column, model, channel)
            low, high = np.percentile(rows[column], [2, 98])
            assert np.isclose(float(found.group(1)), low, rtol=1e-9)
            assert np.isclose(float(found.group(2)), low + ((high - low) or 1.0), rtol=1e-9)
            assert "e" in found.group(1) and "." in found.group(1)  # QGIS's number literal


def test_restyling_replaces_only_urbanvis_styles(tmp_path):
    gpkg = tmp_path / "study.gpkg"
    frame = gpd.GeoDataFrame(
        {"x": np.arange(5.0), "x_pred": np.arange(5.0) + 1}, geometry=[box(0, 0, 1, 1)] * 5
    ).set_crs(4326)
    pyogrio.write_dataframe(frame, gpkg, layer="predictions_hex")
    style_study(gpkg)
    with sqlite3.connect(gpkg) as con:  # a stale urbanvis style and one a user saved
        con.execute(
            "INSERT INTO layer_styles (f_table_name, styleName, styleQML, useAsDefault, owner) "
            "VALUES ('predictions_hex', 'gone_pred', '', 0, 'urbanvis'), "
            "('predictions_hex', 'mine', '<qgis/>', 0, 'me')"
        )
    style_study(gpkg, layers=["predictions_hex", "points"])
    names = sorted(r[2] for r in _styles(gpkg))
    assert names == ["mine", "x observed", "x predicted", "x residual"]


def test_the_style_table_is_not_a_study_layer(tmp_path):
    from urbanvis.study import open_study

    st = open_study(tmp_path / "s", create=True)
    st.write_layer("points", gpd.GeoDataFrame(geometry=[Point(0, 0)], crs=4326))
    style_study(st.gpkg)
    assert st.layers() == ["points"]
