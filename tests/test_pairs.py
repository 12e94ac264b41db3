"""Contrastive pair datasets: every rule checked on a real study built with the CLI.

The study is the test town (tests/data/osm.py) harvested with the simulator, 3 dates and two
headings per point. Rules are checked against naive loop-by-loop references.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import time
import tomllib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from PIL import Image
from pyproj import Transformer

from urbanvis.pairs import PAIR_COLUMNS, iter_shard, pairs_from_captures

from .conftest import make_town_study, run_cli
from .data.osm import ORIGIN_UTM, UTM
from .test_cli import assert_one_line_error, tree

_to_utm = Transformer.from_crs(4326, UTM, always_xy=True)


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base_study(tmp_path_factory) -> Path:
    """A pristine harvested study; tests copy it and never write into it."""
    root = tmp_path_factory.mktemp("pairs")
    study = make_town_study(
        root / "town", "--captures-per-point", "3", "--headings", "0,180", "--size", "32"
    )
    return study


@pytest.fixture
def study(base_study, tmp_path) -> Path:
    copy = tmp_path / "study"
    shutil.copytree(base_study, copy)
    return copy


@pytest.fixture(scope="module")
def captures(base_study) -> gpd.GeoDataFrame:
    caps = pyogrio.read_dataframe(base_study / "study.gpkg", layer="captures")
    x, y = _to_utm.transform(caps.geometry.x.to_numpy(), caps.geometry.y.to_numpy())
    return caps.assign(x=x, y=y).set_index("capture_id", drop=False)


def pairs_cli(study: Path, *args: str):
    return run_cli("pairs", "--study", str(study), *args)


def read_pairs(study: Path, strategy: str) -> tuple[pd.DataFrame, dict]:
    table = pq.read_table(study / "pairs" / f"{strategy}.parquet").to_pandas()
    summary = json.loads((study / "pairs" / f"{strategy}.json").read_text())
    return table, summary


def heading_diff(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 180) % 360 - 180)


def check_summary(table: pd.DataFrame, summary: dict, captures) -> None:
    assert list(table.columns) == PAIR_COLUMNS
    assert summary["pairs"] == len(table)
    assert (table["pair_id"] == np.arange(len(table))).all()
    assert summary["anchors"] == table["anchor"].nunique()
    assert summary["images"] == len(set(table["capture_a"]) | set(table["capture_b"]))
    assert summary["captures_total"] == len(captures)
    assert summary["captures_used"] + sum(summary["dropped_captures"].values()) == len(captures)
    assert summary["candidates"] == len(table) + summary["dropped_candidates"]["over_budget"]
    counts = table["anchor"].value_counts()
    assert summary["pairs_per_anchor"]["max"] == counts.max()
    assert set(table["strategy"]) == {summary["strategy"]}


# ------------------------------------------------------------------------ temporal
def test_temporal_pairs_follow_the_rules_and_match_a_naive_reference(study, captures):
    result = pairs_cli(study, "--strategy", "temporal", "--shards", "--shard-size", "70")
    assert result.returncode == 0, result.stderr
    assert "temporal pairs" in result.stdout
    table, summary = read_pairs(study, "temporal")
    check_summary(table, summary, captures)
    a = captures.loc[table["capture_a"]]
    b = captures.loc[table["capture_b"]]
    assert (np.hypot(a.x.to_numpy() - b.x.to_numpy(), a.y.to_numpy() - b.y.to_numpy()) <= 5).all()
    assert (heading_diff(a.heading, b.heading) <= 10).all()
    assert (heading_diff(table.heading_a, table.heading_b) == table.heading_diff).all()
    assert (a.captured_at.to_numpy() != b.captured_at.to_numpy()).all()
    assert (table["days_apart"] > 0).all() and table["zone"].isna().all()
    assert (a.status == "ok").all() and (b.status == "ok").all()
    assert (table["image_a"].to_numpy() == a.image_path.to_numpy()).all()
    # the default budget takes every candidate: the set equals a brute-force enumeration
    naive = set()
    for p, q in itertools.combinations(captures.itertuples(), 2):
        if (
            np.hypot(p.x - q.x, p.y - q.y) <= 5
            and heading_diff(p.heading, q.heading) <= 10
            and p.captured_at[:10] != q.captured_at[:10]
        ):
            naive.add(frozenset((p.capture_id, q.capture_id)))
    got = {frozenset(x) for x in zip(table.capture_a, table.capture_b, strict=True)}
    assert got == naive and len(naive) == 50 * 2 * 3  # 3 date pairs per point and heading
    assert summary["anchors"] == 100  # one place per point and heading
    for _, group in table.groupby("anchor"):  # a place is one point and one heading
        assert group["point_a"].nunique() == 1 and (group["heading_diff"] <= 10).all()
    # provenance
    runs = tomllib.loads((study / "study.toml").read_text())["runs"]
    assert runs[-1]["command"] == "pairs" and runs[-1]["outputs"]["pairs"] == len(table)


def test_budget_is_spread_over_places_and_seeded(study, captures):
    tables = {}
    for name, seed in (("first", "0"), ("again", "0"), ("other", "1")):
        result = pairs_cli(study, "--strategy", "temporal", "--max-pairs", "150", "--seed", seed)
        assert result.returncode == 0, result.stderr
        tables[name], summary = read_pairs(study, "temporal")
        check_summary(tables[name], summary, captures)
        assert len(tables[name]) == 150
        per_place = tables[name]["anchor"].value_counts()
        assert per_place.min() >= 1 and per_place.max() <= 2  # 100 places: 1 or 2 each
    pd.testing.assert_frame_equal(tables["first"], tables["again"])
    assert not tables["first"].equals(tables["other"])
    # the row order of the captures does not matter
    shuffled = captures.reset_index(drop=True).sample(frac=1.0, random_state=3)
    t1, _ = pairs_from_captures(captures.reset_index(drop=True), strategy="spatial", seed=4)
    t2, _ = pairs_from_captures(shuffled, strategy="spatial", seed=4)
    pd.testing.assert_frame_equal(t1, t2)


def test_temporal_pairs_places_across_points_and_panoramas():
    """Real providers: captures of one place drift, come from other points and pano ids."""
    x0, y0 = ORIGIN_UTM
    rows = [  # id, x, y, heading, date, status
        ("a1", 0.0, 0.0, 90.0, "2019-05", "ok"),
        ("a2", 3.0, 1.0, 97.0, "2021-08-14", "ok"),  # 3.2 m, 7 deg: pairs with a1
        ("a3", 0.5, 0.0, 91.0, "2019-05-12", "ok"),  # same month as a1: same date
        ("a4", 6.0, 0.0, 90.0, "2023-01-01", "ok"),  # 6 m from a1, 3 m from a2
        ("b1", 100.0, 0.0, 355.0, "2018-01-01", "ok"),
        ("b2", 101.0, 0.0, 4.0, "2020-01-01", "ok"),  # heading wraps: 9 deg
        ("b3", 100.0, 1.0, 20.0, "2022-01-01", "ok"),  # 25 / 16 deg: no pair
        ("c1", 200.0, 0.0, 0.0, "2018-01-01", "failed"),
        ("c2", 200.0, 0.0, 0.0, "", "ok"),
    ]
    frame = gpd.GeoDataFrame(
        {
            "capture_id": [r[0] for r in rows],
            "point_id": np.arange(len(rows)),
            "pano_id": [f"pano{i}" for i in range(len(rows))],
            "heading": [r[3] for r in rows],
            "captured_at": [r[4] for r in rows],
            "image_path": [f"images/{r[0]}.jpg" for r in rows],
            "status": [r[5] for r in rows],
        },
        geometry=gpd.points_from_xy([x0 + r[1] for r in rows], [y0 + r[2] for r in rows]),
        crs=UTM,
    )
    table, summary = pairs_from_captures(frame, strategy="temporal")
    got = {frozenset(x) for x in zip(table.capture_a, table.capture_b, strict=True)}
    assert got == {frozenset(p) for p in [("a1", "a2"), ("a3", "a2"), ("a2", "a4"), ("b1", "b2")]}
    assert summary.dropped_candidates["same_date"] == 1  # a1-a3
    assert summary.dropped_candidates["heading"] == 2  # b1-b3, b2-b3
    assert summary.dropped_captures["status_failed"] == 1
    assert summary.dropped_captures["no_date"] == 1
    assert summary.dropped_captures["no_partner"] == 1  # b3
    assert summary.anchors == 2  # a1..a4 chain into one place, b1-b2 the other
    assert table.loc[table.capture_a.isin(["b1", "b2"]), "heading_diff"].item() == 9.0
    assert frame["capture_id"].tolist()[0] == "a1"  # input untouched


# ------------------------------------------------------------------------- spatial
def test_spatial_grid_pairs_share_a_100m_cell(study, captures):
    result = pairs_cli(study, "--strategy", "spatial", "--max-pairs", "400")
    assert result.returncode == 0, result.stderr
    table, summary = read_pairs(study, "spatial")
    check_summary(table, summary, captures)
    assert len(table) == 400
    cell = {
        cid: f"32635:{np.floor(x / 100) * 100:.0f}:{np.floor(y / 100) * 100:.0f}"
        for cid, x, y in zip(captures.capture_id, captures.x, captures.y, strict=True)
    }
    assert (table["capture_a"] != table["capture_b"]).all()
    assert (table["capture_a"].map(cell) == table["zone"]).all()
    assert (table["capture_b"].map(cell) == table["zone"]).all()
    assert (table["zone"] == table["anchor"]).all()
    pairs = {frozenset(x) for x in zip(table.capture_a, table.capture_b, strict=True)}
    assert len(pairs) == len(table)  # no pair twice
    # naive reference: every cell's n images give n(n-1)/2 candidates
    sizes = pd.Series(cell).value_counts()
    assert summary["candidates"] == int((sizes * (sizes - 1) // 2).sum())
    assert {z: c["images"] for z, c in summary["per_zone"].items()} == sizes.to_dict()
    assert {z: c["pairs"] for z, c in summary["per_zone"].items() if c["pairs"]} == (
        table["zone"].value_counts().to_dict()
    )
    assert summary["settings"]["buffer"] == 100.0


def test_spatial_block_group_pairs_share_a_polygon(study, captures):
    x0, y0 = ORIGIN_UTM
    zones = gpd.GeoDataFrame(
        {
            "GEOID": ["060370001001", "060370001002", "060370009999"],
            "name": ["west", "east", "far away"],
        },
        geometry=[
            shapely.box(x0 - 10, y0 - 30, x0 + 150, y0 + 30),
            shapely.box(x0 + 150, y0 - 30, x0 + 310, y0 + 120),
            shapely.box(x0 + 5000, y0, x0 + 5100, y0 + 100),
        ],
        crs=UTM,
    ).to_crs(3067)  # another CRS than the captures': the command reprojects
    path = study.parent / "bg.gpkg"
    zones.to_file(path)
    result = pairs_cli(study, "--strategy", "spatial", "--zones", str(path), "--zone-id", "GEOID")
    assert result.returncode == 0, result.stderr
    table, summary = read_pairs(study, "spatial")
    check_summary(table, summary, captures)
    assert set(table["zone"]) == {"060370001001", "060370001002"}  # leading zeros kept
    polys = dict(zip(zones.GEOID, zones.to_crs(UTM).geometry.buffer(0.01), strict=True))
    for side in ("a", "b"):
        cap = captures.loc[table[f"capture_{side}"]]
        inside = [
            polys[z].contains(shapely.Point(x, y))
            for z, x, y in zip(table["zone"], cap.x, cap.y, strict=True)
        ]
        assert all(inside)
    outside = sum(
        not any(p.contains(shapely.Point(x, y)) for p in polys.values())
        for x, y in zip(captures.x, captures.y, strict=True)
    )
    assert summary["dropped_captures"]["outside_zones"] == outside > 0
    assert summary["settings"]["zone_id"] == "GEOID"


# ---------------------------------------------------------------------------- self
def test_self_pairs_are_one_image_twice_within_budget(study, captures):
    result = pairs_cli(study, "--strategy", "self", "--max-pairs", "100")
    assert result.returncode == 0, result.stderr
    table, summary = read_pairs(study, "self")
    check_summary(table, summary, captures)
    assert len(table) == 100 == table["capture_a"].nunique()
    assert (table["capture_a"] == table["capture_b"]).all()
    assert (table["distance_m"] == 0).all() and (table["heading_diff"] == 0).all()


# -------------------------------------------------------------------------- shards
def test_shards_hold_both_images_and_the_row(study, captures):
    result = pairs_cli(study, "--strategy", "temporal", "--shards", "--shard-size", "70")
    assert result.returncode == 0, result.stderr
    table, summary = read_pairs(study, "temporal")
    shards = sorted((study / "pairs" / "temporal-shards").glob("*.tar"))
    assert [s.name for s in shards] == [f"temporal-{i:06d}.tar" for i in range(5)]  # 300/70
    assert summary["shard_pattern"] == "pairs/temporal-shards/temporal-{000000..000004}.tar"
    samples = [s for shard in shards for s in iter_shard(shard)]
    assert len(samples) == len(table)
    rows = table.set_index("pair_id")
    for sample in samples[::23]:
        assert set(sample) == {"__key__", "a.jpg", "b.jpg", "json"}
        row = rows.loc[int(sample["__key__"])]
        assert sample["json"]["capture_a"] == row.capture_a
        assert sample["json"]["capture_b"] == row.capture_b
        assert sample["a.jpg"] == (study / row.image_a).read_bytes()
        assert sample["b.jpg"] == (study / row.image_b).read_bytes()
        with Image.open(io.BytesIO(sample["b.jpg"])) as im:
            im.load()
            assert im.size == (32, 32)


# ---------------------------------------------------------------------- bad input
def assert_nothing_written(study: Path, before: dict) -> None:
    assert tree(study) == before
    assert not list((study / "pairs").glob("*.parquet"))


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--strategy", "crosswise"], ["unknown pair strategy", "temporal"]),
        (["--strategy", "self", "--max-pairs", "0"], ["--max-pairs"]),
        (["--strategy", "spatial", "--zones", "nope.gpkg", "--zone-id", "GEOID"], ["nope"]),
        (["--strategy", "temporal", "--zones", "x.gpkg", "--zone-id", "G"], ["spatial only"]),
    ],
)
def test_bad_options_exit_2_with_one_line(study, args, needles):
    before = tree(study)
    assert_one_line_error(pairs_cli(study, *args), *needles)
    assert_nothing_written(study, before)


def test_study_without_captures(tmp_path):
    study = make_town_study(tmp_path / "bare")
    before = tree(study)
    assert_one_line_error(pairs_cli(study, "--strategy", "self"), "no captures", "harvest")
    assert_nothing_written(study, before)


def rewrite_captures(study: Path, **columns) -> None:
    caps = pyogrio.read_dataframe(study / "study.gpkg", layer="captures")
    pyogrio.write_dataframe(caps.assign(**columns), study / "study.gpkg", layer="captures")


def test_no_ok_captures(study):
    rewrite_captures(study, status="failed")
    before = tree(study)
    assert_one_line_error(pairs_cli(study, "--strategy", "self"), "no capture has status 'ok'")
    assert_nothing_written(study, before)


def test_temporal_without_a_second_date(study):
    rewrite_captures(study, captured_at="2020-06-01")
    before = tree(study)
    assert_one_line_error(
        pairs_cli(study, "--strategy", "temporal"), "two dates", "--captures-per-point 2"
    )
    assert_nothing_written(study, before)


def test_bad_zones_files(study):
    x0, y0 = ORIGIN_UTM
    box = shapely.box(x0, y0 - 30, x0 + 300, y0 + 30)
    good = gpd.GeoDataFrame({"GEOID": ["1"], "NAME": ["a"]}, geometry=[box], crs=UTM)
    no_crs = study.parent / "nocrs.shp"
    good.to_file(no_crs)
    no_crs.with_suffix(".prj").unlink()
    far = study.parent / "far.gpkg"
    good.set_geometry([shapely.box(0, 0, 10, 10)]).to_file(far)
    fields = study.parent / "fields.gpkg"
    good.to_file(fields)
    before = tree(study)
    cases = [
        (no_crs, "GEOID", ["no CRS"]),
        (fields, "BG_ID", ["BG_ID", "GEOID, NAME"]),
        (far, "GEOID", ["overlap none"]),
    ]
    for path, field, needles in cases:
        args = ["--strategy", "spatial", "--zones", str(path), "--zone-id", field]
        assert_one_line_error(pairs_cli(study, *args), *needles)
        assert_nothing_written(study, before)


# ------------------------------------------------------------------------ at scale
def synthetic_captures(n_places: int, seed: int = 0) -> gpd.GeoDataFrame:
    """12 captures per place (4 headings x 3 years), jittered, each with its own point_id."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_places)))
    px = ORIGIN_UTM[0] + (np.arange(n_places) % side) * 20.0
    py = ORIGIN_UTM[1] + (np.arange(n_places) // side) * 20.0
    place = np.repeat(np.arange(n_places), 12)
    n = place.size
    heading = np.tile(np.repeat([0.0, 90.0, 180.0, 270.0], 3), n_places) + rng.uniform(-3, 3, n)
    year = np.tile(["2015-06", "2018-06", "2021-06"], n_places * 4)
    return gpd.GeoDataFrame(
        {
            "capture_id": np.char.add("c", np.char.zfill(np.arange(n).astype(str), 7)),
            "point_id": np.arange(n),
            "heading": heading % 360,
            "captured_at": year,
            "image_path": np.char.add("images/", np.arange(n).astype(str)),
            "status": "ok",
        },
        geometry=gpd.points_from_xy(
            px[place] + rng.uniform(-1.5, 1.5, n), py[place] + rng.uniform(-1.5, 1.5, n)
        ),
        crs=UTM,
    )


@pytest.mark.slow
def test_two_hundred_thousand_captures_take_seconds():
    caps = synthetic_captures(16_667)  # 200,004 captures
    start = time.perf_counter()
    temporal, summary = pairs_from_captures(caps, strategy="temporal")
    took_temporal = time.perf_counter() - start
    assert len(temporal) == summary.candidates == 16_667 * 4 * 3
    assert summary.anchors == 16_667 * 4
    assert (temporal["distance_m"] <= 5).all() and (temporal["heading_diff"] <= 10).all()
    start = time.perf_counter()
    spatial, summary = pairs_from_captures(caps, strategy="spatial", max_pairs=300_000)
    took_spatial = time.perf_counter() - start
    assert len(spatial) == 300_000 and summary.candidates > 10_000_000
    a = spatial["capture_a"].to_numpy()
    b = spatial["capture_b"].to_numpy()
    assert (a != b).all()
    assert len(set(zip(np.minimum(a, b), np.maximum(a, b), strict=True))) == 300_000
    # the budget spread evenly: cells with room get equal shares (plus one), small cells all
    per_zone = pd.DataFrame(summary.per_zone).T
    room = per_zone["images"] * (per_zone["images"] - 1) // 2
    level = per_zone.loc[room > per_zone["pairs"], "pairs"]
    assert level.max() - level.min() <= 1
    assert (per_zone.loc[room <= per_zone["pairs"], "pairs"] <= level.min() + 1).all()
    # two slow shared cores: generous bounds that a Python loop per capture cannot meet
    assert took_temporal < 15 and took_spatial < 15, (took_temporal, took_spatial)
