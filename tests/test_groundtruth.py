"""Ground truth of the synthetic city: zones, indicators, safety, votes, contact sheet."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from PIL import Image

from urbanvis._errors import InputError
from urbanvis.simulate import City
from urbanvis.simulate.groundtruth import (
    TOPICS,
    indicators_from_zones,
    safety_from_captures,
    votes_from_safety,
    zone_means,
    zones_from_points,
)

from .conftest import make_town_study, run_cli
from .test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def grid_points():
    """Points every 40 m over a 4 km square near Helsinki (about 10,000)."""
    from urbanvis.sampling import points_from_grid

    square = shapely.box(24.90, 60.15, 24.972, 60.186)
    return points_from_grid(gpd.GeoDataFrame(geometry=[square], crs=4326), spacing=40)


def test_zones_tile_the_area_with_20_to_200_points(grid_points):
    zones = zones_from_points(grid_points, seed=3)
    assert zones.crs.to_epsg() == 4326
    assert zones["zone_id"].is_unique
    assert zones["n_points"].between(20, 200).all()
    utm = zones.to_crs(zones.estimate_utm_crs())
    assert utm.area.sum() == pytest.approx(utm.union_all().area, rel=1e-6)  # no overlaps
    joined = gpd.sjoin(grid_points, zones, predicate="within")
    assert len(joined) == len(grid_points)  # every point in exactly one zone
    counts = joined.groupby("zone_id").size().reindex(zones["zone_id"]).to_numpy()
    assert np.array_equal(counts, zones["n_points"].to_numpy())


def test_indicators_span_strong_to_weak_predictability(grid_points):
    from sklearn.linear_model import LinearRegression

    city = City(seed=3)
    zones = zones_from_points(grid_points, seed=3, points_per_zone=25)
    table = indicators_from_zones(city, zones, grid_points)
    assert set(TOPICS) == {"Crime", "Health", "Poverty", "Transport"}
    names = [n for topic in TOPICS.values() for n in topic]
    assert len(names) >= 8 and list(table.columns) == ["zone_id", *names]
    features = zone_means(city, zones, grid_points)
    r2 = {}
    for name in names:
        y = table[name].to_numpy()
        r2[name] = LinearRegression().fit(features, y).score(features, y)
    assert r2["obesity"] > 0.9 and r2["public_transit"] > 0.9 and r2["median_income"] > 0.8
    assert r2["logpetty"] < r2["logcrime"] and r2["poverty_rate"] < r2["median_income"]
    assert min(r2.values()) < 0.6  # some indicators are hard, like the paper's crime
    again = indicators_from_zones(city, zones, grid_points)
    pd.testing.assert_frame_equal(table, again)  # deterministic


def _fake_captures(n: int, rng) -> gpd.GeoDataFrame:
    lon = rng.uniform(24.90, 24.97, n)
    lat = rng.uniform(60.15, 60.18, n)
    return gpd.GeoDataFrame(
        {
            "capture_id": [f"c{i}" for i in range(n)],
            "sim_lighting": rng.uniform(0, 1, n),
            "sim_pedestrians": rng.integers(0, 8, n),
            "sim_cars": rng.integers(0, 10, n),
            "sim_greenery_visible": rng.uniform(0, 0.4, n),
        },
        geometry=gpd.points_from_xy(lon, lat),
        crs=4326,
    )


def test_safety_scores_follow_static_and_dynamic_content():
    rng = np.random.default_rng(0)
    caps = _fake_captures(3000, rng)
    city = City(seed=0)
    scores = safety_from_captures(city, caps)
    assert scores.min() >= 0 and scores.max() <= 10 and scores.std() > 1
    upkeep = city.latent_fields(
        *__import__("urbanvis.providers.simulator", fromlist=["x"]).utm_coordinates(
            caps.geometry.x.to_numpy(), caps.geometry.y.to_numpy()
        )
    )["upkeep"]
    for driver in (caps["sim_lighting"], caps["sim_pedestrians"], upkeep):
        assert np.corrcoef(np.asarray(driver, dtype=float), scores)[0, 1] > 0.2
    assert np.corrcoef(caps["sim_cars"], scores)[0, 1] < 0
    with pytest.raises(InputError, match="simulator captures"):
        safety_from_captures(city, caps.drop(columns="sim_cars"))


def test_votes_prefer_the_safer_image():
    rng = np.random.default_rng(1)
    caps = _fake_captures(500, rng)
    scores = safety_from_captures(City(seed=0), caps)
    votes = votes_from_safety(caps, scores, seed=2)
    assert list(votes.columns) == [
        "left_id",
        "right_id",
        "winner",
        "left_lat",
        "left_long",
        "right_lat",
        "right_long",
        "category",
    ]
    assert (votes["left_id"] != votes["right_id"]).all()
    assert set(votes["winner"]) <= {"left", "right", "equal"}
    score = dict(zip(caps["capture_id"], scores, strict=True))
    decided = votes[votes["winner"] != "equal"]
    left_safer = decided["left_id"].map(score) > decided["right_id"].map(score)
    agree = (left_safer == (decided["winner"] == "left")).mean()
    assert agree > 0.7


def test_contact_sheet_cli(tmp_path):
    out = tmp_path / "sheet.png"
    result = run_cli("simulate", "--contact-sheet", str(out), "--size", "64")
    assert result.returncode == 0, result.stderr
    with Image.open(out) as im:
        assert im.size == (6 * 64, 3 * (64 + 18))
        pixels = np.asarray(im.convert("RGB"))
    # one place over time, a street, neighbourhoods: rows 2 and 3 start from the place of
    # row 1 at its third date, every other tile differs
    tiles = [
        pixels[18 + r * 82 : 18 + r * 82 + 64, c * 64 : (c + 1) * 64].tobytes()
        for r in range(3)
        for c in range(6)
    ]
    assert tiles[2] == tiles[6] == tiles[12]
    assert len(set(tiles)) == 16


def test_simulate_bad_input(tmp_path):
    assert_one_line_error(run_cli("simulate"), "--contact-sheet", "--truth")
    assert_one_line_error(run_cli("simulate", "--contact-sheet", str(tmp_path / "x.jpg")), ".png")
    assert not (tmp_path / "x.jpg").exists()
    assert_one_line_error(
        run_cli("simulate", "--truth", "--study", str(tmp_path / "none")), "not a study"
    )


def test_truth_export_for_a_harvested_study(tmp_path):
    study = make_town_study(
        tmp_path / "s", "--captures-per-point", "2", "--headings", "0", "--size", "48"
    )
    result = run_cli("simulate", "--study", str(study), "--truth")
    assert result.returncode == 0, result.stderr
    zones = pyogrio.read_dataframe(study / "study.gpkg", layer="zones_sim")
    indicators = pd.read_csv(study / "truth" / "indicators.csv")
    assert list(indicators["zone_id"]) == list(zones["zone_id"])
    assert {"logcrime", "obesity", "median_income", "public_transit"} <= set(zones.columns)
    topics = pd.read_csv(study / "truth" / "topics.csv")  # what predict groups them by
    assert list(topics.columns) == ["indicator", "topic"]
    assert set(topics["indicator"]) == set(indicators.columns) - {"zone_id"}
    assert {t: tuple(g["indicator"]) for t, g in topics.groupby("topic", sort=False)} == TOPICS
    safety = pd.read_csv(study / "truth" / "safety_scores.csv")
    assert len(safety) == 50 * 2 and safety["safety"].between(0, 10).all()
    votes = pd.read_csv(study / "truth" / "safety_votes.csv")
    assert set(votes["left_id"]) <= set(safety["capture_id"])
