"""The gsv-historical provider against a local fake of Google, through the real CLI.

One local server (tests/fakes/streetview.py) answers both streetlevel's panorama lookup (an
undocumented RPC under maps.googleapis.com, served here by :class:`History`) and the
Static API images by ``pano=``; the CLI reaches both through one ``--endpoint``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
from aiohttp import web as aioweb

from urbanvis._errors import InputError, MissingDependencyError
from urbanvis.providers.base import CAPTURE_COLUMNS
from urbanvis.providers.historical import INSTALL, HistoricalConfig
from urbanvis.study import open_study

from .fakes.streetview import FakeWeb
from .test_cli import assert_one_line_error

pytestmark = pytest.mark.network

KEY = "hist-test-key-0123456789"
SECRET = "dGVzdC1zaWduaW5nLXNlY3JldC0xMjM0NQ=="  # URL-safe base64
LOOKUP_PATH = "/$rpc/google.internal.maps.mapsjs.v1.MapsJsInternalService/SingleImageSearch"
SINCE, UNTIL = (2012, 1), (2020, 12)


class History:
    """The fake SingleImageSearch: the nearest panorama of the fake world, 2-4 older ones
    at the same spot with distinct dates (deterministic per panorama), and one neighbour
    that is not historical. ``script`` holds HTTP statuses for the next lookups; lookups at
    a location in ``broken`` always get 200 with a body that is not JSON."""

    def __init__(self) -> None:
        self.web: FakeWeb | None = None
        self.script: list[int] = []
        self.broken: set[tuple[float, float]] = set()
        self.asked: list[tuple[float, float, float]] = []  # (lat, lon, radius) per lookup
        self.bodies: list[str] = []
        self.older_shift_m = 0.0  # move the older panoramas this far north (a wrong answer)

    def panoramas(self, lat: float, lon: float, radius: float = 50.0):
        """(main, historical, neighbour) as dicts id/lat/lon/date, or None where none."""
        world = self.web.world
        cell = world.lookup(lat, lon, radius)
        if cell is None:
            return None
        j, i = cell[0], cell[1]
        plat, plon = world.pano_location(j, i)
        date = world.pano_date(j, i)
        main = {"id": world.pano_id(j, i), "lat": plat, "lon": plon, "date": date}
        rng = random.Random(f"history-{j}-{i}")
        years = rng.sample([y for y in range(2007, 2025) if y != int(date[:4])], 2 + j % 3)
        b = world.block  # older panoramas: other valid ids of the same (covered) block
        history = []
        for k, year in enumerate(years, start=1):
            hj = (j // b) * b + (j % b + 7 * k) % b
            hi = (i // b) * b + (i % b + 3 * k) % b
            history.append({
                "id": world.pano_id(hj, hi),
                "lat": round(plat + 1e-5 * k + self.older_shift_m / 111_320.0, 9),
                "lon": round(plon - 1e-5 * k, 9),
                "date": f"{year}-{rng.randrange(1, 13):02d}",
            })  # fmt: skip
        nj, ni = world.pano_location(j, i + 1)
        neighbour = {"id": world.pano_id(j, i + 1), "lat": nj, "lon": ni, "date": ""}
        return main, history, neighbour

    def answer(self, lat: float, lon: float, radius: float) -> list:
        """The response body, in the nesting streetlevel's parse.py reads."""
        found = self.panoramas(lat, lon, radius)
        if found is None:
            return [[5]]
        main, history, neighbour = found

        def node(p: dict) -> list:
            return [[2, p["id"]], None, [[None, None, p["lat"], p["lon"]], [11.5], [87.0, 90, 0]]]

        others = [node(main), *(node(p) for p in history), node(neighbour)]
        dates = [[k, [int(p["date"][:4]), int(p["date"][5:])]] for k, p in enumerate(history, 1)]
        year, month = int(main["date"][:4]), int(main["date"][5:])
        where = [[None, None, main["lat"], main["lon"]], [11.5], [87.0, 90.0, 0.0], None, "FI"]
        msg = [
            None,
            [2, main["id"]],
            [None, None, None, [[[[8192, 16384]], [[4096, 8192]]], [512, 512]]],
            [None, None, [["1 Fake Street", "en"]]],
            [[[["© Fake"]]]],
            [[None, where, None, [others], None, None, [[len(others) - 1]], None, dates]],
            [None, None, None, None, None, [None, None, "launch"], None, [year, month]],
        ]
        return [[0], msg]

    async def handle(self, request: aioweb.Request) -> aioweb.Response:
        body = await request.text()
        self.bodies.append(body)
        search = json.loads(body)
        lat, lon, radius = search[1][0][2], search[1][0][3], search[1][1]
        self.asked.append((lat, lon, radius))
        if (lat, lon) in self.broken:
            return aioweb.Response(text=")]}'\n[[0],[nul", content_type="text/plain")
        if self.script:
            status = self.script.pop(0)
            return aioweb.Response(status=status, text=f"{status}\n")
        return aioweb.Response(
            body=json.dumps(self.answer(lat, lon, radius)).encode(),
            headers={"Content-Type": "application/json+protobuf; charset=UTF-8"},
        )


def fake_web(history: History, **options) -> FakeWeb:
    web = FakeWeb(keys={KEY}, extra_routes=[("POST", LOOKUP_PATH, history.handle)], **options)
    history.web = web
    return web


@pytest.fixture
def history():
    return History()


@pytest.fixture
def web(history):
    with fake_web(history) as server:
        yield server


def write_points(study: Path, web: FakeWeb) -> list[dict]:
    """Eight points: seven covered (two of them on one panorama), one with no imagery."""
    spots = [web.sample_location(True, near=(60.17 + 0.004 * k, 24.94)) for k in range(6)]
    spots.append(spots[2])  # a second point on the panorama of the third
    spots.append(web.sample_location(False))
    points = [
        {"point_id": 10 + n, "bearing": 30.0, "lat": lat, "lon": lon}
        for n, (lat, lon) in enumerate(spots)
    ]
    frame = gpd.GeoDataFrame(
        {"point_id": [p["point_id"] for p in points],
         "bearing": [p["bearing"] for p in points],
         "source": "test"},
        geometry=gpd.points_from_xy([p["lon"] for p in points], [p["lat"] for p in points]),
        crs="EPSG:4326",
    )  # fmt: skip
    open_study(study).write_layer("points", frame)
    return points


def expected(history: History, points: list[dict], headings=(0, 180), span=(SINCE, UNTIL)):
    """capture_id -> (pano_id, captured_at, absolute heading, lon, lat) for every ok capture."""
    out = {}
    for p in points:
        found = history.panoramas(p["lat"], p["lon"])
        if found is None:
            continue
        main, older, _neighbour = found
        for pano in [main, *older]:
            when = (int(pano["date"][:4]), int(pano["date"][5:]))
            if not span[0] <= when <= span[1]:
                continue
            for h in headings:
                cid = f"gsvh-{p['point_id']}-{pano['id']}-h{h:03d}"
                out[cid] = (pano["id"], pano["date"], (p["bearing"] + h) % 360,
                            pano["lon"], pano["lat"])  # fmt: skip
    return out


def cli(study: Path, *extra: str, key: str | None = KEY, secret: str | None = None,
        since="2012", until="2020"):  # fmt: skip
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("URBANVIS_", "GOOGLE_MAPS_"))}  # fmt: skip
    if key is not None:
        env["GOOGLE_MAPS_API_KEY"] = key
    if secret is not None:
        env["GOOGLE_MAPS_URL_SECRET"] = secret
    args = ["harvest", "--study", str(study), "--provider", "gsv-historical",
            "--headings", "0,180", "--size", "64", "--rate", "0", "--concurrency", "4"]  # fmt: skip
    if since:
        args += ["--since", since]
    if until:
        args += ["--until", until]
    exe = Path(sys.executable).with_name("urbanvis")
    return subprocess.run([str(exe), *args, *extra], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


def captures(study: Path):
    return pyogrio.read_dataframe(study / "study.gpkg", layer="captures")


def lookups(web: FakeWeb) -> list[dict]:
    return [r for r in web.requests if r["path"] == LOOKUP_PATH]


def images(web: FakeWeb) -> list[dict]:
    return [r for r in web.requests if r["path"] == "/maps/api/streetview"]


def all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# ------------------------------------------------------------------------- the harvest
def test_harvest_captures_every_dated_panorama_once(tmp_path, web, history):
    study = tmp_path / "s"
    points = write_points(study, web)
    want = expected(history, points)
    everything = expected(history, points, span=((0, 0), (9999, 12)))
    assert want and len(everything) > len(want), "the dates must straddle --since/--until"
    history.script = [429, 500]  # the first lookups answer 429 and 500 and are retried
    web.inject("http500", n=1, path_prefix="image")
    web.inject("http429", n=1, path_prefix="image")

    result = cli(study, "--endpoint", web.url)
    assert result.returncode == 0, result.stderr
    # first the cost: a typical 3 dated panoramas x 2 headings per point, lookups unbilled
    assert result.stdout.startswith(
        f"gsv-historical: about {8 * 3 * 2} image requests and 8 free metadata requests"
    )
    assert "estimated cost about USD 0.34 at USD 7.00 per 1,000" in result.stdout
    caps = captures(study)
    assert list(caps.columns[: len(CAPTURE_COLUMNS)]) == CAPTURE_COLUMNS
    assert set(caps["provider"]) == {"gsv-historical"}
    ok = caps[caps["status"] == "ok"]
    assert set(ok["capture_id"]) == set(want) and ok["capture_id"].is_unique
    for row in ok.itertuples():
        pano, date, heading, lon, lat = want[row.capture_id]
        assert (row.pano_id, row.captured_at) == (pano, date)
        assert SINCE <= (int(date[:4]), int(date[5:])) <= UNTIL
        assert row.heading == pytest.approx(heading)
        assert (row.geometry.x, row.geometry.y) == pytest.approx((lon, lat))
        assert (row.width, row.height) == (64, 64)
        assert (study / row.image_path).is_file()
        # the lookup's copyright text (older panoramas carry none: Google's), and where
        assert row.attribution in ("© Fake", "© Google")
        assert (row.pano_lon, row.pano_lat) == pytest.approx((lon, lat))
        assert 0 <= row.distance_m <= 55.0
    assert "© Fake" in set(ok["attribution"])
    # the point with no imagery, and covered points whose panoramas all lie outside the span
    rest = caps[caps["status"] != "ok"]
    assert set(rest["status"]) == {"missing"}
    assert (rest["pano_id"] == "").all()
    empty = {p["point_id"] for p in points if history.panoramas(p["lat"], p["lon"]) is None}
    assert empty and empty <= set(rest["point_id"])
    assert set(rest["point_id"]) | set(ok["point_id"]) == {p["point_id"] for p in points}
    assert not set(rest["point_id"]) & set(ok["point_id"])
    assert rest.groupby("point_id").size().eq(2).all()

    # lookups: one per point plus the two retried, POSTed without any key, body as streetlevel
    # builds it (official panoramas, our radius)
    sent = lookups(web)
    assert sorted(r["status"] for r in sent) == [200] * len(points) + [429, 500]
    assert all(r["method"] == "POST" and not r["query"] for r in sent)
    kinds = {v for r in sent for k, v in r["headers"].items() if k.lower() == "content-type"}
    assert kinds == {"application/json+protobuf"}
    assert not any(KEY in body for body in history.bodies)
    asked = Counter(history.asked)
    wanted = Counter((p["lat"], p["lon"], 50.0) for p in points)
    assert not wanted - asked and (asked - wanted).total() == 2

    # images: by pano id, each (panorama, heading) requested once (one 500 and one 429
    # retried), shared by the two points on one panorama
    shots = images(web)
    assert [r["status"] for r in shots].count(200) == len({(v[0], v[2]) for v in want.values()})
    assert sorted(r["status"] for r in shots if r["status"] != 200) == [429, 500]
    counts = web.image_requests
    assert sum(counts.values()) == len(shots) and max(counts.values()) <= 2
    for r in shots:
        q = r["query"]
        assert q["key"] == KEY and q["size"] == "64x64" and "location" not in q
        assert q["return_error_code"] == "true" and q["fov"] == "90" and q["pitch"] == "0"
        assert (q["pano"], float(q["heading"])) in {(v[0], v[2]) for v in want.values()}
        assert "signature" not in q
    twins = ok[ok["point_id"].isin([12, 16])]
    assert twins.groupby(["pano_id", "heading"])["image_path"].nunique().eq(1).all()
    assert len(twins) == 2 * twins.drop_duplicates(["pano_id", "heading"]).shape[0] > 0
    assert "0 failed" in result.stdout

    # the key never reaches the study folder, the output or the error stream
    assert KEY.encode() not in all_bytes(study)
    assert KEY not in result.stdout + result.stderr

    # a rerun sends nothing: every point is done
    web.reset_log()
    again = cli(study, "--endpoint", web.url)
    assert again.returncode == 0, again.stderr
    assert web.requests == [] and len(captures(study)) == len(caps)
    assert "0 points harvested" in again.stdout


def test_resume_looks_up_only_the_unfinished_points(tmp_path, web, history):
    study = tmp_path / "s"
    points = write_points(study, web)
    first = cli(study, "--endpoint", web.url, "--limit", "3", "--batch-size", "1")
    assert first.returncode == 0, first.stderr
    done = set(captures(study)["point_id"])
    assert len(done) == 3
    history.asked.clear()
    web.reset_log()
    second = cli(study, "--endpoint", web.url)
    assert second.returncode == 0, second.stderr
    rest = [p for p in points if p["point_id"] not in done]
    assert sorted(history.asked) == sorted((p["lat"], p["lon"], 50.0) for p in rest)
    caps = captures(study)
    assert caps["capture_id"].is_unique
    assert set(caps.loc[caps["status"] == "ok", "capture_id"]) == set(expected(history, points))
    # images of the first run are not fetched again
    first_images = set(caps.loc[caps["point_id"].isin(done), "image_path"]) - {""}
    shots = {(r["query"]["pano"], float(r["query"]["heading"])) for r in images(web)}
    stored = caps[caps["point_id"].isin(done) & (caps["status"] == "ok")]
    assert not shots & {(r.pano_id, r.heading) for r in stored.itertuples()}
    assert all((study / p).is_file() for p in first_images)


def test_signed_requests_and_the_secret_stays_out_of_the_study(tmp_path, history):
    with fake_web(history, secret=SECRET) as web:
        study = tmp_path / "s"
        write_points(study, web)
        result = cli(study, "--endpoint", web.url, secret=SECRET)
        assert result.returncode == 0, result.stderr
        shots = images(web)
        assert shots and all("signature" in r["query"] for r in shots)
        assert {r["status"] for r in shots} == {200}  # the fake checks every signature
        assert all("signature" not in r["query"] for r in lookups(web))
        blob = all_bytes(study)
        for secret in (KEY, SECRET):
            assert secret.encode() not in blob
            assert secret not in result.stdout + result.stderr


def test_a_wrong_key_stops_with_one_line_naming_the_variable(tmp_path, web):
    study = tmp_path / "s"
    write_points(study, web)
    result = cli(study, "--endpoint", web.url, key="not-the-right-key-987")
    line = assert_one_line_error(result, "GOOGLE_MAPS_API_KEY")
    assert "not-the-right-key-987" not in result.stdout + result.stderr
    assert "403" in line
    assert {r["status"] for r in images(web)} == {403}


def test_a_refused_lookup_stops_with_one_line(tmp_path, web, history):
    study = tmp_path / "s"
    write_points(study, web)
    history.script = [403] * 50
    result = cli(study, "--endpoint", web.url)
    assert_one_line_error(result, "panorama lookup", "HTTP 403", "streetlevel")
    assert images(web) == []
    assert KEY not in result.stdout + result.stderr


def test_a_lookup_that_keeps_failing_fails_its_point_only(tmp_path, web, history):
    study = tmp_path / "s"
    points = write_points(study, web)
    history.broken = {(points[1]["lat"], points[1]["lon"])}
    result = cli(study, "--endpoint", web.url, "--retries", "2")
    assert result.returncode == 0, result.stderr
    caps = captures(study)
    failed = caps[caps["status"] == "failed"]
    assert set(failed["point_id"]) == {points[1]["point_id"]} and len(failed) == 2
    assert failed["error"].str.contains("unreadable panorama lookup").all()
    assert (caps["point_id"].nunique()) == len(points)
    assert len(history.asked) == len(points) + 2


def test_dates_outside_the_span_are_missing_rows(tmp_path, web, history):
    study = tmp_path / "s"
    points = write_points(study, web)
    result = cli(study, "--endpoint", web.url, since="2030-01", until=None)
    assert result.returncode == 0, result.stderr
    caps = captures(study)
    assert set(caps["status"]) == {"missing"} and images(web) == []
    assert len(caps) == 2 * len(points)
    covered = caps[caps["point_id"] != 17]
    assert covered["error"].str.match(r"none of \d panoramas dated 2030-01\.\.any date").all()
    assert caps.loc[caps["point_id"] == 17, "error"].eq("no panorama within 50 m").all()


def test_older_panoramas_kilometres_away_are_missing_with_their_distance(tmp_path, web, history):
    history.older_shift_m = 3000.0  # the lookup names the older panoramas 3 km north
    study = tmp_path / "s"
    points = write_points(study, web)
    result = cli(study, "--endpoint", web.url, since=None, until=None)
    assert result.returncode == 0, result.stderr
    caps = captures(study)
    for p in points:
        found = history.panoramas(p["lat"], p["lon"])
        if found is None:
            continue
        main, older, _ = found
        mine = caps[caps["point_id"] == p["point_id"]]
        assert set(mine.loc[mine["status"] == "ok", "pano_id"]) == {main["id"]}
        far = mine[mine["pano_id"].isin({o["id"] for o in older})]
        assert set(far["status"]) == {"missing"} and len(far) == 2 * len(older)
        assert far["error"].str.contains(r"is 3,0\d\d m from the point").all()
        assert (far["distance_m"] - 3000.0).abs().max() < 20 and (far["image_path"] == "").all()
        near = mine[mine["status"] == "ok"]
        assert (near["distance_m"] <= 55.0).all()


def test_metadata_only_surveys_without_a_key_or_an_image(tmp_path, web, history):
    study = tmp_path / "s"
    points = write_points(study, web)
    result = cli(study, "--endpoint", web.url, "--metadata-only", key=None)
    assert result.returncode == 0, result.stderr
    assert "gsv-historical coverage" in result.stdout
    assert images(web) == [] and len(lookups(web)) == len(points)
    cover = pyogrio.read_dataframe(study / "study.gpkg", layer="coverage_gsv-historical")
    want = expected(history, points)
    assert set(cover.loc[cover["status"] == "ok", "capture_id"]) == set(want)
    assert "captures" not in pyogrio.list_layers(study / "study.gpkg")[:, 0]


def test_since_after_until_is_one_line(tmp_path, web):
    study = tmp_path / "s"
    write_points(study, web)
    result = cli(study, "--endpoint", web.url, since="2021", until="2019-05")
    assert_one_line_error(result, "--since 2021 is after --until 2019-05")
    assert web.requests == []


def test_lookups_count_against_the_request_budget(tmp_path, web, history):
    study = tmp_path / "s"
    points = write_points(study, web)
    first = cli(study, "--endpoint", web.url, "--max-requests", "5", "--concurrency", "1")
    assert first.returncode == 0, first.stderr
    assert "--max-requests 5 reached" in first.stdout
    assert len(web.requests) == 5 and lookups(web)  # lookups and images, 5 in all
    second = cli(study, "--endpoint", web.url)
    assert second.returncode == 0, second.stderr
    caps = captures(study)
    assert caps["capture_id"].is_unique
    assert set(caps.loc[caps["status"] == "ok", "capture_id"]) == set(expected(history, points))


# ------------------------------------------------------------------------ the library
@pytest.mark.parametrize(
    ("since", "until", "date", "kept"),
    [
        ("2012", "2020", "2012-01", True),
        ("2012", "2020", "2020-12", True),
        ("2012", "2020", "2011-12", False),
        ("2012", "2020", "2021-01", False),
        ("2012-06", "2012-06", "2012-06", True),
        ("2012-06", None, "2012-05", False),
        (None, "2012-06", "2012-07", False),
        (None, None, "", True),
        ("2012", None, "", False),
    ],
)
def test_config_keeps_dates_within_the_span(since, until, date, kept):
    assert HistoricalConfig(since=since, until=until).keeps(date) is kept


@pytest.mark.parametrize("value", ["12", "2012-13", "2012-1", "20120", "last year"])
def test_config_rejects_malformed_dates(value):
    with pytest.raises(InputError, match="a year like 2010 or a month like 2010-06"):
        HistoricalConfig(since=value)


def test_a_missing_streetlevel_names_the_install_command(monkeypatch):
    from urbanvis.providers import provider_from_name

    monkeypatch.setitem(sys.modules, "streetlevel", None)
    with pytest.raises(MissingDependencyError) as caught:
        provider_from_name("gsv-historical", metadata_only=True)
    assert str(caught.value) == INSTALL
    assert INSTALL.endswith("needs the streetlevel package: pip install 'urbanvis[historical]'")
