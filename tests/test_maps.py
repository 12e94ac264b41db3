"""Web maps and GeoTIFF surfaces: drawn in a real (headless) Chromium, reopened with rasterio."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from urbanvis import maps
from urbanvis._errors import InputError

from .conftest import make_town_study, run_cli
from .test_cli import assert_one_line_error, tree

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is missing: install Debian's chromium (apt-get install -y chromium) "
    "to check maps in a real browser",
)
SECRET = "secret-test-key-5f1c"


# ---------------------------------------------------------------------- helpers
def run_map(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``urbanvis map ...`` as a user runs it (through the CLI's one-line error handling)."""
    from urbanvis_cli.main import cli

    if "map" in cli.commands:
        if env is None:
            return run_cli("map", *args)
        exe = Path(sys.executable).with_name("urbanvis")
        cmd = [str(exe), "map", *args]
    else:  # not registered in cli/main.py yet: register it the same way, in a fresh process
        code = (
            "import sys; from urbanvis_cli.main import cli, main; "
            "from urbanvis_cli.map import map_command; cli.add_command(map_command, 'map'); "
            "main(sys.argv[1:])"
        )
        cmd = [sys.executable, "-c", code, "map", *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("URBANVIS_")}
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def open_in_chromium(html: Path, tmp: Path, *, screenshot: bool = True) -> dict:
    """Load ``html`` from a local HTTP server in headless Chromium, after its scripts ran.

    Returns the features each urbanvis layer drew (written into the page by its script),
    the dumped DOM, every URL the page asked for (from Chromium's net log) and the
    screenshot path. Host names other than 127.0.0.1 do not resolve, so nothing else
    could be reached even if the page tried; the net log shows whether it tried.
    """
    handler = functools.partial(_Quiet, directory=str(html.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/{html.name}"
    tmp.mkdir(parents=True, exist_ok=True)
    netlog = tmp / "net.json"
    base = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1000,700", "--virtual-time-budget=15000",
    ]  # fmt: skip
    try:
        dom = subprocess.run(
            [*base, f"--user-data-dir={tmp / 'profile1'}", f"--log-net-log={netlog}",
             "--dump-dom", url],  # fmt: skip
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        png = tmp / "shot.png"
        if screenshot:
            subprocess.run(
                [*base, f"--user-data-dir={tmp / 'profile2'}", f"--screenshot={png}", url],
                capture_output=True, timeout=120, check=True,
            )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    match = re.search(r'id="urbanvis-drawn" data-counts="([^"]*)"', dom)
    counts = json.loads(match.group(1).replace("&quot;", '"')) if match else None
    return {"counts": counts, "dom": dom, "urls": page_requests(netlog), "png": png}


def page_requests(netlog: Path) -> set[str]:
    """URLs the page asked for, and the page itself.

    Requests the browser makes for itself (update and account pings) have no origin
    ("not an origin") and are not the page's; the top-level navigation has none either.
    """
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = set()
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start or "url" not in params:
            continue
        if params.get("initiator") != "not an origin" or "127.0.0.1" in params["url"]:
            urls.add(params["url"])
    return urls


def assert_local_only(urls: set[str]) -> None:
    outside = {
        u
        for u in urls
        if not re.match(r"(file:|data:|blob:|https?://(127\.0\.0\.1|localhost)[:/])", u)
    }
    assert not outside, f"the page requested {sorted(outside)}"


def svg_elements(dom: str, key: str) -> int:
    return len(re.findall(rf'class="uv-{key} leaflet-interactive"', dom))


def not_blank(png: Path) -> bool:
    from PIL import Image

    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=100_000)
    return colours is None or len(colours) > 20


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A harvested town with simulated ground truth (zones_sim with indicators)."""
    root = tmp_path_factory.mktemp("maps")
    st = make_town_study(
        root / "s", "--captures-per-point", "2", "--headings", "0,180", "--size", "48"
    )
    result = run_cli("simulate", "--study", str(st), "--truth", "--points-per-zone", "20")
    assert result.returncode == 0, result.stderr
    return st


def read(study: Path, layer: str):
    import pyogrio

    return pyogrio.read_dataframe(study / "study.gpkg", layer=layer)


def predictions_layer(study: Path):
    """zones_sim with predicted indicators X_pred next to each observed X."""
    zones = read(study, "zones_sim")
    rng = np.random.default_rng(0)
    for col in ("poverty_rate", "median_income"):
        zones[f"{col}_pred"] = zones[col] * (1 + rng.normal(0, 0.1, len(zones)))
    return zones


# ---------------------------------------------------------------------- in the browser
@needs_chromium
def test_captures_map_draws_every_capture_offline(study, tmp_path):
    out = tmp_path / "web" / "captures.html"
    result = run_map(
        "--study", str(study), "--layer", "captures", "--tiles", "none", "--out", str(out),
        env={"GOOGLE_MAPS_API_KEY": SECRET, "MAPILLARY_TOKEN": SECRET + "-m"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert SECRET not in html
    assert "cdn.jsdelivr" not in html and "<script src=" not in html
    assert "data:image/jpeg;base64," in html  # embedded thumbnails
    captures = read(study, "captures")
    page = open_in_chromium(out, tmp_path / "chrome")
    assert page["counts"] == {"points0": len(captures)}
    assert svg_elements(page["dom"], "points0") == len(captures)
    assert "leaflet-control-layers" in page["dom"] and "imagery date" in page["dom"]
    assert "uv-legend" in page["dom"]  # the date legend
    assert_local_only(page["urls"])
    assert any(u.endswith("/captures.html") for u in page["urls"])  # the log saw the page
    assert not_blank(page["png"])
    assert any(r["command"] == "map" for r in __import__("tomllib").loads(
        (study / "study.toml").read_text())["runs"])  # fmt: skip


@needs_chromium
def test_the_network_check_sees_tile_requests(study, tmp_path):
    """Control for the offline check: a map with OpenStreetMap tiles asks for tiles."""
    out = tmp_path / "osm.html"
    assert run_map("--study", str(study), "--layer", "points", "--out", str(out)).returncode == 0
    page = open_in_chromium(out, tmp_path / "chrome", screenshot=False)
    assert page["counts"] == {"points0": len(read(study, "points"))}
    with pytest.raises(AssertionError, match="openstreetmap"):
        assert_local_only(page["urls"])


@needs_chromium
def test_zone_choropleths_observed_predicted_residual(study, tmp_path):
    zones = predictions_layer(study)
    m = maps.map_from_layer(zones, "poverty_rate", tiles="none")
    out = maps.write_map(m, tmp_path / "zones.html")
    html = out.read_text()
    for name in ("poverty_rate observed", "poverty_rate predicted", "poverty_rate residual"):
        assert name in html
    page = open_in_chromium(out, tmp_path / "chrome")
    # the observed layer is shown on opening; predicted and residual are a click away
    assert page["counts"] == {"zones0": len(zones), "zones1": 0, "zones2": 0}
    assert svg_elements(page["dom"], "zones0") == len(zones)
    assert "uv-legend" in page["dom"] and "poverty_rate" in page["dom"]
    assert_local_only(page["urls"])
    assert not_blank(page["png"])


@needs_chromium
def test_large_layers_draw_on_a_canvas(tmp_path):
    rng = np.random.default_rng(1)
    n = maps.SVG_LIMIT + 1000
    frame = gpd.GeoDataFrame(
        {"value": rng.normal(size=n)},
        geometry=gpd.points_from_xy(24.9 + rng.random(n) * 0.05, 60.1 + rng.random(n) * 0.05),
        crs=4326,
    )
    out = maps.write_map(maps.map_from_layer(frame, "value", tiles="none"), tmp_path / "big.html")
    page = open_in_chromium(out, tmp_path / "chrome", screenshot=False)
    assert page["counts"] == {"points0": n}
    assert svg_elements(page["dom"], "points0") == 0 and "<canvas" in page["dom"]


def test_imagery_credit_is_shown_on_the_map(tmp_path):
    rng = np.random.default_rng(2)
    credits = ["© Google", "© alice, Mapillary, CC BY-SA 4.0", None, "© Google", ""]
    frame = gpd.GeoDataFrame(
        {"attribution": credits, "value": rng.normal(size=5)},
        geometry=gpd.points_from_xy(24.9 + rng.random(5) * 0.01, 60.1 + rng.random(5) * 0.01),
        crs=4326,
    )
    assert maps.imagery_credit(frame) == "© Google; © alice, Mapillary, CC BY-SA 4.0"
    out = maps.write_map(maps.map_from_layer(frame, "value", tiles="none"), tmp_path / "c.html")
    page = open_in_chromium(out, tmp_path / "chrome", screenshot=False)
    assert "Imagery: © Google; © alice, Mapillary, CC BY-SA 4.0</div>" in page["dom"]
    many = frame.iloc[[0] * 20].assign(attribution=[f"© user{i}" for i in range(20)])
    assert maps.imagery_credit(many).endswith("; and 8 more")
    assert maps.imagery_credit(frame.drop(columns="attribution")) == ""


# ---------------------------------------------------------------------- the HTML
def test_zones_sim_from_the_cli_with_a_column(study, tmp_path):
    out = tmp_path / "zones_sim.html"
    result = run_map(
        "--study", str(study), "--layer", "zones_sim", "--column", "median_income",
        "--tiles", "none", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert "median_income observed" in html and "residual" not in html


def test_a_predictions_layer_without_column_maps_the_paired_indicator(study):
    zones = predictions_layer(study)
    html = maps.render_html(maps.map_from_layer(zones, tiles="none"))
    assert "median_income residual" in html or "poverty_rate residual" in html


def test_embedding_layer_colours_pc1_to_pc3_as_rgb():
    frame = gpd.GeoDataFrame(
        {
            "capture_id": ["a", "b", "c"],
            "pc1": [-1.0, 0.0, 1.0],
            "pc2": [-1.0, 0.0, 1.0],
            "pc3": [1.0, 0.0, -1.0],
        },
        geometry=gpd.points_from_xy([24.90, 24.91, 24.92], [60.10, 60.11, 60.12]),
        crs=4326,
    )
    m = maps.map_from_layer(frame, tiles="none")
    html = maps.render_html(m)
    assert "embedding (pc1-pc3 as RGB)" in html
    spec = json.loads(re.findall(r"urbanvis\.points\(\s*(\{.*?\}), map_", html, re.S)[1])
    assert spec["color"] == ["#0000ff", "#808080", "#ffff00"]


def test_capture_popups_link_thumbnails_relative_to_the_html(study, tmp_path):
    captures = read(study, "captures")
    zones = read(study, "zones_sim")
    html_dir = tmp_path / "deep" / "web"
    m = maps.map_from_layer(
        captures, tiles="none", zones=zones, study_root=study, html_dir=html_dir,
        thumbnails="link",
    )  # fmt: skip
    html = maps.render_html(m)
    spec = json.loads(re.search(r"urbanvis\.points\(\s*(\{.*?\}), map_", html, re.S).group(1))
    first = html_dir / spec["thumbs"][0]
    assert first.resolve() == (study / captures["image_path"][0]).resolve()
    for field in ("captured_at", "heading", "zone zone_id", "zone poverty_rate"):
        assert field in spec["fields"]
    zone_ids = spec["values"][spec["fields"].index("zone zone_id")]
    assert set(zone_ids) <= set(zones["zone_id"])


def test_map_from_layer_returns_a_folium_map_for_notebooks():
    import folium

    frame = gpd.GeoDataFrame(
        {"v": [1.0, 2.0]}, geometry=gpd.points_from_xy([0.0, 0.1], [0.0, 0.1]), crs=4326
    )
    m = maps.map_from_layer(frame, "v", tiles="none")
    assert isinstance(m, folium.Map)
    html = m.get_root().render()
    assert "<script src=" not in html and "<link rel=" not in html


def test_no_key_or_token_ever_reaches_the_html(monkeypatch):
    frame = gpd.GeoDataFrame(
        {"note": [SECRET]}, geometry=gpd.points_from_xy([0.0], [0.0]), crs=4326
    )
    with pytest.raises(InputError, match="key or token"):
        maps.map_from_layer(
            frame, tiles="https://t.example/{z}/{x}/{y}.png?key=abc", attribution="x"
        )
    monkeypatch.setenv("GOOGLE_MAPS_API_KEY", SECRET)
    with pytest.raises(InputError, match="GOOGLE_MAPS_API_KEY"):
        maps.render_html(maps.map_from_layer(frame, "note", tiles="none"))


# ---------------------------------------------------------------------- GeoTIFF
def test_raster_from_points_exact_cell_value_crs_transform_and_overviews(tmp_path):
    import rasterio

    crs = "EPSG:32635"
    cell = 50.0
    xs = np.array([500_025.0, 500_525.0, 501_025.0, 500_025.0])  # cell centres
    ys = np.array([6_700_025.0, 6_700_525.0, 6_700_025.0, 6_701_025.0])
    vals = np.array([10.0, 20.0, 30.0, 40.0])
    frame = gpd.GeoDataFrame({"v": vals}, geometry=gpd.points_from_xy(xs, ys), crs=crs)
    path = maps.raster_from_points(frame, "v", tmp_path / "v.tif", cell=cell, crs=crs, radius=700.0)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32635
        assert src.transform.a == cell and src.transform.e == -cell
        assert src.transform.c % cell == 0 and src.transform.f % cell == 0
        assert src.nodata == -9999.0
        assert src.overviews(1)
        band = src.read(1, masked=True)
        assert band.min() >= vals.min() - 1e-4 and band.max() <= vals.max() + 1e-4
        for x, y, v in zip(xs, ys, vals, strict=True):
            row, col = src.index(x, y)
            assert band[row, col] == pytest.approx(v)
        # elsewhere: the inverse-distance-squared mean of the points within the radius
        x, y = 500_275.0, 6_700_275.0
        d2 = [(x - px) ** 2 + (y - py) ** 2 for px, py in zip(xs, ys, strict=True)]
        weights = [1 / d if d <= 700.0**2 else 0.0 for d in d2]
        expected = sum(w * v for w, v in zip(weights, vals, strict=True)) / sum(weights)
        row, col = src.index(x, y)
        assert band[row, col] == pytest.approx(expected, rel=1e-5)
        assert band.mask[0, -1]  # farther than the radius from every point: nodata
        assert src.descriptions[0] == "v"


def test_raster_kernel_and_zone_values_from_the_cli(study, tmp_path):
    import rasterio

    tif = tmp_path / "pov.tif"
    result = run_map(
        "--study", str(study), "--layer", "zones_sim", "--column", "poverty_rate",
        "--raster", str(tif), "--cell", "50",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    zones = read(study, "zones_sim")
    with rasterio.open(tif) as src:
        assert src.crs == zones.estimate_utm_crs()
        assert src.res == (50.0, 50.0)
        band = src.read(1, masked=True)
        assert band.count() > 0
        assert zones["poverty_rate"].min() - 1e-4 <= band.min() <= band.max()
        assert band.max() <= zones["poverty_rate"].max() + 1e-4
    assert not list(tmp_path.glob("*.html"))  # --raster alone writes no web map
    captures = read(study, "captures")
    cap = maps.raster_from_points(captures, "heading", tmp_path / "h.tif", cell=20, method="kernel")
    with rasterio.open(cap) as src:
        band = src.read(1, masked=True)
        assert captures["heading"].min() - 1e-3 <= band.min() <= band.max()
        assert band.max() <= captures["heading"].max() + 1e-3


# ---------------------------------------------------------------------- bad input
def test_unknown_layer_lists_the_layers(study, tmp_path):
    before = tree(study)
    result = run_map("--study", str(study), "--layer", "nope", "--out", str(tmp_path / "m.html"))
    assert_one_line_error(result, "nope", "captures", "zones_sim")
    assert tree(study) == before and not (tmp_path / "m.html").exists()


def test_unknown_column_lists_the_columns(study, tmp_path):
    before = tree(study)
    result = run_map(
        "--study", str(study), "--layer", "captures", "--column", "nope",
        "--out", str(tmp_path / "m.html"),
    )  # fmt: skip
    assert_one_line_error(result, "nope", "captured_at", "heading")
    assert tree(study) == before and not list(tmp_path.iterdir())


@pytest.mark.parametrize("cell", ["0", "-5"])
def test_raster_cell_must_be_positive(study, tmp_path, cell):
    before = tree(study)
    result = run_map(
        "--study", str(study), "--layer", "captures", "--column", "heading",
        "--raster", str(tmp_path / "r.tif"), "--cell", cell,
    )  # fmt: skip
    assert_one_line_error(result, "--cell", "positive")
    assert tree(study) == before and not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["proc", "file"])
def test_out_folder_not_writable(study, tmp_path, where):
    if where == "proc":  # not writable even for root
        out = Path("/proc/urbanvis-maps/m.html")
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "m.html"
    before = tree(study)
    result = run_map("--study", str(study), "--layer", "points", "--out", str(out))
    assert_one_line_error(result, "--out", str(out.parent.parent if where == "file" else "/proc"))
    assert tree(study) == before
