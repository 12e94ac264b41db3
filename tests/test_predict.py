"""Zones, mean zone embeddings and indicator prediction (issue 6, deliverables 2-4)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from urbanvis._errors import CRSError, InputError, InputFileError
from urbanvis.indicators import PAPER_TOPICS, resolve_topics, topics_table
from urbanvis.predict import _with_topics, predict_indicators, scores_markdown
from urbanvis.zones import zone_embeddings, zones_from_file, zones_from_grid

from .conftest import make_town_study, run_cli
from .data import osm
from .test_cli import assert_one_line_error, tree

libpysal_examples = pytest.importorskip("libpysal.examples")

_RUN_PREDICT = (
    "from urbanvis_cli.main import cli, main; from urbanvis_cli.predict import predict; "
    "cli.add_command(predict); main()"
)


def run_predict(*args: str) -> subprocess.CompletedProcess:
    """``urbanvis predict ...`` through the real entry point's error handling."""
    return subprocess.run(
        [sys.executable, "-c", _RUN_PREDICT, "predict", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


# ------------------------------------------------------------------ synthetic zones
def synthetic_zones(seed: int, n_zones: int = 240, dim: int = 48, latent: int = 6):
    """Zones whose mean embeddings lie near a low-dimensional subspace, with indicators."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_zones, latent))
    features = z @ rng.normal(size=(latent, dim)) + 0.05 * rng.normal(size=(n_zones, dim))
    w = rng.normal(size=dim)
    linear = features @ w
    frame = gpd.GeoDataFrame(
        {
            "GEOID": [f"{i:012d}" for i in range(n_zones)],
            "logcrime": linear + 0.02 * linear.std() * rng.normal(size=n_zones),
            "noise": rng.normal(size=n_zones),
        },
        geometry=shapely.buffer(shapely.points(rng.uniform(0, 1, (n_zones, 2))), 0.01),
        crs="EPSG:4326",
    )
    return frame, features.astype(np.float32)


@pytest.mark.parametrize("protocol", ["holdout", "kfold5"])
def test_linear_indicator_is_learnt_and_noise_is_not(protocol):
    frame, features = synthetic_zones(0)
    preds, scores, models = predict_indicators(
        frame, features, ["logcrime", "noise"], id_field="GEOID", protocol=protocol, seed=3
    )
    r2 = scores.set_index("indicator")["r2"]
    assert r2["logcrime"] > 0.9
    assert r2["noise"] <= 0.05
    assert set(models) == {"logcrime", "noise"}
    assert scores.loc[scores["indicator"] == "", "topic"].tolist() == ["Crime", "Other"]
    assert np.isfinite(preds[["logcrime_pred", "noise_pred"]].to_numpy()).all()
    if protocol == "holdout":
        assert preds["split"].value_counts().to_dict() == {"train": 168, "test": 72}
    else:
        assert sorted(preds["split"].unique()) == ["0", "1", "2", "3", "4"]
    assert "| Crime | logcrime |" in scores_markdown(scores)


def test_no_leakage_scaler_and_pca_see_training_rows_only(monkeypatch):
    """Scaler/PCA fit on training rows only: a held-out row's extreme values change nothing."""
    frame, features = synthetic_zones(1, n_zones=60)
    base, _, _ = predict_indicators(frame, features, ["logcrime"], id_field="GEOID", seed=0)
    test = np.flatnonzero(base["split"] == "test")
    changed = features.copy()
    changed[test[0]] *= 1000.0  # an outlier in a held-out zone
    other, _, _ = predict_indicators(frame, changed, ["logcrime"], id_field="GEOID", seed=0)
    keep = base["split"].to_numpy() == "train"
    np.testing.assert_allclose(
        other["logcrime_pred"].to_numpy()[keep], base["logcrime_pred"].to_numpy()[keep]
    )


def test_flagged_and_imageless_zones_are_kept_but_not_scored():
    frame, features = synthetic_zones(2, n_zones=80)
    features[:5] = np.nan
    frame["flagged"] = np.arange(80) < 10
    preds, scores, _ = predict_indicators(frame, features, ["logcrime"], id_field="GEOID")
    assert len(preds) == 80
    assert (preds["split"].iloc[:5] == "no-images").all()
    assert (preds["split"].iloc[5:10] == "flagged").all()
    assert preds["logcrime_pred"].iloc[:5].isna().all()
    assert preds["logcrime_pred"].iloc[5:].notna().all()
    assert int(scores.iloc[0]["n_train"]) + int(scores.iloc[0]["n_test"]) == 70


def test_paper_topics_hold_its_18_indicators():
    assert sum(len(v) for v in PAPER_TOPICS.values()) == 18


def test_topics_are_data_given_beside_the_indicators_or_the_papers(tmp_path):
    from urbanvis.simulate.groundtruth import INDICATORS, TOPICS

    indicators = tmp_path / "indicators.csv"
    indicators.write_text("zone_id,logcrime\nZ1,1\n")
    assert resolve_topics(None, indicators) == PAPER_TOPICS  # nothing beside it
    assert resolve_topics(None, "acs:median_income") == PAPER_TOPICS
    topics_table(TOPICS).to_csv(tmp_path / "topics.csv", index=False)
    beside = resolve_topics(None, indicators)
    assert beside == TOPICS
    assert resolve_topics({"A": ["x", "y"]}, indicators) == {"A": ("x", "y")}
    assert resolve_topics(tmp_path / "topics.csv") == TOPICS

    # the simulated city's R² table groups as it did when predict merged its topics in
    old = {k: tuple(v) for k, v in PAPER_TOPICS.items()}
    for topic, names in TOPICS.items():
        old[topic] = tuple(dict.fromkeys((*old.get(topic, ()), *names)))
    rng = np.random.default_rng(0)
    scores = pd.DataFrame({"indicator": list(INDICATORS), "n_train": 8, "n_test": 2,
                           "r2": rng.uniform(size=len(INDICATORS))})  # fmt: skip
    pd.testing.assert_frame_equal(_with_topics(scores, beside), _with_topics(scores, old))


# ---------------------------------------------------------------- real polygons
LIBPYSAL = {"columbus": ("columbus.shp", "POLYID", "EPSG:4326"),
            "georgia": ("G_utm.shp", "AreaKey", "EPSG:32617")}  # fmt: skip


def points_inside(polys: gpd.GeoDataFrame, per_zone: int, seed: int) -> gpd.GeoDataFrame:
    pts = polys.sample_points(per_zone, rng=seed).explode(index_parts=False)
    return gpd.GeoDataFrame(geometry=pts.to_numpy(), crs=polys.crs)


@pytest.mark.parametrize("name", sorted(LIBPYSAL))
def test_mean_vectors_equal_a_naive_loop_on_real_polygons(tmp_path, name):
    file, id_field, crs = LIBPYSAL[name]
    raw = pyogrio.read_dataframe(libpysal_examples.get_path(file)).set_crs(crs)
    path = tmp_path / f"{name}.gpkg"
    pyogrio.write_dataframe(raw, path)
    zones = zones_from_file(path, id_field)
    assert zones.crs == "EPSG:4326" and len(zones) == len(raw)
    rng = np.random.default_rng(0)
    pts = points_inside(raw, 6, seed=1).to_crs(3857)  # another CRS than the zones'
    pts = pd.concat([pts, gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)], crs=3857)])
    vectors = rng.normal(size=(len(pts), 5)).astype(np.float32)
    vectors[: len(pts) // 3] += 100.0  # means that are not near zero
    frame, means = zone_embeddings(pts, vectors, zones, id_field=id_field, min_images=7)

    # naive reference: one zone at a time, in the zones' own CRS, first zone wins
    polys = raw.to_crs(3857).geometry.to_list()
    owner = np.full(len(pts), -1)
    for i, p in enumerate(pts.geometry):
        for j, poly in enumerate(polys):
            if poly.intersects(p):
                owner[i] = j
                break
    for j in range(len(polys)):
        members = vectors[owner == j]
        assert frame["n_images"].iloc[j] == len(members)
        if len(members):
            np.testing.assert_allclose(means[j], members.mean(axis=0), rtol=1e-5, atol=1e-4)
        else:
            assert np.isnan(means[j]).all()
    assert frame["flagged"].tolist() == (frame["n_images"] < 7).tolist()
    assert frame[id_field].tolist() == zones[id_field].tolist()


def test_zone_errors_name_the_id_parameter_by_keyword(tmp_path):
    path = tmp_path / "z.gpkg"
    zones = gpd.GeoDataFrame({"GEOID": ["a", "a"]}, geometry=[shapely.box(0, 0, 1, 1)] * 2,
                             crs=4326)  # fmt: skip
    pyogrio.write_dataframe(zones, path)
    with pytest.raises(InputError, match="no field 'NOPE'") as caught:
        zones_from_file(path, "NOPE")
    assert caught.value.param == "id_field"
    with pytest.raises(InputError, match="pass the right zone_id") as caught:
        zones_from_file(path, "NOPE", id_option="--zone-id")  # a flag is read as its keyword
    assert caught.value.param == "zone_id"
    with pytest.raises(InputError, match="repeat") as caught:
        zones_from_file(path, "GEOID")
    assert caught.value.param == "id_field"
    with pytest.raises(InputFileError) as caught:
        zones_from_file(tmp_path / "none.gpkg", "GEOID")
    assert caught.value.param == "zones"


def test_a_zones_file_without_crs_is_refused():
    with pytest.raises(CRSError, match="no CRS"):
        zones_from_file(libpysal_examples.get_path("columbus.shp"), "POLYID")


def test_hex_grid_covers_the_points_with_regular_cells():
    rng = np.random.default_rng(0)
    xy = rng.uniform([385_000, 6_672_000], [387_000, 6_673_000], (500, 2))
    pts = gpd.GeoDataFrame(geometry=shapely.points(xy), crs=osm.UTM).to_crs(4326)
    cells = zones_from_grid(pts, kind="hex", cell_size=250.0)
    utm = cells.to_crs(osm.UTM)
    np.testing.assert_allclose(utm.area, np.sqrt(3) / 2 * 250.0**2, rtol=1e-3)
    frame, _ = zone_embeddings(pts, np.ones((500, 2)), cells, id_field="zone_id")
    assert frame["n_images"].sum() == 500 and cells["zone_id"].is_unique
    squares = zones_from_grid(pts, kind="square", cell_size=100.0).to_crs(osm.UTM)
    np.testing.assert_allclose(squares.area, 100.0**2, rtol=1e-3)


def test_zones_and_points_that_do_not_overlap():
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(25, 60)], crs=4326)
    zones = gpd.GeoDataFrame({"id": ["a"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    with pytest.raises(InputError, match="none of the 1 embedded captures"):
        zone_embeddings(pts, np.ones((1, 3)), zones, id_field="id")


# ------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    """A tiny embedded study (sample -> harvest -> embed -> simulate --truth) and inputs."""
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    from urbanvis.study import open_study
    from urbanvis.vectors import read_embeddings

    from .test_embed import run_embed, save_checkpoint

    root = tmp_path_factory.mktemp("predict")
    study = make_town_study(
        root / "study", "--captures-per-point", "1", "--headings", "0", "--size", "32"
    )
    result = run_cli("simulate", "--study", str(study), "--truth")
    assert result.returncode == 0, result.stderr
    ckpt = save_checkpoint(root / "c.pth.tar", 1)
    result = run_embed("--study", str(study), "--checkpoint", str(ckpt), "--workers", "0")
    assert result.returncode == 0, result.stderr

    rows, vectors = read_embeddings(open_study(study, create=False))
    grid = zones_from_grid(rows, kind="hex", cell_size=30.0).rename(columns={"zone_id": "GEOID"})
    zones_path = root / "zones.gpkg"
    pyogrio.write_dataframe(grid.to_crs(osm.UTM), zones_path)  # another CRS than the study's
    frame, means = zone_embeddings(rows, vectors, grid, id_field="GEOID")
    has = frame["n_images"].to_numpy() > 0
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "GEOID": frame["GEOID"][has],
            "logcrime": means[has] @ rng.normal(size=means.shape[1]),
            "noise": rng.normal(size=int(has.sum())),
        }
    )
    table.loc[len(table)] = ["NOT-A-ZONE", 1.0, 1.0]  # reported as unmatched
    indicators = root / "indicators.csv"
    table.to_csv(indicators, index=False)
    return {"root": root, "study": study, "zones": zones_path, "indicators": indicators,
            "n_zones": len(grid), "n_labelled": int(has.sum())}  # fmt: skip


def copy_study(base, tmp_path) -> Path:
    study = tmp_path / "study"
    shutil.copytree(base["study"], study)
    return study


def test_predict_writes_layers_reports_and_models(base, tmp_path):
    study = copy_study(base, tmp_path)
    result = run_predict(
        "--study", str(study), "--level", "blockgroup", "--zones", str(base["zones"]),
        "--id-field", "GEOID", "--indicators", str(base["indicators"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| Crime | logcrime |" in result.stdout
    assert "1 rows without a zone" in result.stdout
    assert "indicator rows match no zone" in result.stderr

    layers = pyogrio.list_layers(study / "study.gpkg")[:, 0].tolist()
    assert {"zones_blockgroup", "predictions_blockgroup"} <= set(layers)
    info = pyogrio.read_info(study / "study.gpkg", layer="predictions_blockgroup")
    assert info["geometry_type"] in ("Polygon", "MultiPolygon")
    assert info["crs"] == "EPSG:4326"
    assert info["features"] == base["n_zones"]
    preds = pyogrio.read_dataframe(study / "study.gpkg", layer="predictions_blockgroup")
    for col in ("GEOID", "logcrime", "logcrime_pred", "noise", "noise_pred", "split",
                "n_images", "flagged"):  # fmt: skip
        assert col in preds.columns, col
    assert preds.crs == "EPSG:4326"
    grid = pyogrio.read_dataframe(base["zones"]).to_crs(4326)
    assert shapely.equals_exact(preds.geometry.values, grid.geometry.values, tolerance=1e-9).all()
    assert set(preds["split"]) == {"train", "test", "no-images"}
    zones = pyogrio.read_dataframe(study / "study.gpkg", layer="zones_blockgroup")
    assert {"GEOID", "n_images", "flagged", "logcrime", "noise"} <= set(zones.columns)
    assert zones["n_images"].sum() == 50
    reports = study / "reports"
    csv = pd.read_csv(reports / "predict_blockgroup.csv")
    assert {"topic", "indicator", "r2"} <= set(csv.columns)
    assert (reports / "predict_blockgroup.md").read_text().count("|") > 10
    models = study / "models" / "predict_blockgroup.joblib"
    assert models.is_file()

    # a new area, no labels: --apply writes predictions from the saved models
    other = tmp_path / "other"
    shutil.copytree(base["study"], other)
    result = run_predict(
        "--study", str(other), "--apply", str(models), "--zones", str(base["zones"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    applied = pyogrio.read_dataframe(other / "study.gpkg", layer="predictions_blockgroup")
    has = applied["n_images"] > 0
    assert applied.loc[has, "logcrime_pred"].notna().all()
    assert applied.loc[~has, "logcrime_pred"].isna().all()
    # models fitted on block groups do not predict tracts
    wrong = run_predict(
        "--study", str(other), "--apply", str(models), "--zones", str(base["zones"]),
        "--level", "tract",
    )  # fmt: skip
    assert_one_line_error(wrong, "fitted on blockgroup zones", "--level blockgroup")


def _bad_inputs(base, tmp_path) -> dict[str, list[str]]:
    ind, zones = str(base["indicators"]), str(base["zones"])
    frame = pd.read_csv(ind, dtype={"GEOID": str})
    paths = {}
    for name, table in {
        "nomatch": frame.assign(GEOID="X" + frame["GEOID"]),
        "text": frame.assign(noise="high"),
        "empty": frame.assign(noise=np.nan),
    }.items():
        paths[name] = tmp_path / f"{name}.csv"
        table.to_csv(paths[name], index=False)
    far = pyogrio.read_dataframe(zones)
    far["geometry"] = far.translate(200_000, 0)
    pyogrio.write_dataframe(far, tmp_path / "far.gpkg")
    nocrs = pyogrio.read_dataframe(zones).set_crs(None, allow_override=True)
    with warnings.catch_warnings():  # pyogrio warns that the file will have no CRS
        warnings.simplefilter("ignore", UserWarning)
        pyogrio.write_dataframe(nocrs, tmp_path / "nocrs.shp")
    study = str(base["study"])
    return {
        "id-field-missing": ["--zones", zones, "--id-field", "NOPE", "--indicators", ind],
        "ids-match-nothing": ["--zones", zones, "--indicators", str(paths["nomatch"])],
        "non-numeric": ["--zones", zones, "--indicators", str(paths["text"])],
        "all-nan": ["--zones", zones, "--indicators", str(paths["empty"])],
        "fewer-than-folds": ["--zones", f"{study}/study.gpkg", "--zones-layer", "zones_sim",
                             "--id-field", "zone_id", "--indicators",
                             f"{study}/truth/indicators.csv", "--protocol", "kfold5"],
        "no-overlap": ["--zones", str(tmp_path / "far.gpkg"), "--indicators", ind],
        "no-crs": ["--zones", str(tmp_path / "nocrs.shp"), "--indicators", ind],
        "acs": ["--zones", zones, "--indicators", "acs:B19013_001E"],
        "tiger": ["--level", "tract", "--indicators", ind],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("id-field-missing", ("no column 'NOPE'", "--id-field")),  # the CSV is read first
        ("ids-match-nothing", ("no indicator id matches",)),
        ("non-numeric", ("'noise'", "not numeric")),
        ("all-nan", ("'noise'", "no values")),
        ("fewer-than-folds", ("fewer", "folds")),
        ("no-overlap", ("none of the 50 embedded captures",)),
        ("no-crs", ("no CRS",)),
        ("acs", ("'H", "not 12-digit block-group GEOIDs")),  # refused before any request
        ("tiger", ("outside the US", "--zones")),  # Helsinki: refused before any download
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(base, tmp_path, case, needles):
    args = _bad_inputs(base, tmp_path)[case]
    before = tree(base["study"])
    result = run_predict("--study", str(base["study"]), *args)
    assert_one_line_error(result, *needles)
    assert tree(base["study"]) == before
