"""The mapillary provider against the local fake Graph API: listing, paging, the choice of
images per point (checked against a brute-force reference), shared thumbnails, retries,
resume, metadata-only coverage and the token kept out of every file and message."""

from __future__ import annotations

import collections
import hashlib
import math
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from PIL import Image

from urbanvis._errors import InputError
from urbanvis.harvest import harvest
from urbanvis.providers import provider_from_name
from urbanvis.providers._webhttp import FatalError, WebSettings
from urbanvis.providers.base import CAPTURE_COLUMNS
from urbanvis.providers.mapillary import (
    MapillaryConfig,
    MapillaryProvider,
    MlyImage,
    images_from_listing,
    time_bounds,
)
from urbanvis.sampling import POINT_COLUMNS
from urbanvis.study import open_study

from .fakes.streetview import FakeWeb
from .test_cli import assert_one_line_error

pytestmark = pytest.mark.network

TOKEN = "MLY|4417tok-Zq81-secret-9e2c"
FIELDS = {
    "id", "captured_at", "compass_angle", "computed_geometry", "geometry", "sequence",
    "creator", "thumb_1024_url",
}  # fmt: skip
EARTH = 6_371_008.8


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def web():
    with FakeWeb(tokens={TOKEN}) as server:
        yield server


def fast(web, **kw) -> WebSettings:
    return WebSettings(endpoint=web.url, rate=None, backoff=0.01, backoff_max=0.05, **kw)


def road_points(web, n: int = 60, spacing: float = 15.0) -> pd.DataFrame:
    """``n`` points 15 m apart along an east-west road in the covered fake world, a few with
    no bearing, and three points far from any image."""
    lat0, lon0 = web.sample_location(True)
    lat0 += 4.0 / 111_320  # between two rows of images
    kx = 111_320 * math.cos(math.radians(lat0))
    lon = lon0 + np.arange(n) * spacing / kx
    lat = np.full(n, lat0)
    bearing = np.full(n, 90.0)
    bearing[::7] = np.nan  # no road direction: headings count from north
    far_lat, far_lon = web.sample_location(False)
    lon = np.r_[lon, far_lon + np.arange(3) * 15 / kx]
    lat = np.r_[lat, np.full(3, far_lat)]
    bearing = np.r_[bearing, np.full(3, 45.0)]
    return pd.DataFrame(
        {"point_id": np.arange(len(lon)) + 100, "bearing": bearing, "lon": lon, "lat": lat}
    )


def make_study(root: Path, points: pd.DataFrame):
    study = open_study(root)
    n = len(points)
    layer = gpd.GeoDataFrame(
        {
            "point_id": points["point_id"].to_numpy(np.int64),
            "bearing": points["bearing"].to_numpy(float),
            "edge_id": np.zeros(n, dtype=np.int64),
            "osmid": np.zeros(n, dtype=np.int64),
            "highway": "residential",
            "source": "osm",
        },
        geometry=gpd.points_from_xy(points["lon"], points["lat"]),
        crs="EPSG:4326",
    )
    study.write_layer("points", layer[POINT_COLUMNS])
    return study


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH * math.asin(math.sqrt(a))


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


def reference(
    web,
    points: pd.DataFrame,
    *,
    headings=(0.0, 90.0, 180.0, 270.0),
    radius: float = 20.0,
    per_point: int = 1,
    since_ms: int | None = None,
    until_ms: int | None = None,
    absolute: bool = False,
) -> dict[str, dict]:
    """capture_id -> expected row, chosen by brute force from everything the fake holds
    around each point: per heading, the images facing it within radius; per capture day the
    nearest of that day; the days whose nearest image is nearest, newest first."""
    rows: dict[str, dict] = {}
    for p in points.itertuples(index=False):
        box = (p.lon - 0.003, p.lat - 0.0015, p.lon + 0.003, p.lat + 0.0015)  # ~150 m around
        near = []
        for im in web.mly_images_in(box):
            lon, lat = im["computed_geometry"]["coordinates"]
            d = metres(p.lon, p.lat, lon, lat)
            t = im["captured_at"]
            if d > radius or (since_ms is not None and t < since_ms):
                continue
            if until_ms is not None and t > until_ms:
                continue
            near.append((d, im))
        base = 0.0 if absolute or math.isnan(p.bearing) else p.bearing
        taken = set()
        for offset in headings:
            want = (base + offset) % 360
            tag = f"mly-{p.point_id}-h{int(round(offset)) % 360:03d}"
            facing = [
                (d, im) for d, im in near
                if abs((im["compass_angle"] - want + 180) % 360 - 180) <= 45
            ]  # fmt: skip
            best_of_day: dict[str, tuple] = {}
            for d, im in facing:
                day = stamp(im["captured_at"])[:10]
                best = best_of_day.get(day)
                if best is None or (d, im["id"]) < (best[0], best[1]["id"]):
                    best_of_day[day] = (d, im)
            days = sorted(best_of_day.values(), key=lambda t: (t[0], t[1]["id"]))[:per_point]
            days.sort(key=lambda t: t[1]["captured_at"], reverse=True)
            if not days:
                rows[tag + "-0"] = {
                    "point_id": p.point_id, "status": "missing", "pano_id": "",
                    "error": f"no Mapillary image within {radius:g} m" if not near else
                    f"no Mapillary image within {radius:g} m facing {want:.0f} +/- 45 deg",
                    "mly_sequence": "", "heading": round(want, 3), "lon": p.lon, "lat": p.lat,
                }  # fmt: skip
            for k, (d, im) in enumerate(days):
                if im["id"] in taken:
                    continue
                taken.add(im["id"])
                lon, lat = im["computed_geometry"]["coordinates"]
                rows[f"{tag}-{k}"] = {
                    "point_id": p.point_id, "status": "ok", "pano_id": im["id"], "error": "",
                    "mly_sequence": im["sequence"], "heading": im["compass_angle"],
                    "captured_at": stamp(im["captured_at"]), "lon": lon, "lat": lat,
                    "distance_m": d,
                    "attribution": f"© {im['creator']['username']}, Mapillary, CC BY-SA 4.0"
                    if "creator" in im else "Mapillary, CC BY-SA 4.0",
                }  # fmt: skip
    return rows


def assert_rows_match(table: pd.DataFrame, expected: dict[str, dict]) -> None:
    assert table["capture_id"].is_unique
    got = table.set_index("capture_id")
    assert set(got.index) == set(expected)
    for cid, want in expected.items():
        row = got.loc[cid]
        for col in ("point_id", "status", "pano_id", "error", "mly_sequence"):
            assert row[col] == want[col], (cid, col, row[col], want[col])
        assert row["heading"] == pytest.approx(want["heading"], abs=1e-3), cid
        if want["status"] == "ok":
            assert row["captured_at"] == want["captured_at"], cid
            # where the image was taken, and how far from the point (sphere vs ellipsoid
            # differ by well under 0.5 m at these distances)
            assert (row["pano_lon"], row["pano_lat"]) == pytest.approx((want["lon"], want["lat"]))
            assert row["attribution"] == want["attribution"], cid
            assert row["distance_m"] <= 20.0 and abs(row["distance_m"] - want["distance_m"]) <= 0.5
        elif want["status"] == "missing" and "distance_m" in got.columns:
            assert math.isnan(row["distance_m"]), cid
        geom = row["geometry"] if "geometry" in got.columns else None
        if geom is not None:
            assert (geom.x, geom.y) == pytest.approx((want["lon"], want["lat"]), abs=1e-7), cid


def listing_requests(web) -> list[dict]:
    return [r for r in web.requests if r["endpoint"] == "mapillary"]


def thumb_paths(web) -> collections.Counter:
    return collections.Counter(r["path"] for r in web.requests if r["endpoint"] == "thumb")


def read(study, layer: str = "captures") -> gpd.GeoDataFrame:
    return pyogrio.read_dataframe(study.gpkg, layer=layer)


def cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("urbanvis")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("URBANVIS_") and k != "MAPILLARY_TOKEN"
    }
    env.update(env_extra or {})
    return subprocess.run(
        [str(exe), "harvest", "--provider", "mapillary", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def token_nowhere(root: Path, *texts: str) -> None:
    needle = TOKEN.encode()
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "study.gpkg" for p in files) and any(p.name == "study.toml" for p in files)
    for path in files:
        assert needle not in path.read_bytes(), path
    for text in texts:
        assert TOKEN not in text


# ------------------------------------------------------------------- configuration
def test_since_until_are_inclusive_periods_and_checked():
    start, end = time_bounds("2020", "2020-02")
    assert start == int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert end == int(datetime(2020, 3, 1, tzinfo=UTC).timestamp() * 1000) - 1
    assert time_bounds("2019-06-03", None) == (
        int(datetime(2019, 6, 3, tzinfo=UTC).timestamp() * 1000), None
    )  # fmt: skip
    assert time_bounds(None, "2019-06-03")[1] == (
        int(datetime(2019, 6, 4, tzinfo=UTC).timestamp() * 1000) - 1
    )
    assert MapillaryConfig(since=2015).since == "2015"  # type: ignore[arg-type]
    MapillaryConfig(since="2020-06", until="2020")  # June is within 2020
    with pytest.raises(InputError, match=r"^since 2021 is after until 2020") as info:
        MapillaryConfig(since="2021", until="2020")
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="since 'last year' is not a year"):
        MapillaryConfig(since="last year")
    for bad in ({"radius": 0}, {"captures_per_point": 0}, {"page_size": 2001}, {"headings": ()}):
        with pytest.raises(InputError):
            MapillaryConfig(**bad)


def test_the_token_comes_from_the_environment_or_a_file_and_never_shows(tmp_path, monkeypatch):
    monkeypatch.delenv("MAPILLARY_TOKEN", raising=False)
    with pytest.raises(InputError, match="MAPILLARY_TOKEN"):
        MapillaryProvider()
    monkeypatch.setenv("MAPILLARY_TOKEN", TOKEN)
    provider = provider_from_name("mapillary", radius=20.0, since="2016")
    assert isinstance(provider, MapillaryProvider) and provider.config.radius == 20.0
    params = provider.parameters()
    assert params["since"] == "2016" and params["captures_per_point"] == 1
    assert TOKEN not in repr(params) and TOKEN not in repr(provider)
    monkeypatch.delenv("MAPILLARY_TOKEN")
    path = tmp_path / "token.txt"
    path.write_text("\n  other-token-1234  \n", encoding="utf-8")
    assert MapillaryProvider(token_file=str(path))._auth() == {
        "Authorization": "OAuth other-token-1234"
    }


def test_listing_fields_are_all_optional():
    point = {"type": "Point", "coordinates": [24.94, 60.17]}
    records = [
        {"id": "1", "computed_geometry": point, "geometry": {"coordinates": [0, 0]},
         "captured_at": 1_600_000_000_000, "compass_angle": 370.5, "sequence": "s1",
         "thumb_1024_url": "https://cdn/1.jpg"},
        {"id": 2, "geometry": point},  # no computed geometry, nothing else either
        {"id": "3"},  # no location at all: skipped
        {"id": "4", "computed_geometry": {"coordinates": ["x", 1]}, "geometry": None},
        {"id": "1", "computed_geometry": point},  # repeated on another page
        {"computed_geometry": point},  # no id
        "not a record",
        {"id": "5", "computed_geometry": point, "captured_at": None, "compass_angle": "n/a",
         "sequence": {"id": "s5"}, "thumb_1024_url": ""},
    ]  # fmt: skip
    images = images_from_listing(records)
    assert [im.id for im in images] == ["1", "2", "5"]
    first, second, fifth = images
    assert (first.lon, first.lat) == (24.94, 60.17) and first.compass == pytest.approx(10.5)
    assert first.captured_at == "2020-09-13T12:26" and first.sequence == "s1"
    assert (second.lon, second.lat) == (24.94, 60.17)
    assert second.captured_ms is None and second.captured_at == "" and math.isnan(second.compass)
    assert second.sequence == "" and second.thumb is None
    assert fifth.sequence == "s5" and fifth.thumb is None and math.isnan(fifth.compass)
    assert images_from_listing(None) == [] and images_from_listing({"data": 1}) == []


def test_choice_per_heading_fallback_days_and_no_repeats():
    provider = MapillaryProvider(
        MapillaryConfig(radius=25, captures_per_point=2), token="test-token-0000"
    )
    lon0, lat0 = 24.94, 60.17
    kx = math.radians(1) * EARTH * math.cos(math.radians(lat0))
    ky = math.radians(1) * EARTH

    def image(name, east, north, compass, day, hour=12):
        ms = int(datetime(2018, 1, day, hour, tzinfo=UTC).timestamp() * 1000) if day else None
        return MlyImage(name, lon0 + east / kx, lat0 + north / ky, ms, compass, "", "u")

    images = [
        image("A", 0, 5, 45.0, 1),  # faces both north and east: chosen once, for north
        image("B", 3, 0, math.nan, 2),  # no compass: only where nothing else faces
        image("C", -7, 0, 200.0, 3),  # faces south, but farther than two other days
        image("D", 0, 30, 10.0, 4),  # beyond 25 m
        image("E", 0, -3, 180.0, 10, hour=8),
        image("F", 0, -4, 180.0, 10, hour=9),  # same day as E, farther: left out
        image("G", 0, -6, 180.0, 12),
        image("H", 0, -8, 180.0, 5),  # a third day: beyond captures_per_point
    ]
    chosen = provider.choose(lon0, lat0, math.nan, images)
    got = [(offset, k, im.id if im else None) for _, offset, k, im, _ in chosen]
    # north: A; east: A again (dropped); south: the nearest image of the two nearest days,
    # E (day 10) and G (day 12), newest first; west: nothing faces, so the compass-less B
    assert got == [(0.0, 0, "A"), (180.0, 0, "G"), (180.0, 1, "E"), (270.0, 0, "B")]
    # with a road bearing of 90, offset 0 looks east and offset 270 north: A faces both
    east = provider.choose(lon0, lat0, 90.0, images[:1])
    assert [(o, k, im.id if im else why) for _, o, k, im, why in east] == [
        (0.0, 0, "A"),
        (90.0, None, "no Mapillary image within 25 m facing 180 +/- 45 deg"),
        (180.0, None, "no Mapillary image within 25 m facing 270 +/- 45 deg"),
    ]
    nothing = provider.choose(lon0 + 1, lat0, 0.0, images)
    assert {why for *_, why in nothing} == {"no Mapillary image within 25 m"}
    assert len(nothing) == 4


# ----------------------------------------------------------------- the harvest engine
def test_harvest_matches_the_brute_force_choice_and_shares_thumbnails(web, tmp_path):
    points = road_points(web)
    study = make_study(tmp_path / "s", points)
    cfg = MapillaryConfig(radius=20, captures_per_point=2, page_size=40)
    first = harvest(study, MapillaryProvider(cfg, fast(web), token=TOKEN), limit=30)
    assert first.points_harvested == 30 and not first.stopped
    summary = harvest(study, MapillaryProvider(cfg, fast(web), token=TOKEN))
    assert summary.points_done_before == 30 and summary.points_harvested == len(points) - 30

    caps = read(study)
    assert list(caps.columns[: len(CAPTURE_COLUMNS)]) == CAPTURE_COLUMNS
    assert "mly_sequence" in caps.columns
    expected = reference(web, points, per_point=2)
    assert_rows_match(caps, expected)
    assert set(caps["point_id"]) == set(points["point_id"])  # every point recorded
    statuses = collections.Counter(caps["status"])
    assert statuses["ok"] > 60 and statuses["missing"] > 0 and statuses["failed"] == 0
    assert (caps.groupby("point_id")["captured_at"].nunique() > 1).any()  # two days kept
    far = caps[caps["point_id"] >= 160]
    assert set(far["error"]) == {"no Mapillary image within 20 m"} and len(far) == 3 * 4

    # listing: bbox covers each point's radius, official fields, limit, token in the header
    lists = listing_requests(web)
    firsts = [r for r in lists if "after" not in r["query"]]
    for r in lists:
        assert r["path"] == "/images"
        assert r["headers"].get("Authorization") == f"OAuth {TOKEN}"
        assert "access_token" not in r["query"] and TOKEN not in str(r["query"])
        assert set(r["query"]["fields"].split(",")) == FIELDS
        assert r["query"]["limit"] == "40"
    boxes = [tuple(map(float, r["query"]["bbox"].split(","))) for r in firsts]
    dlat = 20.0 / 111_195
    for p in points.itertuples():
        dlon = dlat / math.cos(math.radians(p.lat))
        assert any(
            b[0] <= p.lon - dlon and b[2] >= p.lon + dlon and b[1] <= p.lat - dlat
            and b[3] >= p.lat + dlat for b in boxes
        ), p.point_id  # fmt: skip
    # paging: every page of every tile, once
    pages = 0
    for box in boxes:
        n = len(web.mly_images_in(box))
        pages += max(1, math.ceil(n / 40))
    assert len(lists) == pages and pages > len(boxes) + 2
    afters = [(r["query"]["bbox"], r["query"]["after"]) for r in lists if "after" in r["query"]]
    assert len(afters) == len(set(afters))

    # thumbnails: one request per distinct image over both runs, never with the token
    thumbs = thumb_paths(web)
    ok = caps[caps["status"] == "ok"]
    assert set(thumbs.values()) == {1}
    assert set(thumbs) == {f"/mly/thumbs/{i}.jpg" for i in ok["pano_id"]}
    assert ok["pano_id"].duplicated().any()  # neighbours did share images
    assert len(ok.drop_duplicates("pano_id")) == len(set(ok["image_path"]))
    for r in web.requests:
        if r["endpoint"] == "thumb":
            assert "Authorization" not in r["headers"]
    for row in ok.drop_duplicates("image_path").itertuples():
        path = study.root / row.image_path
        assert Path(row.image_path).stem == f"mly{row.pano_id}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256
        with Image.open(path) as im:
            assert im.size == (256, 192)
    fetched_now = ok[ok["width"] > 0]
    assert (fetched_now[["width", "height"]] == [256, 192]).all().all()
    assert caps["fov"].isna().all() and (caps["pitch"] == 0).all()

    # a third run finds every point done and sends nothing
    before = len(web.requests)
    again = harvest(study, MapillaryProvider(cfg, fast(web), token=TOKEN))
    assert again.points_harvested == 0 and len(web.requests) == before


def test_retries_on_429_500_and_cut_responses(web, tmp_path):
    points = road_points(web, n=24)
    study = make_study(tmp_path / "s", points)
    web.inject("http429", n=2, path_prefix="mapillary")
    web.inject("truncated", n=1, path_prefix="mapillary")
    web.inject("http500", n=2, path_prefix="thumb")
    web.inject("truncated", n=2, path_prefix="thumb")
    web.inject("http503", n=1, path_prefix="thumb")
    summary = harvest(study, MapillaryProvider(MapillaryConfig(radius=20), fast(web), token=TOKEN))
    assert web.pending_faults == []
    assert summary.stats["retries"] >= 8
    caps = read(study)
    assert_rows_match(caps, reference(web, points))
    assert "failed" not in set(caps["status"])
    faulted = collections.Counter(r["fault"] for r in web.requests if r["fault"])
    assert faulted == {"http429": 2, "truncated": 3, "http500": 2, "http503": 1}


def test_a_thumbnail_that_keeps_failing_is_a_failed_row(web, tmp_path):
    points = road_points(web, n=24)
    expected = reference(web, points)
    ok_ids = sorted({r["pano_id"] for r in expected.values() if r["status"] == "ok"})
    broken, wrong, flaky = ok_ids[:3]
    web.inject("http500", n=2, path_prefix=f"/mly/thumbs/{broken}.jpg")
    web.inject("wrong_content_type", n=2, path_prefix=f"/mly/thumbs/{wrong}.jpg")
    web.inject("http500", n=1, path_prefix=f"/mly/thumbs/{flaky}.jpg")
    study = make_study(tmp_path / "s", points)
    provider = MapillaryProvider(MapillaryConfig(radius=20), fast(web, retries=1), token=TOKEN)
    harvest(study, provider)
    caps = read(study)
    for row in expected.values():
        if row["pano_id"] in (broken, wrong):
            row.update(status="failed")
    failed = caps[caps["status"] == "failed"]
    assert set(failed["pano_id"]) == {broken, wrong}
    assert set(failed.loc[failed["pano_id"] == broken, "error"]) == {
        "thumbnail: HTTP 500 (2 tries)"
    }
    assert set(failed.loc[failed["pano_id"] == wrong, "error"]) == {
        "thumbnail: expected an image, got text/html; charset=utf-8 (2 tries)"
    }
    assert (failed["image_path"] == "").all() and (failed["mly_sequence"] != "").all()
    caps.loc[caps["status"] == "failed", "error"] = ""
    assert_rows_match(caps, expected)
    assert thumb_paths(web)[f"/mly/thumbs/{flaky}.jpg"] == 2


def test_a_thumbnail_that_does_not_decode_is_retried_then_a_short_reason():
    import asyncio

    import aiohttp
    from aiohttp import web as aioweb

    from urbanvis.providers._webhttp import Http, TransientError

    served = []

    async def broken(request):
        served.append(request.path)
        return aioweb.Response(
            body=b"\xff\xd8\xff\xe0 not really a jpeg", content_type="image/jpeg"
        )

    async def scenario() -> str:
        app = aioweb.Application()
        app.router.add_get("/t/1.jpg", broken)
        runner = aioweb.AppRunner(app)
        await runner.setup()
        await aioweb.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/t/1.jpg?sig=abc"
        settings = WebSettings(retries=2, rate=None)
        provider = MapillaryProvider(None, settings, token="test-token-0000")
        try:
            async with aiohttp.ClientSession() as session:
                provider.http = Http(session, settings)
                with pytest.raises(TransientError) as info:
                    await provider._thumb(url)
        finally:
            await runner.cleanup()
        return str(info.value)

    reason = asyncio.run(scenario())
    assert reason.startswith("thumbnail: image does not decode") and "\n" not in reason
    assert served == ["/t/1.jpg"] * 3


# ------------------------------------------------------------------------- the CLI
def test_cli_harvest_filters_dates_resumes_and_keeps_the_token_secret(web, tmp_path):
    points = road_points(web, n=40)
    study = make_study(tmp_path / "s", points)
    args = ("--study", str(study.root), "--endpoint", web.url, "--radius", "20",
            "--headings", "0,180", "--since", "2016", "--until", "2023-06")  # fmt: skip
    result = cli(*args, "--limit", "25", env_extra={"MAPILLARY_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert "25 points harvested" in result.stdout
    result2 = cli(*args, env_extra={"MAPILLARY_TOKEN": TOKEN})
    assert result2.returncode == 0, result2.stderr
    assert "(25 already done)" in result2.stdout

    since_ms, until_ms = time_bounds("2016", "2023-06")
    expected = reference(
        web, points, headings=(0.0, 180.0), since_ms=since_ms, until_ms=until_ms
    )  # fmt: skip
    unfiltered = reference(web, points, headings=(0.0, 180.0))
    assert expected != unfiltered  # the dates do leave images out here
    caps = read(study)
    assert_rows_match(caps, expected)
    first = listing_requests(web)[0]
    assert first["query"]["limit"] == "2000"
    assert first["query"]["start_captured_at"] == "2016-01-01T00:00:00Z"
    assert first["query"]["end_captured_at"] == "2023-07-01T00:00:00Z"
    thumbs = thumb_paths(web)
    assert set(thumbs.values()) == {1}

    # everything done: a rerun sends no request at all
    before = len(web.requests)
    result3 = cli(*args, env_extra={"MAPILLARY_TOKEN": TOKEN})
    assert result3.returncode == 0, result3.stderr
    assert len(web.requests) == before

    # another date window is refused rather than mixed into the same captures
    other = cli(*args[:-1], "2022", env_extra={"MAPILLARY_TOKEN": TOKEN})
    assert_one_line_error(other, "until")
    token_nowhere(study.root, *(r.stdout + r.stderr for r in (result, result2, result3, other)))


def test_cli_wrong_or_missing_token_is_one_line_naming_the_variable(web, tmp_path):
    study = make_study(tmp_path / "s", road_points(web, n=10))
    wrong = "MLY|not-the-right-token-77"
    result = cli("--study", str(study.root), "--endpoint", web.url,
                 env_extra={"MAPILLARY_TOKEN": wrong})  # fmt: skip
    line = assert_one_line_error(result, "MAPILLARY_TOKEN", "refused")
    assert wrong not in result.stdout + result.stderr and "not-the-right" not in line
    boxes = [r["query"]["bbox"] for r in listing_requests(web)]
    assert boxes and len(boxes) == len(set(boxes))  # a refusal is not retried
    assert web.count("thumb") == 0 and not study.has_layer("captures")
    before = len(web.requests)
    missing = cli("--study", str(study.root), "--endpoint", web.url)
    assert_one_line_error(missing, "MAPILLARY_TOKEN")
    assert len(web.requests) == before


def test_a_refusal_midway_keeps_what_finished(web, tmp_path):
    points = road_points(web, n=60)
    study = make_study(tmp_path / "s", points)
    web.slow_seconds = 0.0
    web.inject("slow", n=4, path_prefix="mapillary")  # four tiles listed as usual...
    web.inject("request_denied", n=1, path_prefix="mapillary")  # ...then the token is revoked
    cfg = MapillaryConfig(radius=20, tile_size=100)
    provider = MapillaryProvider(cfg, fast(web, concurrency=1), token=TOKEN)
    with pytest.raises(FatalError, match="MAPILLARY_TOKEN") as info:
        harvest(study, provider)
    assert TOKEN not in str(info.value) and "\n" not in str(info.value)
    done = set(read(study)["point_id"])
    assert 0 < len(done) < len(points)
    summary = harvest(study, MapillaryProvider(cfg, fast(web), token=TOKEN))
    assert summary.points_done_before == len(done)
    assert_rows_match(read(study), reference(web, points))


def test_cli_metadata_only_writes_coverage_and_fetches_no_thumbnail(web, tmp_path):
    points = road_points(web, n=40)
    study = make_study(tmp_path / "s", points)
    key_file = tmp_path / "mly.token"
    key_file.write_text(TOKEN + "\n", encoding="utf-8")
    result = cli("--study", str(study.root), "--endpoint", web.url, "--radius", "20",
                 "--headings", "90,270", "--absolute-headings", "--metadata-only",
                 "--key-file", str(key_file))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mapillary coverage" in result.stdout
    assert web.count("thumb") == 0 and web.count("mapillary") > 0
    assert not study.has_layer("captures") and not (study.root / "images" / "mapillary").exists()
    coverage = read(study, "coverage_mapillary")
    expected = reference(web, points, headings=(90.0, 270.0), absolute=True)
    assert_rows_match(coverage, expected)
    assert {"ok", "missing"} <= set(coverage["status"])
    token_nowhere(study.root, result.stdout, result.stderr)


# ------------------------------------------------------------------------ dense areas
def test_a_dense_tile_is_split_until_every_image_is_listed_exactly_once(tmp_path):
    cap = 100
    with FakeWeb(tokens={TOKEN}, mly_cap=cap) as web:
        lat, lon = web.sample_location(True)
        points = pd.DataFrame(
            {"point_id": [1, 2], "bearing": [90.0, 90.0], "lat": [lat, lat + 0.003],
             "lon": [lon, lon + 0.005]}
        )  # fmt: skip
        cfg = MapillaryConfig(radius=25.0, tile_size=5000.0)  # one tile, ~380 x 330 m
        listed: list[tuple[tuple, list[MlyImage]]] = []

        def spying(provider: MapillaryProvider) -> MapillaryProvider:
            top = provider._listing

            async def listing(bbox):
                found = await top(bbox)
                listed.append((bbox, found))
                return found

            provider._listing = listing  # type: ignore[method-assign]
            return provider

        # the stand-in keeps its cap: a client that never splits loses images silently
        blind = spying(MapillaryProvider(cfg, fast(web), token=TOKEN, metadata_only=True,
                                         listing_cap=10**9))  # fmt: skip
        blind.capture_points(points)
        bbox, found = listed[0]
        everything = {im["id"] for im in web.mly_images_in(bbox)}
        assert len(everything) > 3 * cap and len(found) == cap
        # splitting: every image of the tile once, however many quarter boxes it took
        listed.clear()
        web.reset_log()
        dense = spying(MapillaryProvider(cfg, fast(web), token=TOKEN, metadata_only=True,
                                         listing_cap=cap))  # fmt: skip
        dense.capture_points(points)
        (bbox, found), *rest = [t for t in listed if t[0] == bbox]
        ids = [im.id for im in found]
        assert len(ids) == len(set(ids)) and set(ids) == everything
        searches = listing_requests(web)
        assert dense.splits >= 3 and len(searches) == 1 + 4 * dense.splits
        assert not rest  # only the tile's own box went through the top listing


def test_max_distance_widens_or_narrows_the_images_a_point_may_take():
    lon0, lat0 = 24.94, 60.17
    ky = math.radians(1) * EARTH
    images = [MlyImage("near", lon0, lat0 + 10 / ky, None, 0.0, "", "u"),
              MlyImage("far", lon0, lat0 + 40 / ky, None, 0.0, "", "u")]  # fmt: skip

    def chosen(**cfg) -> list[str | None]:
        provider = MapillaryProvider(MapillaryConfig(headings=(0.0,), **cfg), token="t-0000")
        picks = provider.choose(lon0, lat0, 0.0, images)
        return [im.id if im else why for _, _, _, im, why in picks]

    assert chosen(radius=25.0) == ["near"]
    assert chosen(radius=25.0, max_distance=5.0) == ["no Mapillary image within 5 m"]
    assert chosen(radius=5.0, max_distance=50.0) == ["near"]
    with pytest.raises(InputError, match="max_distance"):
        MapillaryConfig(max_distance=-1.0)
