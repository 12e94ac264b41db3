"""``urbanvis sample --city`` against a fake Nominatim + Overpass server (tests/fakes/osm.py).

A real ``http.server.ThreadingHTTPServer`` runs in a background thread on a random port and
speaks the two request shapes osmnx 2.x sends:

* Nominatim: ``GET <nominatim_url>/search?format=json&polygon_geojson=1&dedupe=0&limit=50
  &q=<city>``, answered with a JSON list of places (each with ``importance``,
  ``boundingbox`` [S, N, W, E], ``lat``, ``lon`` and a GeoJSON ``geojson`` boundary);
* Overpass: ``POST <overpass_url>/interpreter`` with a form field ``data=<Overpass QL>``,
  answered with ``{"elements": [...]}`` of ``node``/``way`` elements. Like the real server,
  the fake applies the query's ``["highway"!~"..."]`` filter, so a drive query does not get
  footways back; the query itself is recorded and checked.

No traffic goes to any other address: the URLs given to urbanvis all point at 127.0.0.1,
the osmnx cache, the Overpass status/rate-limit call and DNS-over-HTTPS are switched off by
``urbanvis.areas.osm_endpoints``, and the subprocesses run with ``NO_PROXY`` covering
127.0.0.1 so that a proxy configured on the machine is not used either.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely

from .fakes.osm import (
    BLOCK,
    CITY,
    GRID,
    FakeOSM,
    OverpassData,
    Town,
    build_town,
    grid_xy,
    nominatim_place,
    to_metres,
)
from .fakes.osm import serve as fake_osm_server

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]

UNKNOWN_CITY = "Nowhereville Xyzzy"
POINT_COLUMNS = ["point_id", "bearing", "edge_id", "osmid", "highway", "source"]


@pytest.fixture
def fake_osm() -> Iterator[FakeOSM]:
    """A fake Nominatim + Overpass on 127.0.0.1:<random port>, serving until the test ends."""
    with fake_osm_server() as fake:
        yield fake


@pytest.fixture
def town(fake_osm: FakeOSM) -> Town:
    """The fake server knows Testville and serves its streets."""
    built = build_town()
    fake_osm.places[CITY.lower()] = [nominatim_place(CITY)]
    fake_osm.overpass = built.data
    return built


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """For in-process calls: talk to 127.0.0.1 directly, and undo osmnx's DNS patch.

    requests must not send 127.0.0.1 through a proxy configured on the machine. Before an
    Overpass query osmnx replaces ``socket.getaddrinfo`` for the whole process
    (``osmnx._http._config_dns``); monkeypatch puts the original back after the test.
    """
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(socket, "getaddrinfo", socket.getaddrinfo)


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- the CLI
def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return subprocess.run(
        [sys.executable, "-m", "urbanvis_cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"stderr should be one line, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def assert_nothing_written(study: Path, cwd: Path) -> None:
    assert not (study / "study.gpkg").exists()
    assert not study.exists(), f"{study} was created: {sorted(p.name for p in study.iterdir())}"
    assert not (cwd / "cache").exists(), "osmnx wrote its cache into the working folder"


# ------------------------------------------------------------------------------- tests
def test_sample_city_online_writes_points_of_the_drive_network(
    fake_osm: FakeOSM, town: Town, tmp_path: Path, no_proxy: None
) -> None:
    import pyogrio

    from urbanvis.sampling import sample

    study = tmp_path / "study"
    result = run_cli(
        [
            "sample",
            "--study",
            str(study),
            "--city",
            CITY,
            "--nominatim-url",
            fake_osm.nominatim_url,
            "--overpass-url",
            fake_osm.overpass_url,
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "points" in result.stdout
    assert not (tmp_path / "cache").exists(), "osmnx wrote its cache into the working folder"

    # --- what the server was asked
    searches = fake_osm.received("GET", "/nominatim/search")
    assert len(searches) == 1
    assert searches[0].query["q"] == [CITY]
    assert searches[0].query["format"] == ["json"]
    assert searches[0].query["polygon_geojson"] == ["1"]
    interpreter = [r for r in fake_osm.requests if r.path == "/api/interpreter"]
    assert len(interpreter) == 1
    ql = (interpreter[0].form or interpreter[0].query)["data"][0]
    assert "[out:json]" in ql and "poly:" in ql
    # a drive query: footways excluded by the server-side filter
    assert re.search(r'\["highway"!~"[^"]*footway', ql), ql
    assert not fake_osm.received("GET", "/api/status"), "rate-limit status call not disabled"
    paths = {r.path for r in fake_osm.requests}
    assert paths <= {"/nominatim/search", "/api/interpreter"}, paths

    # --- the study's points layer
    gpkg = study / "study.gpkg"
    assert gpkg.exists()
    layers = {str(name) for name, _ in pyogrio.list_layers(gpkg)}
    assert "points" in layers
    points = pyogrio.read_dataframe(gpkg, layer="points")
    assert points.crs is not None and points.crs.to_epsg() == 4326
    assert list(points.columns) == [*POINT_COLUMNS, "geometry"]
    assert len(points) > 0
    assert (points.geom_type == "Point").all()
    assert points["point_id"].tolist() == list(range(len(points)))
    assert set(points["source"]) == {"osm"}
    assert set(points["highway"]) == {"residential"}
    assert set(points["osmid"]) == set(town.streets)
    assert points["bearing"].between(0, 360, inclusive="left").all()

    # every point lies on a street of the grid, none on (or near) the footway
    x, y = to_metres(points.geometry.x.to_numpy(), points.geometry.y.to_numpy())
    xy = shapely.points(x, y)
    streets = shapely.union_all([town.data.line(w) for w in town.streets])
    assert float(shapely.distance(streets, xy).max()) < 0.5
    footway = town.data.line(town.footway)
    assert float(shapely.distance(footway, xy).min()) > 10.0
    # 2400 m of street every 15 m (plus street ends and corners): about 160 points
    total = GRID * 2 * (GRID - 1) * BLOCK
    assert total / 15 <= len(points) <= total / 15 + 2 * GRID * GRID

    # points on the one-way streets, away from intersections, face the way they are drawn
    nodes = shapely.points([grid_xy(i, j) for i in range(GRID) for j in range(GRID)])
    near_node = np.array([float(shapely.distance(nodes, p).min()) < 2.0 for p in xy])
    for way_id, expected in ((town.oneway_eastbound, 90.0), (town.oneway_southbound, 180.0)):
        on_way = (points["osmid"].to_numpy() == way_id) & ~near_node
        assert on_way.sum() >= 12
        bearing = points["bearing"].to_numpy()[on_way]
        assert np.allclose(bearing, expected, atol=2.0), (way_id, bearing)

    # --- the Python API agrees
    api = sample(
        city=CITY,
        network="drive",
        spacing=15.0,
        nominatim_url=fake_osm.nominatim_url,
        overpass_url=fake_osm.overpass_url,
    )
    assert list(api.columns) == [*POINT_COLUMNS, "geometry"]
    assert api.crs is not None and api.crs.to_epsg() == 4326
    assert len(api) == len(points)
    for col in ("point_id", "edge_id", "osmid", "highway", "source"):
        assert api[col].tolist() == points[col].tolist(), col
    assert np.allclose(api["bearing"].to_numpy(), points["bearing"].to_numpy())
    assert np.allclose(api.geometry.x.to_numpy(), points.geometry.x.to_numpy(), atol=1e-9)
    assert np.allclose(api.geometry.y.to_numpy(), points.geometry.y.to_numpy(), atol=1e-9)
    assert [r.query["q"] for r in fake_osm.received("GET", "/nominatim/search")] == [[CITY]] * 2


def test_sample_unknown_city_is_one_line_error(
    fake_osm: FakeOSM, town: Town, tmp_path: Path
) -> None:
    study = tmp_path / "study"
    result = run_cli(
        [
            "sample",
            "--study",
            str(study),
            "--city",
            UNKNOWN_CITY,
            "--nominatim-url",
            fake_osm.nominatim_url,
            "--overpass-url",
            fake_osm.overpass_url,
        ],
        cwd=tmp_path,
    )
    line = assert_one_line_error(result)
    assert UNKNOWN_CITY in line
    searches = fake_osm.received("GET", "/nominatim/search")
    assert [r.query["q"] for r in searches] == [[UNKNOWN_CITY]]
    assert not fake_osm.received("POST", "/api/interpreter"), "asked Overpass for no area"
    assert_nothing_written(study, tmp_path)


def test_sample_unknown_city_python_api_raises_place_not_found(
    fake_osm: FakeOSM, town: Town, no_proxy: None
) -> None:
    from urbanvis._errors import PlaceNotFoundError
    from urbanvis.sampling import sample

    with pytest.raises(PlaceNotFoundError, match=UNKNOWN_CITY):
        sample(
            city=UNKNOWN_CITY,
            nominatim_url=fake_osm.nominatim_url,
            overpass_url=fake_osm.overpass_url,
        )


def test_sample_offline_is_one_line_error(tmp_path: Path) -> None:
    port = closed_port()
    study = tmp_path / "study"
    result = run_cli(
        [
            "sample",
            "--study",
            str(study),
            "--city",
            CITY,
            "--nominatim-url",
            f"http://127.0.0.1:{port}/",
            "--overpass-url",
            f"http://127.0.0.1:{port}/api",
        ],
        cwd=tmp_path,
    )
    line = assert_one_line_error(result)
    assert "offline" in line.lower()
    assert "--osm" in line
    assert_nothing_written(study, tmp_path)


def test_sample_offline_python_api_raises_offline_error(no_proxy: None) -> None:
    from urbanvis._errors import OfflineError
    from urbanvis.sampling import sample

    port = closed_port()
    with pytest.raises(OfflineError, match="offline") as caught:
        sample(
            city=CITY,
            nominatim_url=f"http://127.0.0.1:{port}/",
            overpass_url=f"http://127.0.0.1:{port}/api",
        )
    assert caught.value.param == "osm"  # the way out: an OSM extract, named by its keyword
    assert "pass it as --osm" in caught.value.worded(lambda name: f"--{name}")


def test_sample_overpass_offline_is_one_line_error(
    fake_osm: FakeOSM, town: Town, tmp_path: Path
) -> None:
    """The geocoder answers but the Overpass server is down."""
    study = tmp_path / "study"
    result = run_cli(
        [
            "sample",
            "--study",
            str(study),
            "--city",
            CITY,
            "--nominatim-url",
            fake_osm.nominatim_url,
            "--overpass-url",
            f"http://127.0.0.1:{closed_port()}/api",
        ],
        cwd=tmp_path,
    )
    line = assert_one_line_error(result)
    assert "offline" in line.lower()
    assert "--osm" in line
    assert len(fake_osm.received("GET", "/nominatim/search")) == 1
    assert_nothing_written(study, tmp_path)


@pytest.mark.parametrize("served", ["nothing", "nodes without ways", "only a footway"])
def test_sample_no_drive_roads_is_one_line_error(
    fake_osm: FakeOSM, tmp_path: Path, served: str
) -> None:
    fake_osm.places[CITY.lower()] = [nominatim_place(CITY)]
    if served == "nothing":
        fake_osm.overpass = OverpassData()
    elif served == "nodes without ways":
        fake_osm.overpass = build_town().data
        fake_osm.overpass_without_ways = True
    else:
        data = OverpassData()
        data.way([(-50.0, -50.0), (0.0, 0.0), (50.0, 50.0)], highway="footway")
        fake_osm.overpass = data
    study = tmp_path / "study"
    result = run_cli(
        [
            "sample",
            "--study",
            str(study),
            "--city",
            CITY,
            "--nominatim-url",
            fake_osm.nominatim_url,
            "--overpass-url",
            fake_osm.overpass_url,
        ],
        cwd=tmp_path,
    )
    line = assert_one_line_error(result)
    assert "no drive roads" in line
    assert len(fake_osm.received("POST", "/api/interpreter")) == 1
    assert_nothing_written(study, tmp_path)


# --------------------------------------------------------------------------------------
# A geocoder that answers with an HTTP error page: osmnx raises ResponseStatusCodeError (a
# ValueError); it must become a one-line "try again later or --osm" error, not a traceback.
@pytest.mark.parametrize("status", [500, 503])
def test_sample_geocoder_http_error_is_one_line_error(
    fake_osm: FakeOSM, town: Town, tmp_path: Path, status: int
) -> None:
    fake_osm.nominatim_status = status
    study = tmp_path / "study"
    result = run_cli(
        [
            "sample",
            "--study",
            str(study),
            "--city",
            CITY,
            "--nominatim-url",
            fake_osm.nominatim_url,
            "--overpass-url",
            fake_osm.overpass_url,
        ],
        cwd=tmp_path,
    )
    line = assert_one_line_error(result)
    assert CITY in line
    assert "--osm" in line  # the geocoder failed: try again later or work offline
    assert len(fake_osm.received("GET", "/nominatim/search")) == 1
    assert_nothing_written(study, tmp_path)


# An Overpass server that answers with an HTTP error page must not be reported as "no
# roads" (which would send the user the wrong way) but as a failing server.
@pytest.mark.parametrize("status", [500, 503])
def test_sample_overpass_http_error_is_not_reported_as_no_roads(
    fake_osm: FakeOSM, town: Town, tmp_path: Path, status: int
) -> None:
    fake_osm.overpass_status = status
    study = tmp_path / "study"
    result = run_cli(
        [
            "sample",
            "--study",
            str(study),
            "--city",
            CITY,
            "--nominatim-url",
            fake_osm.nominatim_url,
            "--overpass-url",
            fake_osm.overpass_url,
        ],
        cwd=tmp_path,
    )
    line = assert_one_line_error(result)
    assert "no drive roads" not in line, line
    assert "--osm" in line, line
    assert len(fake_osm.received("POST", "/api/interpreter")) == 1
    assert_nothing_written(study, tmp_path)
