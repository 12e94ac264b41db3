"""The folder provider: EXIF and manifests, attachment to points, the real harvest engine."""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from PIL import Image
from pyproj import Geod

from urbanvis._errors import InputError
from urbanvis.harvest import harvest
from urbanvis.providers.base import CAPTURE_COLUMNS
from urbanvis.providers.folder import FolderProvider, attach_images, points_from_images
from urbanvis.sampling import POINT_COLUMNS
from urbanvis.study import open_study

GEOD = Geod(ellps="WGS84")
BASE = (24.9400, 60.1700)  # lon, lat


def moved(lon: float, lat: float, azimuth: float, metres: float) -> tuple[float, float]:
    x, y, _ = GEOD.fwd(lon, lat, azimuth, metres)
    return float(x), float(y)


def dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    d = math.floor(value)
    m = math.floor((value - d) * 60)
    return float(d), float(m), round((value - d - m / 60) * 3600, 6)


def write_image(
    path: Path,
    lon: float | None = None,
    lat: float | None = None,
    *,
    heading: float | None = None,
    original: str | None = None,
    plain_time: str | None = None,
    size: tuple[int, int] = (48, 32),
) -> Path:
    """A real image (noise, so every file differs) with GPS and time EXIF as a camera writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(hashlib.sha1(path.name.encode()).hexdigest()[:8], 16))
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    if plain_time is not None:
        exif[0x0132] = plain_time
    if original is not None:
        exif.get_ifd(0x8769)[0x9003] = original
    if lon is not None and lat is not None:
        gps = exif.get_ifd(0x8825)
        gps[1] = "N" if lat >= 0 else "S"
        gps[2] = dms(lat)
        gps[3] = "E" if lon >= 0 else "W"
        gps[4] = dms(lon)
        if heading is not None:
            gps[16] = "T"
            gps[17] = heading
    img.save(path, exif=exif)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def study_with_points(root: Path, lonlat: list[tuple[float, float]]):
    study = open_study(root)
    points = gpd.GeoDataFrame(
        {
            "point_id": np.arange(len(lonlat), dtype=np.int64),
            "bearing": np.full(len(lonlat), 90.0),
            "edge_id": np.zeros(len(lonlat), dtype=np.int64),
            "osmid": np.zeros(len(lonlat), dtype=np.int64),
            "highway": "residential",
            "source": "osm",
        },
        geometry=gpd.points_from_xy(*zip(*lonlat, strict=True)),
        crs="EPSG:4326",
    )
    study.write_layer("points", points)
    return study


# ------------------------------------------------------------------------ EXIF
@pytest.mark.parametrize(
    ("lon", "lat"), [(24.941234, 60.170987), (-43.172897, -22.906847), (151.2093, -33.8688)]
)
def test_scan_reads_gps_heading_and_time_back(tmp_path, lon, lat):
    write_image(tmp_path / "a.jpg", lon, lat, heading=123.45, original="2021:06:03 10:15:07")
    write_image(tmp_path / "sub" / "b.png", lon + 1e-4, lat, plain_time="2019:01:02 03:04:05")
    write_image(tmp_path / "nogps.jpg", plain_time="2020:01:01 00:00:00")
    provider = FolderProvider(tmp_path)
    images = provider.scan()
    assert list(images["name"]) == ["a.jpg", "sub/b.png"]
    assert images["lon"].to_numpy() == pytest.approx([lon, lon + 1e-4], abs=1e-6)
    assert images["lat"].to_numpy() == pytest.approx([lat, lat], abs=1e-6)
    assert images.loc[0, "heading"] == pytest.approx(123.45, abs=1e-6)
    assert math.isnan(images.loc[1, "heading"])
    # DateTimeOriginal first, DateTime when that is all there is
    assert list(images["captured_at"]) == ["2021-06-03T10:15:07", "2019-01-02T03:04:05"]
    assert provider.without_gps == ["nogps.jpg"]
    ids = images["capture_id"]
    assert ids.is_unique and ids[0] == "folder-" + hashlib.sha1(b"a.jpg").hexdigest()[:16]
    assert list(FolderProvider(tmp_path).scan()["capture_id"]) == list(ids)  # stable


def test_images_without_gps_are_reported(tmp_path, caplog):
    write_image(tmp_path / "a.jpg", *BASE)
    write_image(tmp_path / "b.jpg")
    write_image(tmp_path / "c.jpg", 0.0, 0.0)  # a camera without a fix writes 0, 0
    with caplog.at_level(logging.WARNING, logger="urbanvis.providers.folder"):
        images = FolderProvider(tmp_path).scan()
    assert list(images["name"]) == ["a.jpg"]
    warned = [r.getMessage() for r in caplog.records if "no GPS EXIF" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("2 of 3 images") and "b.jpg" in warned[0]


def test_since_until_and_headings_filter_known_values_only(tmp_path):
    write_image(tmp_path / "2018.jpg", *BASE, heading=10.0, original="2018:05:01 12:00:00")
    write_image(tmp_path / "2021.jpg", *BASE, heading=100.0, original="2021:05:01 12:00:00")
    write_image(tmp_path / "unknown.jpg", *BASE)

    def names(**kw) -> list[str]:
        return list(FolderProvider(tmp_path, **kw).scan()["name"])

    assert names(since=2020) == ["2021.jpg", "unknown.jpg"]
    assert names(until="2019-12") == ["2018.jpg", "unknown.jpg"]
    assert names(since="2018-05-01", until=2018) == ["2018.jpg", "unknown.jpg"]
    assert names(since="2018-05-02", until="2021-04-30") == ["unknown.jpg"]
    assert names(headings=[0, 180]) == ["2018.jpg", "unknown.jpg"]
    assert names(headings=[90]) == ["2021.jpg", "unknown.jpg"]
    assert FolderProvider(tmp_path, since=2019, until="2021-06").parameters() == {
        "source": str(tmp_path.resolve()),
        "radius": 25.0,
        "headings": None,
        "since": "2019",
        "until": "2021-06",
    }


# ------------------------------------------------------------------- manifests
def test_csv_manifest_relative_and_absolute_paths(tmp_path):
    shots = tmp_path / "shots"
    a = write_image(shots / "a.jpg")  # no EXIF: the manifest gives everything
    b = write_image(tmp_path / "elsewhere" / "b.jpg")
    manifest = shots / "list.csv"
    manifest.write_text(
        f"path,lon,lat,heading,date\na.jpg,24.9412345,60.1709876,370,2020-05\n{b},-3.5,40.25,,\n"
    )
    images = FolderProvider(manifest).scan().set_index("path")
    assert images.loc[str(a), "name"] == "a.jpg"
    assert images.loc[str(b), "name"] == str(b.resolve())
    assert images.loc[str(a), ["lon", "lat"]].tolist() == pytest.approx([24.9412345, 60.1709876])
    assert images.loc[str(a), "heading"] == pytest.approx(10.0)
    assert images.loc[str(a), "captured_at"] == "2020-05"
    assert math.isnan(images.loc[str(b), "heading"]) and images.loc[str(b), "captured_at"] == ""


def test_geopackage_manifest_in_another_crs(tmp_path):
    write_image(tmp_path / "imgs" / "a.jpg")
    write_image(tmp_path / "imgs" / "b.jpg")
    lon, lat = [24.9412345, 24.9421], [60.1709876, 60.1702]
    frame = gpd.GeoDataFrame(
        {"path": ["imgs/a.jpg", "imgs/b.jpg"], "heading": [45.0, None], "date": ["2022", ""]},
        geometry=gpd.points_from_xy(lon, lat),
        crs="EPSG:4326",
    ).to_crs("EPSG:3857")
    assert abs(frame.geometry.x.iloc[0]) > 1e6  # really metres, not degrees
    pyogrio.write_dataframe(frame, tmp_path / "manifest.gpkg", layer="photos", driver="GPKG")
    images = FolderProvider(tmp_path / "manifest.gpkg").scan()
    assert list(images["name"]) == ["imgs/a.jpg", "imgs/b.jpg"]
    assert images["lon"].to_numpy() == pytest.approx(lon, abs=1e-9)
    assert images["lat"].to_numpy() == pytest.approx(lat, abs=1e-9)
    assert images.loc[0, "heading"] == 45.0 and math.isnan(images.loc[1, "heading"])
    assert list(images["captured_at"]) == ["2022", ""]


# --------------------------------------------------------------------- points
@pytest.mark.parametrize(
    "centre",
    [BASE, (179.9995, -16.5), (6.0, 45.0)],  # ordinary; across the antimeridian; a UTM edge
)
def test_attach_matches_a_brute_force_geodesic_nearest(centre, caplog):
    rng = np.random.default_rng(7)

    def scatter(n: int) -> pd.DataFrame:
        xy = [
            moved(*centre, az, d)
            for az, d in zip(rng.uniform(0, 360, n), rng.uniform(0, 300, n), strict=True)
        ]
        lon, lat = np.array(xy).T
        return pd.DataFrame({"lon": (lon + 180) % 360 - 180, "lat": lat})

    points = scatter(60).assign(point_id=np.arange(60) * 3 + 5)
    images = scatter(400).assign(name=[f"{i}.jpg" for i in range(400)])
    with caplog.at_level(logging.INFO, logger="urbanvis.providers.folder"):
        got = attach_images(images, points, radius=25.0).set_index("name")
    n = len(images)
    _, _, dist = GEOD.inv(
        np.repeat(images["lon"].to_numpy(), len(points)),
        np.repeat(images["lat"].to_numpy(), len(points)),
        np.tile(points["lon"].to_numpy(), n),
        np.tile(points["lat"].to_numpy(), n),
    )
    dist = dist.reshape(n, len(points))
    best = dist.argmin(axis=1)
    near = dist[np.arange(n), best] <= 25.0
    assert 0 < near.sum() < n  # both cases occur
    expected = dict(
        zip(images["name"][near], points["point_id"].to_numpy()[best[near]], strict=True)
    )
    assert got["point_id"].to_dict() == expected
    assert got["distance_m"].to_numpy() == pytest.approx(dist[near, best[near]], abs=1e-6)
    logged = [r.getMessage() for r in caplog.records if "attached" in r.getMessage()]
    assert len(logged) == 1 and f"{n - near.sum()} farther than 25 m" in logged[0]


def test_points_from_images_has_the_points_schema(tmp_path):
    write_image(tmp_path / "a1.jpg", *BASE, heading=0.0)
    write_image(tmp_path / "a2.jpg", *moved(*BASE, 45, 0.4), heading=180.0)  # same spot
    write_image(tmp_path / "b.jpg", *moved(*BASE, 90, 30))
    write_image(tmp_path / "c.jpg", *moved(*BASE, 90, 31.5))  # 1.5 m from b: its own point
    images = FolderProvider(tmp_path).scan()
    points = points_from_images(images)
    assert list(points.columns) == POINT_COLUMNS
    assert points.crs.to_epsg() == 4326
    assert points["point_id"].dtype == np.int64 and points["point_id"].is_unique
    assert len(points) == 3 and points["bearing"].isna().all()
    assert set(points["source"]) == {"folder"}
    assert len(points_from_images(images, merge_distance=0)) == 4
    assert len(points_from_images(images.iloc[:0])) == 0
    attached = attach_images(images, points, radius=25.0).set_index("name")["point_id"]
    assert attached["a1.jpg"] == attached["a2.jpg"] != attached["b.jpg"] != attached["c.jpg"]


# ---------------------------------------------------------------- the engine
@pytest.fixture
def photo_walk(tmp_path):
    """Three points 100 m apart along a street and a folder of geotagged photos."""
    p0 = BASE
    p1 = moved(*p0, 90, 100)
    p2 = moved(*p0, 90, 200)
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", *moved(*p0, 0, 5), heading=90.0, original="2021:06:03 10:15:00")
    write_image(photos / "b.jpg", *moved(*p0, 180, 8), plain_time="2019:01:02 03:04:05")
    write_image(photos / "day2" / "c.jpg", *moved(*p1, 270, 20), heading=270.0)
    write_image(photos / "far.jpg", *moved(*p0, 0, 1000))
    write_image(photos / "nogps.jpg")
    broken = write_image(photos / "broken.jpg", *moved(*p1, 0, 3), size=(256, 256))
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])  # EXIF intact, image data cut short
    study = study_with_points(tmp_path / "study", [p0, p1, p2])
    return study, photos


def test_harvest_through_the_engine_stores_the_files_unchanged(photo_walk):
    study, photos = photo_walk
    summary = harvest(study, FolderProvider(photos))
    assert summary.counts == {"ok": 3, "missing": 1, "failed": 1}
    caps = pyogrio.read_dataframe(study.gpkg, layer="captures")
    assert list(caps.columns[: len(CAPTURE_COLUMNS)]) == CAPTURE_COLUMNS
    assert caps["capture_id"].is_unique and set(caps["provider"]) == {"folder"}
    sources = FolderProvider(photos).scan().set_index("capture_id")
    by_status = {s: g for s, g in caps.groupby("status")}
    ok = by_status["ok"].set_index("capture_id")
    assert sorted(ok["point_id"]) == [0, 0, 1]
    for cid, row in ok.iterrows():
        source = Path(sources.loc[cid, "path"])
        stored = study.root / row["image_path"]
        assert sha256(stored) == sha256(source) == row["sha256"]
        assert stored.suffix == ".jpg"
        with Image.open(source) as im:
            assert (row["width"], row["height"]) == im.size
        # the row sits where the image was taken, not on the point
        assert row.geometry.x == pytest.approx(sources.loc[cid, "lon"], abs=1e-9)
        assert row.geometry.y == pytest.approx(sources.loc[cid, "lat"], abs=1e-9)
    names = sources.loc[ok.index, "name"]
    assert dict(zip(names, ok["captured_at"], strict=True)) == {
        "a.jpg": "2021-06-03T10:15:00",
        "b.jpg": "2019-01-02T03:04:05",
        "day2/c.jpg": "",
    }
    headings = dict(zip(names, ok["heading"], strict=True))
    assert headings["a.jpg"] == 90.0 and headings["day2/c.jpg"] == 270.0
    assert math.isnan(headings["b.jpg"])
    assert ok["pano_id"].eq("").all() and ok["pitch"].eq(0).all() and ok["fov"].isna().all()
    failed = by_status["failed"].iloc[0]
    assert failed["point_id"] == 1 and failed["image_path"] == "" and failed["width"] == 0
    assert "broken.jpg" in failed["error"] and "\n" not in failed["error"]
    missing = by_status["missing"].iloc[0]
    assert missing["point_id"] == 2 and missing["capture_id"] == "folder-missing-2"
    assert (missing["width"], missing["height"], missing["image_path"]) == (0, 0, "")
    stored = {p for p in (study.images / "folder").rglob("*") if p.is_file()}
    assert stored == {study.root / p for p in ok["image_path"]}

    # a rerun fetches nothing and touches nothing
    stamps = {p: p.stat().st_mtime_ns for p in stored}
    again = harvest(study, FolderProvider(photos))
    assert again.points_harvested == 0 and again.points_done_before == 3
    assert len(pyogrio.read_dataframe(study.gpkg, layer="captures")) == len(caps)
    assert stamps == {p: p.stat().st_mtime_ns for p in stored}
    # other settings would mix captures: refused
    with pytest.raises(InputError, match="radius"):
        harvest(study, FolderProvider(photos, radius=50.0))


def test_prepare_attaches_to_the_nearest_point_across_batches(tmp_path):
    p0, p1 = BASE, moved(*BASE, 90, 30)
    write_image(tmp_path / "photos" / "x.jpg", *moved(*p0, 90, 18))  # 12 m from p1
    study = study_with_points(tmp_path / "study", [p0, p1])
    provider = FolderProvider(tmp_path / "photos")
    provider.prepare(study)  # the engine's hook, called here in case an engine does not
    harvest(study, provider, batch_size=1)  # p0 and p1 in separate batches
    caps = pyogrio.read_dataframe(study.gpkg, layer="captures", read_geometry=False)
    assert dict(zip(caps["point_id"], caps["status"], strict=True)) == {0: "missing", 1: "ok"}


def test_a_study_seeded_from_the_images(tmp_path):
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", *BASE, heading=0.0)
    write_image(photos / "a-back.jpg", *moved(*BASE, 10, 0.3), heading=180.0)
    write_image(photos / "b.jpg", *moved(*BASE, 90, 40), heading=90.0)
    provider = FolderProvider(photos)
    study = open_study(tmp_path / "study")
    assert not study.has_layer("points")
    provider.prepare(study)
    points = study.read_layer("points")
    assert list(points.columns) == POINT_COLUMNS and len(points) == 2
    summary = harvest(study, provider)
    assert summary.points_total == 2 and summary.counts == {"ok": 3, "missing": 0, "failed": 0}
    caps = study.read_layer("captures", read_geometry=False)
    assert caps.groupby("point_id").size().to_dict() == {0: 2, 1: 1}
    # nothing passes the filters: no points can be placed, and the user is told why
    with pytest.raises(InputError, match="no points and no image"):
        FolderProvider(photos, headings=[270]).prepare(open_study(tmp_path / "other"))


def test_an_undecodable_file_is_a_failed_row_not_a_crash(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"this is not a JPEG at all")
    write_image(tmp_path / "good.jpg")
    (tmp_path / "list.csv").write_text("path,lon,lat\njunk.jpg,24.94,60.17\ngood.jpg,24.94,60.17\n")
    provider = FolderProvider(tmp_path / "list.csv")
    batch = pd.DataFrame({"point_id": [4], "bearing": [np.nan], "lon": [24.94], "lat": [60.17]})
    results = {r.row["capture_id"]: r for r in provider.capture_points(batch)}
    ids = provider.scan().set_index("name")["capture_id"]
    junk, good = results[ids["junk.jpg"]], results[ids["good.jpg"]]
    assert junk.row["status"] == "failed" and junk.image is None
    assert "junk.jpg does not decode" in junk.row["error"] and junk.row["width"] == 0
    assert good.row["status"] == "ok" and good.image == (tmp_path / "good.jpg").read_bytes()
    assert (good.row["width"], good.row["height"], good.suffix) == (48, 32, ".jpg")


# ----------------------------------------------------------------- bad input
def _csv(body: str):
    def make(root: Path) -> Path:
        write_image(root / "a.jpg")
        write_image(root / "b.jpg")
        (root / "m.csv").write_text(body)
        return root / "m.csv"

    return make


def _folder_without_gps(root: Path) -> Path:
    for name in ("a.jpg", "b.png", "c/d.jpeg"):
        write_image(root / "imgs" / name)
    (root / "imgs" / "notes.txt").write_text("not an image")
    return root / "imgs"


def _gpkg_without_path(root: Path) -> Path:
    frame = gpd.GeoDataFrame({"file": ["a.jpg"]}, geometry=gpd.points_from_xy([1], [2]), crs=4326)
    pyogrio.write_dataframe(frame, root / "m.gpkg", driver="GPKG")
    return root / "m.gpkg"


def _empty_folder(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda root: root / "nope", ["does not exist", "nope"]),
        (_folder_without_gps, ["none of the 3 images", "has gps exif", "path,lon,lat"]),
        (_empty_folder, ["holds no jpg"]),
        (_csv("path,lon\na.jpg,1\n"), ["lacks column lat", "path, lon, lat"]),
        (_gpkg_without_path, ["lacks column path"]),
        (_csv("path,lon,lat\na.jpg,1,2\nb.jpg,1,north\n"), ["row 2", "'b.jpg'", "lat", "north"]),
        (_csv("path,lon,lat\na.jpg,1,\n"), ["row 1", "lat is empty"]),
        (_csv("path,lon,lat\na.jpg,1,2\nb.jpg,3,95\n"), ["row 2", "lat 95", "-90..90"]),
        (_csv("path,lon,lat\na.jpg,200,2\n"), ["row 1", "lon 200", "-180..180"]),
        (
            _csv("path,lon,lat\na.jpg,1,2\nx/gone.jpg,1,2\nalso.jpg,1,2\n"),
            ["2 of the 3 paths", "do not exist", "first: 'x/gone.jpg'", "row 2"],
        ),
        (_csv("path,lon,lat\na.jpg,1,2\n./a.jpg,1,2\n"), ["a.jpg twice", "rows 1 and 2"]),
        (_csv("path,lon,lat,date\na.jpg,1,2,last june\n"), ["row 1", "date 'last june'"]),
        (_csv("path,lon,lat\n"), ["lists no images"]),
    ],
)
def test_bad_sources_raise_one_line_input_errors(tmp_path, make, needles):
    source = make(tmp_path)
    with pytest.raises(InputError) as caught:
        FolderProvider(source).scan()
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle.lower() in message.lower(), (needle, message)


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"radius": 0}, "radius must be a positive"),
        ({"radius": float("nan")}, "radius must be a positive"),
        ({"radius": "wide"}, "radius must be a positive"),
        ({"since": 2022, "until": 2020}, "since 2022 is after until 2020"),
        ({"since": "2021-07", "until": "2021-06-30"}, "is after"),
        ({"since": "spring"}, "since 'spring' is not a year"),
        ({"headings": ["north"]}, "headings must be degrees"),
    ],
)
def test_bad_settings_raise_one_line_input_errors(tmp_path, settings, needle):
    with pytest.raises(InputError, match=needle) as caught:
        FolderProvider(tmp_path, **settings)
    assert "\n" not in str(caught.value)
