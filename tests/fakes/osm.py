"""A local HTTP stand-in for Nominatim and Overpass, the two services osmnx 2.x asks.

A real ``http.server.ThreadingHTTPServer`` runs in a background thread on 127.0.0.1 and a
free port; see tests/test_sample_online.py for the request shapes it answers. The fake town
(:func:`build_town`) is a 4 x 4 street grid around (24.94, 60.17)::

    with serve() as fake:
        fake.places["testville"] = [nominatim_place("Testville")]
        fake.overpass = build_town().data
        ...  # fake.url, fake.requests
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import shapely
from pyproj import Transformer

CITY = "Testville"  # the name the fake geocoder knows the town by

# ----------------------------------------------------------------------------- geometry
# Everything is laid out in metres in UTM zone 35N around central Helsinki (lon 24.94,
# lat 60.17) and converted to degrees, so distances in the assertions are exact there.
UTM = "EPSG:32635"
_TO_WGS84 = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
_TO_UTM = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
ORIGIN = _TO_UTM.transform(24.94, 60.17)  # centre of the town, in UTM metres

BLOCK = 100.0  # metres between parallel streets
GRID = 4  # streets per direction: 4 x 4 intersections, 300 m x 300 m of streets
HALF_BOUNDARY = 250.0  # the city boundary is a 500 m square around the grid's centre


def lonlat(east: float, north: float) -> tuple[float, float]:
    """Degrees of a point ``east``/``north`` metres from the town centre."""
    lon, lat = _TO_WGS84.transform(ORIGIN[0] + east, ORIGIN[1] + north)
    return float(lon), float(lat)


def to_metres(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Metres east/north of the town centre for degree arrays."""
    x, y = _TO_UTM.transform(np.asarray(lon, float), np.asarray(lat, float))
    return np.asarray(x) - ORIGIN[0], np.asarray(y) - ORIGIN[1]


def grid_xy(i: int, j: int) -> tuple[float, float]:
    """Metres of intersection (i, j): column i west->east, row j south->north."""
    offset = (GRID - 1) * BLOCK / 2
    return i * BLOCK - offset, j * BLOCK - offset


# ------------------------------------------------------------------ fake response builders
def nominatim_place(
    name: str = CITY, *, half_size: float = HALF_BOUNDARY, osm_id: int = 424242
) -> dict[str, Any]:
    """One Nominatim ``search`` result (format=json, polygon_geojson=1): a square boundary."""
    corners = [
        (-half_size, -half_size),
        (half_size, -half_size),
        (half_size, half_size),
        (-half_size, half_size),
        (-half_size, -half_size),
    ]
    ring = [list(lonlat(e, n)) for e, n in corners]
    lons = [p[0] for p in ring]
    lats = [p[1] for p in ring]
    centre_lon, centre_lat = lonlat(0.0, 0.0)
    return {
        "place_id": 1234567,
        "licence": "Data (c) OpenStreetMap contributors, ODbL 1.0. http://osm.org/copyright",
        "osm_type": "relation",
        "osm_id": osm_id,
        "lat": f"{centre_lat:.7f}",
        "lon": f"{centre_lon:.7f}",
        "class": "boundary",
        "type": "administrative",
        "place_rank": 16,
        "importance": 0.65,
        "addresstype": "city",
        "name": name,
        "display_name": f"{name}, Uusimaa, Finland",
        # Nominatim's order: south, north, west, east, as strings.
        "boundingbox": [
            f"{min(lats):.7f}",
            f"{max(lats):.7f}",
            f"{min(lons):.7f}",
            f"{max(lons):.7f}",
        ],
        "geojson": {"type": "Polygon", "coordinates": [ring]},
    }


@dataclass
class OverpassData:
    """Nodes and ways of a fake OpenStreetMap, served as Overpass JSON."""

    nodes: dict[int, tuple[float, float]] = field(default_factory=dict)  # id -> (lon, lat)
    ways: dict[int, tuple[list[int], dict[str, str]]] = field(default_factory=dict)
    _next_node: int = 1
    _next_way: int = 1000

    def node(self, east: float, north: float) -> int:
        """Add (or reuse) a node at this spot (metres) and return its id."""
        lon, lat = lonlat(east, north)
        for node_id, (x, y) in self.nodes.items():
            if abs(x - lon) < 1e-10 and abs(y - lat) < 1e-10:
                return node_id
        node_id = self._next_node
        self._next_node += 1
        self.nodes[node_id] = (lon, lat)
        return node_id

    def way(self, points: list[tuple[float, float]], **tags: str) -> int:
        """Add a way through these metre coordinates; return its id."""
        refs = [self.node(e, n) for e, n in points]
        way_id = self._next_way
        self._next_way += 1
        self.ways[way_id] = (refs, dict(tags))
        return way_id

    def line(self, way_id: int) -> shapely.LineString:
        """The way as a LineString in metres from the town centre."""
        refs, _ = self.ways[way_id]
        lon = np.array([self.nodes[r][0] for r in refs])
        lat = np.array([self.nodes[r][1] for r in refs])
        x, y = to_metres(lon, lat)
        return shapely.LineString(np.column_stack((x, y)))

    def response(
        self, query: str | None = None, *, with_nodes: bool = True, with_ways: bool = True
    ) -> dict[str, Any]:
        """Overpass JSON for ``query``: ways passing its highway filter, then their nodes.

        Like the real server (``way[...](poly:...);>;out;``), only the nodes of the selected
        ways come back. ``with_ways=False`` sends those nodes without any way.
        """
        keep = {w: v for w, v in self.ways.items() if _passes_filter(v[1], query)}
        used = sorted({r for refs, _ in keep.values() for r in refs})
        elements: list[dict[str, Any]] = []
        if with_nodes:
            elements += [
                {"type": "node", "id": n, "lat": self.nodes[n][1], "lon": self.nodes[n][0]}
                for n in used
            ]
        if with_ways:
            elements += [
                {"type": "way", "id": w, "nodes": refs, "tags": tags}
                for w, (refs, tags) in keep.items()
            ]
        return {
            "version": 0.6,
            "generator": "Overpass API 0.7.62 (fake for urbanvis tests)",
            "osm3s": {
                "timestamp_osm_base": "2024-01-01T00:00:00Z",
                "copyright": "The data included in this document is from www.openstreetmap.org.",
            },
            "elements": elements,
        }


def _passes_filter(tags: dict[str, str], query: str | None) -> bool:
    """Whether a way's tags pass the ``["highway"!~"..."]`` / ``["highway"]`` parts of a query."""
    if "highway" not in tags:
        return False
    if query is None:
        return True
    for pattern in re.findall(r'\["highway"!~"([^"]*)"\]', query):
        if re.search(pattern, tags["highway"]):
            return False
    return True


@dataclass
class Town:
    """The fake town's streets: ids of the ways the assertions refer to."""

    data: OverpassData
    streets: list[int]  # every residential way
    oneway_eastbound: int  # oneway=yes, drawn west -> east
    oneway_southbound: int  # oneway=yes, drawn north -> south
    footway: int  # highway=footway inside a block, touching no street


def build_town() -> Town:
    """A 4 x 4 grid of residential streets 100 m apart, two of them one-way, plus a footway.

    Rows (y) and columns (x) run from -150 m to +150 m around the town centre. Row 1 is
    one-way eastbound and column 2 one-way southbound (drawn north to south); both end at
    T-junctions on the outer streets. A footway runs diagonally through the middle of the
    south-west block without touching any street: a drive query must not return it.
    """
    data = OverpassData()
    streets: list[int] = []
    oneway_east = oneway_south = -1
    for j in range(GRID):  # east-west streets
        points = [grid_xy(i, j) for i in range(GRID)]
        if j == 1:
            oneway_east = data.way(points, highway="residential", oneway="yes", name="Row 1")
            streets.append(oneway_east)
        else:
            streets.append(data.way(points, highway="residential", name=f"Row {j}"))
    for i in range(GRID):  # north-south streets
        points = [grid_xy(i, j) for j in range(GRID)]
        if i == 2:
            oneway_south = data.way(
                points[::-1], highway="residential", oneway="yes", name="Column 2"
            )
            streets.append(oneway_south)
        else:
            streets.append(data.way(points, highway="residential", name=f"Column {i}"))
    (x0, y0), (x1, y1) = grid_xy(0, 0), grid_xy(1, 1)
    footway = data.way(
        [
            (x0 + 0.25 * BLOCK, y0 + 0.25 * BLOCK),
            (x0 + 0.5 * BLOCK, y0 + 0.5 * BLOCK),
            (x1 - 0.25 * BLOCK, y1 - 0.25 * BLOCK),
        ],
        highway="footway",
        name="Park path",
    )
    return Town(data, streets, oneway_east, oneway_south, footway)


# ------------------------------------------------------------------------- fake server
@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]


class FakeOSM:
    """What the fake server answers, and every request it received."""

    def __init__(self) -> None:
        self.places: dict[str, list[dict[str, Any]]] = {}  # lower-cased q -> results
        self.overpass: OverpassData | None = None
        self.overpass_without_ways = False
        # HTTP status for a broken server (an HTML error page instead of JSON), or None
        self.nominatim_status: int | None = None
        self.overpass_status: int | None = None
        self.requests: list[Recorded] = []
        self.url = ""
        self._lock = threading.Lock()

    @property
    def nominatim_url(self) -> str:
        return f"{self.url}/nominatim/"

    @property
    def overpass_url(self) -> str:
        return f"{self.url}/api"

    def record(self, item: Recorded) -> None:
        with self._lock:
            self.requests.append(item)

    def received(self, method: str, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    # -- answers
    def answer(
        self, method: str, path: str, query: dict[str, list[str]], form: dict[str, list[str]]
    ) -> tuple[int, str, bytes]:
        broken = (
            self.nominatim_status
            if path.startswith("/nominatim/")
            else self.overpass_status
            if path.startswith("/api/")
            else None
        )
        if broken is not None:
            page = f"<html><body><h1>{broken} server error</h1></body></html>"
            return broken, "text/html", page.encode()
        if path == "/nominatim/search" and method == "GET":
            if query.get("format") != ["json"]:
                return 400, "text/plain", b"this fake only speaks format=json"
            q = query.get("q", [""])[0].strip().lower()
            results = self.places.get(q, [])
            limit = int(query.get("limit", ["10"])[0])
            return 200, "application/json", json.dumps(results[:limit]).encode()
        if path == "/api/status" and method == "GET":
            text = (
                "Connected as: 2130706433\nCurrent time: 2024-01-01T00:00:00Z\n"
                "Announced endpoint: none\nRate limit: 2\n2 slots available now.\n"
                "Currently running queries (pid, space limit, time limit, start time):\n"
            )
            return 200, "text/plain", text.encode()
        if path == "/api/interpreter" and method in ("GET", "POST"):
            source = form if method == "POST" else query
            ql = source.get("data", [None])[0]
            if ql is None:
                return 400, "text/plain", b"Error: no data= parameter"
            data = self.overpass or OverpassData()
            body = data.response(ql, with_ways=not self.overpass_without_ways)
            return 200, "application/json", json.dumps(body).encode()
        return 404, "text/plain", f"no such endpoint: {method} {path}".encode()


def _handler(fake: FakeOSM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            form: dict[str, list[str]] = {}
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                body = self.rfile.read(length).decode("utf-8")
                if self.headers.get("Content-Type", "").startswith(
                    "application/x-www-form-urlencoded"
                ):
                    form = parse_qs(body, keep_blank_values=True)
            fake.record(Recorded(method, parts.path, query, form, dict(self.headers)))
            status, ctype, payload = fake.answer(method, parts.path, query, form)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep pytest output clean

    return Handler


@contextlib.contextmanager
def serve() -> Iterator[FakeOSM]:
    """A fake Nominatim + Overpass on 127.0.0.1:<random port>, serving until the block ends."""
    fake = FakeOSM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    fake.url = f"http://{host}:{port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-osm", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
