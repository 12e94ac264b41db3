"""A local HTTP stand-in for the Census Bureau: TIGER/Line files and the ACS 5-year API.

A threaded ``http.server`` on 127.0.0.1 and a free port. The fake country is two states
(20 and 29) of block groups on a grid of 0.01-degree cells; see :func:`fake_block_groups`.
:func:`start` builds the files and values, and serves them until ``close()``::

    server = start(tmp_path)
    ...  # server.tiger, server.api, server.requests, server.queries()
    server.close()
"""

from __future__ import annotations

import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import geopandas as gpd
import pyogrio
import shapely

CELL = 0.01
JAM = "200010002003"  # its B19013_001E answer is a jam value
KNOWN = {"NAME", "B19013_001E", "B17021_002E", "B01003_001E"}
STATES = {"20": shapely.box(-100.0, 38.0, -98.0, 40.0), "29": shapely.box(-98.0, 38.0, -96.0, 40.0)}


# ------------------------------------------------------------------ the fake country
def fake_block_groups() -> gpd.GeoDataFrame:
    """Block groups on a grid of 0.01-degree cells: one tract per grid column.

    State 20: 6 columns x 4 rows from (-99, 39), counties 001 (columns 0-2) and 003
    (columns 3-5). State 29: 2 x 2 from (-97.5, 39), county 005.
    """
    rows = []
    for state, (x0, y0), columns, nrows in (("20", (-99.0, 39.0), 6, 4),
                                            ("29", (-97.5, 39.0), 2, 2)):  # fmt: skip
        for i in range(columns):
            for j in range(nrows):
                county = "005" if state == "29" else ("001" if i < 3 else "003")
                tract, bg = f"{i + 1:04d}00", str(j + 1)
                rows.append({
                    "STATEFP": state, "COUNTYFP": county, "TRACTCE": tract, "BLKGRPCE": bg,
                    "GEOID": state + county + tract + bg, "NAMELSAD": f"Block Group {bg}",
                    "ALAND": 1_000_000, "i": i, "j": j,
                    "geometry": shapely.box(x0 + CELL * i, y0 + CELL * j,
                                            x0 + CELL * (i + 1), y0 + CELL * (j + 1)),
                })  # fmt: skip
    return gpd.GeoDataFrame(rows, crs="EPSG:4269")


def fake_tracts(bgs: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    tracts = bgs.dissolve(by=["STATEFP", "COUNTYFP", "TRACTCE"], as_index=False)
    tracts["GEOID"] = tracts["STATEFP"] + tracts["COUNTYFP"] + tracts["TRACTCE"]
    return tracts[["STATEFP", "COUNTYFP", "TRACTCE", "GEOID", "geometry"]]


def acs_values(bgs: gpd.GeoDataFrame) -> dict[str, dict[str, str]]:
    """What the API answers per GEOID (text, as the API sends it)."""
    values = {}
    for row in bgs.itertuples():
        values[row.GEOID] = {
            "B19013_001E": str(30000 + 5000 * row.i + 1000 * row.j),
            "B17021_002E": str(100 + 10 * row.i + row.j),
            "B01003_001E": str(900 + row.i),
        }
    values[JAM]["B19013_001E"] = "-666666666"
    for tract in {g[:11] for g in values}:
        members = [v for g, v in values.items() if g[:11] == tract]
        values[tract] = {k: str(sum(int(m[k]) for m in members)) for k in KNOWN - {"NAME"}}
    return values


def shapefile_zip(frame: gpd.GeoDataFrame, stem: str, folder: Path) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    pyogrio.write_dataframe(frame, folder / f"{stem}.shp")
    path = folder / f"{stem}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for part in sorted(folder.glob(f"{stem}.*")):
            if part.suffix != ".zip":
                archive.write(part, part.name)
    return path.read_bytes()


# -------------------------------------------------------------------- the stand-in
class CensusStandIn:
    """A threaded HTTP server with TIGER/Line files under /geo/tiger and the API under /data."""

    def __init__(self, files: dict[str, bytes], values: dict[str, dict[str, str]]) -> None:
        self.files, self.values = files, values
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.tiger, self.api = f"{self.url}/geo/tiger", f"{self.url}/data"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def queries(self, prefix: str = "/data/") -> list[dict[str, str]]:
        """The recorded API queries, decoded."""
        out = []
        for raw in self.requests:
            if raw.startswith(prefix):
                parsed = parse_qs(urlsplit(raw).query, keep_blank_values=True)
                out.append({k: v[0] for k, v in parsed.items()} | {"_raw": raw})
        return out

    def _answer(self, path: str) -> tuple[int, str, bytes]:
        parts = urlsplit(path)
        if parts.path in self.files:
            return 200, "application/zip", self.files[parts.path]
        if parts.path != "/data/2022/acs/acs5":
            return 404, "text/html", b"<html><body>404 Not Found</body></html>"
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        get = query["get"].split(",")
        unknown = [v for v in get if v not in KNOWN]
        if unknown:
            return 400, "text/plain", f"error: error: unknown variable '{unknown[0]}'".encode()
        within = dict(token.split(":") for token in query["in"].split(" "))
        level = query["for"].split(":")[0]
        geo = ["state", "county", "tract"] + (["block group"] if level == "block group" else [])
        digits = 12 if level == "block group" else 11
        table = [get + geo]
        county = within["state"] + within["county"]
        for geoid, row in sorted(self.values.items()):
            if len(geoid) == digits and geoid[:5] == county:
                codes = [geoid[:2], geoid[2:5], geoid[5:11], geoid[11:]][: len(geo)]
                table.append([f"Area {geoid}" if v == "NAME" else row[v] for v in get] + codes)
        return 200, "application/json", json.dumps(table).encode()

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server name)
                with stand_in.lock:
                    stand_in.requests.append(self.path)
                status, kind, body = stand_in._answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep the test's stderr clean
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start(root: Path) -> CensusStandIn:
    """Build the fake country's TIGER/Line zips under ``root`` and serve them, started."""
    bgs = fake_block_groups()
    tracts = fake_tracts(bgs)
    states = gpd.GeoDataFrame(
        {"STATEFP": list(STATES), "STUSPS": ["KS", "MO"], "NAME": ["Kansas", "Missouri"]},
        geometry=list(STATES.values()),
        crs="EPSG:4269",
    )
    files = {
        "/geo/tiger/TIGER2023/STATE/tl_2023_us_state.zip":
            shapefile_zip(states, "tl_2023_us_state", root / "state"),
        "/geo/tiger/TIGER2021/STATE/tl_2021_us_state.zip": b"<html>maintenance</html>",
    }  # fmt: skip
    columns = ["STATEFP", "COUNTYFP", "TRACTCE", "BLKGRPCE", "GEOID", "NAMELSAD", "ALAND"]
    for state in STATES:
        stem = f"tl_2023_{state}_bg"
        frame = bgs.loc[bgs["STATEFP"] == state, [*columns, "geometry"]]
        files[f"/geo/tiger/TIGER2023/BG/{stem}.zip"] = shapefile_zip(frame, stem, root / stem)
        stem = f"tl_2023_{state}_tract"
        frame = tracts[tracts["STATEFP"] == state]
        files[f"/geo/tiger/TIGER2023/TRACT/{stem}.zip"] = shapefile_zip(frame, stem, root / stem)
    server = CensusStandIn(files, acs_values(bgs))
    server.bgs, server.tracts = bgs.to_crs(4326), tracts.to_crs(4326)
    server.thread.start()
    return server
