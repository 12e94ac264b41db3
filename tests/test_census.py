"""TIGER/Line zones and ACS indicators against a local stand-in for the Census servers.

The stand-in is a real HTTP server on 127.0.0.1 serving what the Census Bureau serves: a
national state-boundary zip, per-state block-group and tract zips (shapefiles in EPSG:4269
with the real files' FIPS columns) and a Data API answering JSON arrays of arrays, with a
jam value and the API's 400 for an unknown variable. It records every request.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from urllib.parse import quote

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from urbanvis._errors import InputError, UrbanvisError
from urbanvis.acs import ACS_ALIASES, CensusServiceError, acs_indicators, acs_variable
from urbanvis.tiger import tiger_zones

from .fakes import census as fake_census
from .fakes.census import CELL, JAM
from .test_cli import assert_one_line_error, tree

pytestmark = pytest.mark.network

KEY = "k3y-Secret/+=42"  # characters that URL quoting changes, to catch a quoted leak
HELSINKI = (24.93, 60.16, 24.95, 60.17)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    server = fake_census.start(tmp_path_factory.mktemp("census-server"))
    yield server
    server.close()


@pytest.fixture
def census(stand_in, monkeypatch, tmp_path):
    """The stand-in with an empty request log; no Census setting or key from the real env."""
    for name in ("URBANVIS_TIGER_URL", "URBANVIS_CENSUS_URL", "CENSUS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("URBANVIS_CACHE", str(tmp_path / "default-cache"))
    stand_in.requests.clear()
    return stand_in


def naive_intersecting(frame: gpd.GeoDataFrame, bounds) -> set[str]:
    """Reference: one polygon at a time."""
    area = shapely.box(*bounds)
    return {row.GEOID for row in frame.itertuples() if row.geometry.intersects(area)}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def files_holding(root: Path, *needles: str) -> list[str]:
    """Files under root whose name or bytes contain any needle."""
    hits = []
    for path in root.rglob("*"):
        data = path.read_bytes() if path.is_file() else b""
        if any(n in str(path) or n.encode() in data for n in needles):
            hits.append(str(path))
    return hits


SECRETS = (KEY, quote(KEY, safe=""))


def as_cli(error: UrbanvisError) -> str:
    """An error's message with its parameters named as command-line options (`zones` -> --zones)."""
    return error.worded(lambda name: "--" + name.replace("_", "-"))


# ---------------------------------------------------------------------- TIGER/Line
def test_block_groups_come_from_the_touched_state_and_are_cached(census, tmp_path):
    bounds = (-98.995, 39.005, -98.975, 39.025)  # columns 0-2, rows 0-2 of state 20
    cache = tmp_path / "tiger"
    zones = tiger_zones(bounds, "blockgroup", base_url=census.tiger, cache_dir=cache)

    assert list(zones.columns) == ["GEOID", "geometry"]
    assert zones.crs == "EPSG:4326"
    assert set(zones["GEOID"]) == naive_intersecting(census.bgs, bounds)
    assert len(zones) == 9 and zones["GEOID"].is_monotonic_increasing
    assert all(isinstance(g, str) and len(g) == 12 for g in zones["GEOID"])
    truth = census.bgs.set_index("GEOID").loc[zones["GEOID"]].geometry.to_numpy()
    got = shapely.normalize(zones.geometry.to_numpy())  # shapefiles turn rings clockwise
    assert shapely.equals_exact(got, shapely.normalize(truth), tolerance=1e-6).all()
    assert census.requests == [
        "/geo/tiger/TIGER2023/STATE/tl_2023_us_state.zip",
        "/geo/tiger/TIGER2023/BG/tl_2023_20_bg.zip",
    ]
    cached = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
    assert cached == ["TIGER2023/BG/tl_2023_20_bg.zip", "TIGER2023/STATE/tl_2023_us_state.zip"]

    census.requests.clear()
    again = tiger_zones(bounds, "blockgroup", base_url=census.tiger, cache_dir=cache)
    assert census.requests == []
    pd.testing.assert_frame_equal(pd.DataFrame(again), pd.DataFrame(zones))


def test_tracts_of_a_box_across_two_states(census, tmp_path):
    bounds = (-98.999, 39.001, -97.495, 39.005)  # every state-20 column, one of state 29
    zones = tiger_zones(bounds, "tract", base_url=census.tiger, cache_dir=tmp_path)
    assert set(zones["GEOID"]) == naive_intersecting(census.tracts, bounds)
    assert len(zones) == 7 and all(len(g) == 11 for g in zones["GEOID"])
    assert sorted(census.requests) == [
        "/geo/tiger/TIGER2023/STATE/tl_2023_us_state.zip",
        "/geo/tiger/TIGER2023/TRACT/tl_2023_20_tract.zip",
        "/geo/tiger/TIGER2023/TRACT/tl_2023_29_tract.zip",
    ]


def test_an_area_outside_the_us_is_refused_without_a_download(census, tmp_path):
    with pytest.raises(InputError) as caught:
        tiger_zones(HELSINKI, base_url=census.tiger, cache_dir=tmp_path)
    message = str(caught.value)
    assert "US only" in message and "\n" not in message
    assert caught.value.param == "zones" and "as --zones" in as_cli(caught.value)
    assert census.requests == []


def test_an_area_in_no_state_of_the_boundary_file_is_refused(census, tmp_path):
    with pytest.raises(InputError, match=r"US only.*as zones") as caught:
        tiger_zones((-97.0, 31.0, -96.9, 31.1), base_url=census.tiger, cache_dir=tmp_path)
    assert caught.value.param == "zones"
    assert census.requests == ["/geo/tiger/TIGER2023/STATE/tl_2023_us_state.zip"]


def test_environment_variables_choose_the_server_and_the_cache(census, monkeypatch, tmp_path):
    monkeypatch.setenv("URBANVIS_TIGER_URL", census.tiger)
    monkeypatch.setenv("URBANVIS_CENSUS_URL", census.api)
    monkeypatch.setenv("URBANVIS_CACHE", str(tmp_path / "c"))
    zones = tiger_zones((-98.995, 39.005, -98.985, 39.015))
    table = acs_indicators(zones["GEOID"], ["population"], level="blockgroup")
    assert len(zones) == 4 and table["population"].tolist() == [900.0, 900.0, 901.0, 901.0]
    assert (tmp_path / "c/tiger/TIGER2023/BG/tl_2023_20_bg.zip").is_file()
    assert len(list((tmp_path / "c/acs").glob("*.json"))) == 1
    assert len(census.requests) == 3


def test_an_unreachable_or_wrong_server_is_one_line_naming_the_way_out(census, tmp_path):
    port = closed_port()
    with pytest.raises(CensusServiceError) as caught:
        tiger_zones((-99, 39, -98.99, 39.01), base_url=f"http://127.0.0.1:{port}/geo/tiger",
                    cache_dir=tmp_path)  # fmt: skip
    message = as_cli(caught.value)
    assert isinstance(caught.value, InputError) and isinstance(caught.value, ConnectionError)
    for needle in (f"127.0.0.1:{port}", "as --zones", "URBANVIS_TIGER_URL (--tiger-url)"):
        assert needle in message
    with pytest.raises(CensusServiceError, match=r"has no TIGER2019/STATE/tl_2019_us_state\.zip"):
        tiger_zones((-99, 39, -98.99, 39.01), year=2019, base_url=census.tiger, cache_dir=tmp_path)
    with pytest.raises(CensusServiceError, match="not a zip"):
        tiger_zones((-99, 39, -98.99, 39.01), year=2021, base_url=census.tiger, cache_dir=tmp_path)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing bad was cached

    with pytest.raises(CensusServiceError) as caught:
        acs_indicators(["200010001001"], ["B19013_001E"], level="blockgroup", api_key=KEY,
                       base_url=f"http://127.0.0.1:{port}/data", cache_dir=tmp_path)  # fmt: skip
    message = "".join(traceback.format_exception(caught.value))
    assert f"127.0.0.1:{port}" in message and "URBANVIS_CENSUS_URL" in message
    assert not any(s in message for s in SECRETS)


# ------------------------------------------------------------------------------ ACS
def test_acs_values_parameters_and_jam_values(census, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    geoids = [*census.bgs["GEOID"][census.bgs["STATEFP"] == "20"], "290050001001"]
    cache = tmp_path / "acs"
    table = acs_indicators(geoids, ["median_income", "B17021_002E"], level="blockgroup",
                           base_url=census.api, api_key=KEY, cache_dir=cache)  # fmt: skip

    assert list(table.columns) == ["GEOID", "median_income", "B17021_002E"]
    assert table["GEOID"].tolist() == geoids
    for row in table.itertuples():
        expected = census.values[row.GEOID]
        assert float(expected["B17021_002E"]) == row.B17021_002E
        if row.GEOID == JAM:
            assert np.isnan(row.median_income)
        else:
            assert float(expected["B19013_001E"]) == row.median_income
    assert table.drop(columns="GEOID").dtypes.eq(float).all()

    queries = census.queries()
    assert len(queries) == 3 == len(census.requests)  # one per county
    assert {q["in"] for q in queries} == {
        "state:20 county:001 tract:*", "state:20 county:003 tract:*",
        "state:29 county:005 tract:*",
    }  # fmt: skip
    for query in queries:
        assert query["get"] == "NAME,B19013_001E,B17021_002E"
        assert query["for"] == "block group:*"
        assert query["key"] == KEY  # sent to the server...
        assert "for=block%20group:*" in query["_raw"]

    census.requests.clear()
    again = acs_indicators(geoids, ["median_income", "B17021_002E"], level="blockgroup",
                           base_url=census.api, api_key=KEY, cache_dir=cache)  # fmt: skip
    assert census.requests == []
    pd.testing.assert_frame_equal(again, table)

    assert len(list(cache.glob("*.json"))) == 3
    assert files_holding(cache, *SECRETS) == []  # ...and kept nowhere else
    assert "ACS 2022" in caplog.text
    assert not any(s in caplog.text for s in SECRETS)


def test_acs_tracts_query_whole_counties(census, tmp_path):
    geoids = ["20001000100", "20001000300"]
    table = acs_indicators(geoids, ["B01003_001E"], level="tract", base_url=census.api,
                           cache_dir=tmp_path)  # fmt: skip
    (query,) = census.queries()
    assert query["for"] == "tract:*" and query["in"] == "state:20 county:001"
    assert "key" not in query  # no key given, none in the environment
    assert table["B01003_001E"].tolist() == [4 * 900.0, 4 * 902.0]


def test_an_unknown_variable_is_named_and_the_key_is_not(census, tmp_path):
    with pytest.raises(InputError) as caught:
        acs_indicators(["200010001001"], ["B19013_001E", "XYZ_999E"], level="blockgroup",
                       base_url=census.api, api_key=KEY, cache_dir=tmp_path)  # fmt: skip
    text = "".join(traceback.format_exception(caught.value))
    assert "no variable 'XYZ_999E'" in str(caught.value) and "\n" not in str(caught.value)
    assert not any(s in text for s in SECRETS)
    assert census.queries()[0]["key"] == KEY
    assert not list(tmp_path.rglob("*.json"))  # an error answer is not cached

    with pytest.raises(InputError, match="did you mean median_income"):
        acs_indicators(["200010001001"], ["median_incme"], level="blockgroup",
                       base_url=census.api, cache_dir=tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    ("geoids", "level", "needle"),
    [(["H000001"], "blockgroup", "12-digit block-group GEOIDs"),
     (["200010001001"], "tract", "11-digit tract GEOIDs"),
     (["20001000100"], "county", "unknown Census level")],
)  # fmt: skip
def test_ids_that_are_not_geoids_are_refused_without_a_request(census, geoids, level, needle):
    with pytest.raises(InputError, match=needle):
        acs_indicators(geoids, ["B19013_001E"], level=level, base_url=census.api)
    assert census.requests == []


def test_aliases_name_acs_variables():
    assert ACS_ALIASES["median_income"] == "B19013_001E"
    assert ACS_ALIASES["poverty"] == "B17021_002E"
    assert acs_variable("b19013_001e") == "B19013_001E"  # the API's names are upper case
    for word in ("NAME", "state", "GEO_ID"):
        with pytest.raises(InputError, match="not an ACS variable"):
            acs_variable(word)


def test_an_answer_in_the_wrong_shape_is_not_cached(census, tmp_path, monkeypatch):
    good = census._answer
    monkeypatch.setattr(
        census,
        "_answer",
        lambda path: (200, "application/json", b'[["NAME","B01003_001E"],["x","5"]]'),
    )
    with pytest.raises(InputError, match="without column"):
        acs_indicators(["200010001001"], ["B01003_001E"], level="blockgroup",
                       base_url=census.api, cache_dir=tmp_path)  # fmt: skip
    assert not list(tmp_path.rglob("*.json"))
    monkeypatch.setattr(census, "_answer", good)  # the server is mended: asked again
    table = acs_indicators(["200010001001"], ["B01003_001E"], level="blockgroup",
                           base_url=census.api, cache_dir=tmp_path)  # fmt: skip
    assert len(census.queries()) == 2 and table["B01003_001E"].notna().all()


# -------------------------------------------------------------------------- the CLI
def make_study(root: Path, origin: tuple[float, float], *, per_zone: int = 10, seed: int = 0):
    """A study with captures, an ``embeddings`` layer and vectors on a 4 x 4 grid of cells.

    Each cell holds ``per_zone`` captures whose first vector component tracks the fake
    median income of the cell (so LASSO has something to learn).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from urbanvis.study import open_study
    from urbanvis.vectors import VECTOR_COLUMN, model_folder

    rng = np.random.default_rng(seed)
    study = open_study(root)
    cells = [(i, j) for i in range(4) for j in range(4) for _ in range(per_zone)]
    ij = np.array(cells, dtype=float)
    xy = np.asarray(origin) + CELL * (ij + rng.uniform(0.1, 0.9, ij.shape))
    n = len(cells)
    points = shapely.points(xy)
    ids = [f"c{k:05d}" for k in range(n)]
    captures = gpd.GeoDataFrame(
        {"capture_id": ids, "point_id": np.arange(n), "provider": "simulator",
         "pano_id": ids, "heading": 0.0, "captured_at": "2023-06", "status": "ok"},
        geometry=points, crs="EPSG:4326",
    )  # fmt: skip
    study.write_layer("captures", captures)
    model = "test-encoder@000000000000"
    income = 30000 + 5000 * ij[:, 0] + 1000 * ij[:, 1]
    vectors = rng.normal(size=(n, 6)).astype(np.float32)
    vectors[:, 0] = income / 10000 + 0.05 * rng.normal(size=n)
    embeddings = gpd.GeoDataFrame(
        {"capture_id": ids, "point_id": np.arange(n), "model": model,
         "pc1": vectors[:, 0], "pc2": vectors[:, 1], "pc3": vectors[:, 2]},
        geometry=points, crs="EPSG:4326",
    )  # fmt: skip
    study.write_layer("embeddings", embeddings)
    folder = model_folder(study, model)
    folder.mkdir(parents=True)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 6)
    pq.write_table(pa.table({"capture_id": ids, VECTOR_COLUMN: column}), folder / "vectors.parquet")
    return root


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("census-studies")
    return {
        "us": make_study(root / "us", (-99.0, 39.0)),
        "fi": make_study(root / "fi", HELSINKI[:2]),
    }


def run_urbanvis(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real entry point, with a clean Census environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("URBANVIS_") and k != "CENSUS_API_KEY"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "urbanvis_cli.main", *args],
        capture_output=True, text=True, env=clean | env, timeout=300,
    )  # fmt: skip


def test_predict_downloads_zones_and_acs_labels_end_to_end(census, studies, tmp_path):
    study = tmp_path / "us"
    shutil.copytree(studies["us"], study)
    cache = tmp_path / "cache"
    env = {"CENSUS_API_KEY": KEY, "URBANVIS_CACHE": str(cache)}
    args = ("predict", "--study", str(study), "--level", "blockgroup", "--indicators",
            "acs:B19013_001E", "--tiger-url", census.tiger, "--census-url", census.api)  # fmt: skip
    result = run_urbanvis(*args, env=env)
    assert result.returncode == 0, result.stderr

    preds = pyogrio.read_dataframe(study / "study.gpkg", layer="predictions_blockgroup")
    assert preds.crs == "EPSG:4326"
    expected = {f"20{'001' if i < 3 else '003'}{i + 1:04d}00{j + 1}"
                for i in range(4) for j in range(4)}  # fmt: skip
    assert set(preds["GEOID"]) == expected  # the captures' cells; columns 4-5 are outside
    assert preds["n_images"].sum() == 160 and (preds["n_images"] == 10).all()
    jam = preds.set_index("GEOID").loc[JAM]
    assert np.isnan(jam["B19013_001E"]) and jam["split"] == "unlabelled"
    assert np.isfinite(jam["B19013_001E_pred"])
    assert {"train", "test"} <= set(preds["split"])
    scores = pd.read_csv(study / "reports" / "predict_blockgroup.csv")
    assert scores.set_index("indicator").loc["B19013_001E", "r2"] > 0.8

    acs = census.queries()
    assert len(acs) == 2 and all(q["key"] == KEY for q in acs)  # two counties
    assert files_holding(study, *SECRETS) == [] and files_holding(cache, *SECRETS) == []
    assert not any(s in result.stdout + result.stderr for s in SECRETS)

    census.requests.clear()  # a second run is served from the cache
    result = run_urbanvis(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert census.requests == []

    # saved models applied to TIGER/Line zones: no labels, no API query
    result = run_urbanvis("predict", "--study", str(study), "--apply",
                          str(study / "models" / "predict_blockgroup.joblib"),
                          "--tiger-url", census.tiger, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    applied = pyogrio.read_dataframe(study / "study.gpkg", layer="predictions_blockgroup")
    assert set(applied["GEOID"]) == expected and applied["B19013_001E_pred"].notna().all()
    assert census.requests == []


@pytest.mark.parametrize(
    ("where", "indicators", "needles"),
    [("fi", "acs:B19013_001E", ("US only", "zones file as --zones")),
     ("us", "acs:XYZ_999E", ("no variable 'XYZ_999E'",)),
     ("us", "acs:", ("at least one ACS variable",))],
)  # fmt: skip
def test_predict_bad_census_input_is_exit_2_and_writes_nothing(
    census, studies, tmp_path, where, indicators, needles
):
    before = tree(studies[where])
    result = run_urbanvis(
        "predict", "--study", str(studies[where]), "--indicators", indicators,
        "--tiger-url", census.tiger, "--census-url", census.api,
        env={"CENSUS_API_KEY": KEY, "URBANVIS_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert_one_line_error(result, *needles)
    assert not any(s in result.stderr for s in SECRETS)
    assert tree(studies[where]) == before
    if where == "fi" or indicators == "acs:":
        assert census.requests == []
