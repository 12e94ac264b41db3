"""A local HTTP stand-in for the Street View Static API and the Mapillary Graph API v4.

It is a real aiohttp server, so clients are exercised through real sockets, keep-alive,
status codes, bodies cut short and connections dropped. Paths are those of the official
APIs; a client points at it by swapping only scheme and host.

Two ways to run it:

* inside a test, in a background thread on 127.0.0.1 and a free port::

      with FakeWeb(keys={"good-key"}, fault_rate=0.0) as web:
          url = web.url + "/maps/api/streetview/metadata?location=60.17,24.94&key=good-key"
          web.inject("http503", n=2, path_prefix="metadata")
          ...
          assert web.count("image") == 12

* as its own process (for benchmarks); the first stdout line is the base URL and it serves
  until SIGTERM/SIGINT::

      python tests/fakes/streetview.py --port 0 --fault-rate 0.05 --seed 1

The fake world
--------------
Panoramas sit on a lattice of ``spacing`` metres (12 by default) in a local metric
approximation of longitude/latitude: row ``j`` lies at ``y = j * spacing`` metres north of
the equator (111,320 m per degree), and along a row ``x = i * spacing`` metres with the
row's own cos(latitude) scale. Each panorama is jittered by up to ``jitter`` metres. The
lattice is split into square blocks of about ``coverage_block`` metres; a block whose hash
falls above ``coverage`` has no imagery at all, so whole stretches of street answer
ZERO_RESULTS (by default about 10 % of blocks). A metadata or image lookup by location
returns the nearest panorama within ``radius`` metres (50 by default, at most 5 km).
Pano ids ("fk" + 16 base32 characters) encode their lattice cell through a keyed
permutation, so ``pano=ID`` requests work on any instance with the same ``world_seed``.
Mapillary has one image per covered lattice cell, separately jittered, grouped into
sequences along rows.

Everything about the world depends only on the world parameters (``world_seed``,
``spacing``, ``coverage``, ``coverage_block``, ``jitter``), never on the fault ``seed``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import calendar
import collections
import contextlib
import hashlib
import hmac
import io
import json
import math
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from aiohttp import web
from PIL import Image, ImageDraw

__all__ = [
    "FAULT_KINDS",
    "GREY_PLACEHOLDER_RGB",
    "MLY_FIELDS",
    "TRANSIENT_FAULT_KINDS",
    "FakeWeb",
    "FakeWorld",
    "sign_url",
]

GREY_PLACEHOLDER_RGB = (228, 227, 223)
"""Colour of the 'no imagery here' image Street View sends with HTTP 200."""

FAULT_KINDS = (
    "slow",
    "http429",
    "http500",
    "http503",
    "over_query_limit",
    "request_denied",
    "invalid_request",
    "zero_results",
    "truncated",
    "wrong_content_type",
    "grey",
    "reset",
)
TRANSIENT_FAULT_KINDS = (
    "slow",
    "http429",
    "http500",
    "http503",
    "over_query_limit",
    "truncated",
    "reset",
)
"""The kinds the random mode draws from (``over_query_limit`` only on metadata)."""

METADATA_PATH = "/maps/api/streetview/metadata"
IMAGE_PATH = "/maps/api/streetview"
MLY_IMAGES_PATH = "/images"
MLY_THUMB_PREFIX = "/mly/thumbs/"
_ENDPOINT_BY_PATH = {METADATA_PATH: "metadata", IMAGE_PATH: "image", MLY_IMAGES_PATH: "mapillary"}
ENDPOINTS = ("metadata", "image", "mapillary", "thumb")
"""Names accepted wherever a ``path_prefix`` is: they match one endpoint exactly."""

MLY_FIELDS = (
    "id",
    "captured_at",
    "compass_angle",
    "computed_compass_angle",
    "geometry",
    "computed_geometry",
    "sequence",
    "is_pano",
    "camera_type",
    "width",
    "height",
    "make",
    "model",
    "creator",
    "thumb_256_url",
    "thumb_1024_url",
    "thumb_2048_url",
    "thumb_original_url",
)
"""Fields the fake ``/images`` endpoint knows; any other asked for is a 400, as on the API."""

_M_PER_DEG = 111_320.0
_MAX_RADIUS = 5_000.0
_MAX_SIZE = 640
_MLY_MAX_LIMIT = 2000
_MLY_MAX_CELLS = 400_000
_JSON = "application/json"

_MSG_BAD_KEY = "The provided API key is invalid."
_MSG_NO_KEY = "You must use an API key to authenticate each request to Google Maps Platform APIs."
_MSG_BAD_SIG = (
    "Unable to authenticate the request. The signature of the request is missing or "
    "does not match the request."
)


# --------------------------------------------------------------------------- hashing


def _h64(*parts: Any) -> int:
    """A stable 64-bit hash of ``parts`` (never Python's salted ``hash``)."""
    data = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _unit(*parts: Any) -> float:
    """A stable number in [0, 1) from ``parts``."""
    return _h64(*parts) / 18446744073709551616.0


def _feistel(x: int, key: str, inverse: bool = False) -> int:
    """A keyed permutation of 64-bit integers (4 Feistel rounds), so ids look random but
    can be turned back into their lattice cell."""
    left, right = x >> 32, x & 0xFFFFFFFF
    rounds = range(3, -1, -1) if inverse else range(4)
    for k in rounds:
        if inverse:
            left, right = right ^ (_h64(key, k, left) & 0xFFFFFFFF), left
        else:
            left, right = right, left ^ (_h64(key, k, right) & 0xFFFFFFFF)
    return (left << 32) | right


def _pack_cell(j: int, i: int) -> int:
    return (((j + 2**31) & 0xFFFFFFFF) << 32) | ((i + 2**31) & 0xFFFFFFFF)


def _unpack_cell(x: int) -> tuple[int, int]:
    return (x >> 32) - 2**31, (x & 0xFFFFFFFF) - 2**31


def _decode_secret(secret: str) -> bytes:
    s = secret.strip()
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def sign_url(path_and_query: str, secret: str) -> str:
    """Google's URL signing: returns ``path_and_query`` with ``&signature=...`` appended.

    ``path_and_query`` is exactly what goes on the request line (``/maps/api/...?...``).
    """
    digest = hmac.new(_decode_secret(secret), path_and_query.encode(), hashlib.sha1).digest()
    return f"{path_and_query}&signature={base64.urlsafe_b64encode(digest).decode()}"


class _LRU:
    """A small least-recently-used map (thread-safe enough for one writer thread)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._d: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)


# --------------------------------------------------------------------------- the world


class FakeWorld:
    """The deterministic imagery of the fake: Street View panoramas and Mapillary images."""

    def __init__(
        self,
        *,
        spacing: float = 12.0,
        coverage: float = 0.9,
        coverage_block: float = 240.0,
        jitter: float = 2.0,
        world_seed: int = 0,
    ) -> None:
        if spacing <= 0:
            raise ValueError("spacing must be positive")
        if not 0.0 <= coverage <= 1.0:
            raise ValueError("coverage must be within [0, 1]")
        self.spacing = float(spacing)
        self.coverage = float(coverage)
        self.block = max(1, round(coverage_block / spacing))
        self.jitter = min(float(jitter), self.spacing / 4)
        self.world_seed = int(world_seed)
        self._ws = f"w{self.world_seed}"
        self._covered: dict[tuple[int, int], bool] = {}
        self._locations: dict[tuple[int, int], tuple[float, float]] = {}
        self._pano_ids: dict[tuple[int, int], str] = {}
        self._lookups = _LRU(100_000)
        self._mly_records = _LRU(200_000)

    # -- lattice ----------------------------------------------------------------------
    def block_covered(self, bj: int, bi: int) -> bool:
        key = (bj, bi)
        v = self._covered.get(key)
        if v is None:
            v = _unit(self._ws, "block", bj, bi) < self.coverage
            if len(self._covered) > 500_000:
                self._covered.clear()
            self._covered[key] = v
        return v

    def cell_covered(self, j: int, i: int) -> bool:
        return self.block_covered(j // self.block, i // self.block)

    def _row_kx(self, j: int) -> float:
        """Metres per degree of longitude along row ``j``."""
        lat = j * self.spacing / _M_PER_DEG
        return _M_PER_DEG * max(math.cos(math.radians(lat)), 0.01)

    def pano_location(self, j: int, i: int) -> tuple[float, float]:
        """(lat, lon) of the panorama of lattice cell (j, i)."""
        key = (j, i)
        loc = self._locations.get(key)
        if loc is None:
            h = _h64(self._ws, "pano-jitter", j, i)
            jx = ((h & 0xFFFFFFFF) / 4294967296.0 * 2 - 1) * self.jitter
            jy = ((h >> 32) / 4294967296.0 * 2 - 1) * self.jitter
            lat = (j * self.spacing + jy) / _M_PER_DEG
            lon = (i * self.spacing + jx) / self._row_kx(j)
            loc = (round(lat, 9), round(lon, 9))
            if len(self._locations) > 500_000:
                self._locations.clear()
            self._locations[key] = loc
        return loc

    def _cell_valid(self, j: int, i: int) -> bool:
        """Covered and on the globe (a forged id decodes to a cell far off it)."""
        if abs(j * self.spacing / _M_PER_DEG) > 90:
            return False
        if abs(i * self.spacing / self._row_kx(j)) > 180.01:
            return False
        return self.cell_covered(j, i)

    def pano_id(self, j: int, i: int) -> str:
        key = (j, i)
        pid = self._pano_ids.get(key)
        if pid is None:
            y = _feistel(_pack_cell(j, i), self._ws + "pano")
            check = _h64(self._ws, "check", y) & 0xFFFF
            raw = y.to_bytes(8, "big") + check.to_bytes(2, "big")
            pid = "fk" + base64.b32encode(raw).decode().lower()
            if len(self._pano_ids) > 500_000:
                self._pano_ids.clear()
            self._pano_ids[key] = pid
        return pid

    def cell_of_pano(self, pano_id: str) -> tuple[int, int] | None:
        """The lattice cell a pano id names, or None for an id this world never issued."""
        if len(pano_id) != 18 or not pano_id.startswith("fk"):
            return None
        try:
            raw = base64.b32decode(pano_id[2:].upper())
        except (ValueError, TypeError):
            return None
        y = int.from_bytes(raw[:8], "big")
        if int.from_bytes(raw[8:], "big") != _h64(self._ws, "check", y) & 0xFFFF:
            return None
        j, i = _unpack_cell(_feistel(y, self._ws + "pano", inverse=True))
        return (j, i) if self._cell_valid(j, i) else None

    def pano_date(self, j: int, i: int) -> str:
        h = _h64(self._ws, "date", j, i)
        return f"{2009 + h % 16:04d}-{1 + (h >> 8) % 12:02d}"

    def nearest_cell(self, lat: float, lon: float, radius: float = 50.0):
        """(j, i, distance_m) of the nearest panorama within ``radius``, else None."""
        r = min(max(float(radius), 0.0), _MAX_RADIUS)
        s, jit, b = self.spacing, self.jitter, self.block
        yq = lat * _M_PER_DEG
        kq = _M_PER_DEG * math.cos(math.radians(lat))
        # Rows nearest first; a row or cell is skipped when a lower bound of its distance
        # (lattice position minus jitter, with 1 % slack for the row's own longitude
        # scale) cannot beat the best so far. Exact, and touches only a handful of cells.
        rows = range(math.floor((yq - r - jit) / s), math.ceil((yq + r + jit) / s) + 1)
        best_d2, best_j, best_i = r * r, None, 0
        for j in sorted(rows, key=lambda j: abs(j * s - yq)):
            dy_min = max(0.0, abs(j * s - yq) - jit - 0.01)
            if dy_min * dy_min > best_d2:
                break
            xq = lon * self._row_kx(j)
            i_lo = math.floor((xq - r - jit) / s)
            i_hi = math.ceil((xq + r + jit) / s)
            c0 = round(xq / s)
            bj = j // b
            for bi in range(i_lo // b, i_hi // b + 1):
                if not self.block_covered(bj, bi):
                    continue
                lo, hi = max(bi * b, i_lo), min(bi * b + b - 1, i_hi)
                c = min(max(c0, lo), hi)
                for step in (1, -1):
                    i = c if step == 1 else c - 1
                    while lo <= i <= hi:
                        dx_min = max(0.0, 0.99 * abs(i * s - xq) - jit - 0.01)
                        if dx_min * dx_min + dy_min * dy_min > best_d2:
                            break
                        plat, plon = self.pano_location(j, i)
                        dx = (plon - lon) * kq
                        dy = (plat - lat) * _M_PER_DEG
                        d2 = dx * dx + dy * dy
                        if d2 < best_d2 or (d2 == best_d2 and best_j is None):
                            best_d2, best_j, best_i = d2, j, i
                        i += step
        if best_j is None:
            return None
        return best_j, best_i, math.sqrt(best_d2)

    def lookup(self, lat: float, lon: float, radius: float = 50.0):
        """Cached :meth:`nearest_cell`."""
        key = (lat, lon, radius)
        hit = self._lookups.get(key)
        if hit is None:
            hit = (self.nearest_cell(lat, lon, radius),)
            self._lookups.put(key, hit)
        return hit[0]

    def metadata_for_cell(self, cell: tuple[int, int] | None) -> dict[str, Any]:
        if cell is None:
            return {"status": "ZERO_RESULTS"}
        j, i = cell[0], cell[1]
        lat, lon = self.pano_location(j, i)
        return {
            "copyright": "© Fake",
            "date": self.pano_date(j, i),
            "location": {"lat": lat, "lng": lon},
            "pano_id": self.pano_id(j, i),
            "status": "OK",
        }

    def pano_for(self, lat: float, lon: float, radius: float = 50.0) -> dict[str, Any]:
        """What the metadata endpoint answers for ``location=lat,lon&radius=radius``."""
        return self.metadata_for_cell(self.lookup(float(lat), float(lon), float(radius)))

    def sample_location(
        self, covered: bool = True, near: tuple[float, float] = (60.17, 24.94)
    ) -> tuple[float, float]:
        """A (lat, lon) near ``near`` that has a panorama within 50 m (``covered``) or whose
        nearest panorama is more than 100 m away (not ``covered``)."""
        b = self.block
        j0 = round(near[0] * _M_PER_DEG / self.spacing)
        i0 = round(near[1] * self._row_kx(j0) / self.spacing)
        bj0, bi0 = j0 // b, i0 // b
        for ring in range(0, 200):
            for dbj in range(-ring, ring + 1):
                for dbi in range(-ring, ring + 1):
                    if max(abs(dbj), abs(dbi)) != ring:
                        continue
                    bj, bi = bj0 + dbj, bi0 + dbi
                    if covered and self.block_covered(bj, bi):
                        return self.pano_location(bj * b + b // 2, bi * b + b // 2)
                    if not covered and not self.block_covered(bj, bi):
                        j, i = bj * b + b // 2, bi * b + b // 2
                        lat = j * self.spacing / _M_PER_DEG
                        lon = i * self.spacing / self._row_kx(j)
                        if self.nearest_cell(lat, lon, 100.0) is None:
                            return (lat, lon)
        raise LookupError("no such location nearby")

    # -- Mapillary --------------------------------------------------------------------
    def mly_id(self, j: int, i: int) -> str:
        return str(_feistel(_pack_cell(j, i), self._ws + "mly"))

    def cell_of_mly(self, image_id: str) -> tuple[int, int] | None:
        if not image_id.isdigit() or len(image_id) > 20:
            return None
        x = int(image_id)
        if x >= 2**64:
            return None
        j, i = _unpack_cell(_feistel(x, self._ws + "mly", inverse=True))
        return (j, i) if self._cell_valid(j, i) else None

    def mly_record(self, j: int, i: int) -> dict[str, Any]:
        """Every field of the Mapillary image of cell (j, i), thumbnail URLs aside."""
        key = (j, i)
        rec = self._mly_records.get(key)
        if rec is not None:
            return rec
        s, b = self.spacing, self.block
        h = _h64(self._ws, "mly", j, i)
        jx = ((h & 0xFFFF) / 65536.0 * 2 - 1) * self.jitter * 1.5
        jy = (((h >> 16) & 0xFFFF) / 65536.0 * 2 - 1) * self.jitter * 1.5
        lat = round((j * s + jy) / _M_PER_DEG, 9)
        lon = round((i * s + jx) / self._row_kx(j), 9)
        bi = i // b
        seq_h = hashlib.blake2b(f"{self._ws}\x1fseq\x1f{j}\x1f{bi}".encode(), digest_size=16)
        sequence = base64.urlsafe_b64encode(seq_h.digest()).decode()[:22]
        seq_u = _unit(self._ws, "seq-time", j, bi)
        # 2015-01-01 .. 2024-12-31, one frame every 2 s along the block
        t0 = 1420070400000 + int(seq_u * 9.9 * 365.25 * 86400) * 1000
        captured_at = t0 + (i - bi * b) * 2000 + (h >> 40) % 700
        east = _unit(self._ws, "seq-dir", j, bi) < 0.5
        compass = ((90.0 if east else 270.0) + ((h >> 32) % 1000) / 100.0 - 5.0) % 360.0
        is_pano = (h >> 50) % 10 == 0
        rec = {
            "id": self.mly_id(j, i),
            "captured_at": captured_at,
            "compass_angle": round(compass, 3),
            "computed_compass_angle": round((compass + ((h >> 24) % 200) / 100.0 - 1) % 360, 3),
            "geometry": {
                "type": "Point",
                "coordinates": [round(lon + ((h >> 8) % 9 - 4) * 1e-6, 9), lat],
            },
            "computed_geometry": {"type": "Point", "coordinates": [lon, lat]},
            "sequence": sequence,
            "is_pano": is_pano,
            "camera_type": "spherical" if is_pano else "perspective",
            "width": 5760 if is_pano else 2048,
            "height": 2880 if is_pano else 1536,
            "make": "FakeCam",
            "model": "FC-360" if is_pano else "FC-1",
        }
        if (h >> 44) % 5:  # four in five images name their creator, one in five none
            rec["creator"] = {"id": str(1000 + bi % 7), "username": f"mapper_{bi % 7}"}
        self._mly_records.put(key, rec)
        return rec

    def mly_thumb_sig(self, image_id: str) -> str:
        return hmac.new(self._ws.encode(), image_id.encode(), hashlib.sha256).hexdigest()[:20]

    def mly_cells_in(
        self,
        bbox: tuple[float, float, float, float],
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[tuple[int, int]]:
        """Cells whose Mapillary image lies in ``bbox`` (minlon, minlat, maxlon, maxlat),
        in the endpoint's order (south to north, then west to east)."""
        minlon, minlat, maxlon, maxlat = bbox
        s, b, pad = self.spacing, self.block, self.jitter * 1.5
        j_lo = math.floor((minlat * _M_PER_DEG - pad) / s)
        j_hi = math.ceil((maxlat * _M_PER_DEG + pad) / s)
        rows = []
        n_cells = 0
        for j in range(j_lo, j_hi + 1):
            kx = self._row_kx(j)
            i_lo = math.floor((minlon * kx - pad) / s)
            i_hi = math.ceil((maxlon * kx + pad) / s)
            rows.append((j, i_lo, i_hi))
            n_cells += i_hi - i_lo + 1
            if n_cells > _MLY_MAX_CELLS:
                raise ValueError("bbox too large")
        out = []
        for j, i_lo, i_hi in rows:
            bj = j // b
            for bi in range(i_lo // b, i_hi // b + 1):
                if not self.block_covered(bj, bi):
                    continue
                for i in range(max(i_lo, bi * b), min(i_hi, bi * b + b - 1) + 1):
                    rec = self.mly_record(j, i)
                    lon, lat = rec["computed_geometry"]["coordinates"]
                    if not (minlon <= lon <= maxlon and minlat <= lat <= maxlat):
                        continue
                    if start_ms is not None and rec["captured_at"] < start_ms:
                        continue
                    if end_ms is not None and rec["captured_at"] > end_ms:
                        continue
                    out.append((j, i))
        return out


# --------------------------------------------------------------------------- images


def _scene(seed: int) -> dict[str, Any]:
    """A 360-degree street scene: buildings and trees by azimuth and elevation (degrees)."""
    r = random.Random(seed)
    sky = (r.randrange(105, 190), r.randrange(150, 215), r.randrange(195, 252))
    ground = (r.randrange(70, 125),) * 3
    pavement = tuple(min(255, c + r.randrange(20, 50)) for c in ground)
    road_az = r.choice((0.0, 90.0)) + r.uniform(-8, 8)
    objects = []
    start = r.uniform(0, 30)
    az = start
    while az < start + 360:
        width = r.uniform(7, 32)
        if r.random() < 0.22:  # a tree
            top = r.uniform(6, 22)
            colour = (r.randrange(30, 80), r.randrange(90, 160), r.randrange(30, 80))
            objects.append(("tree", az, az + width, -4.0, top, colour, ()))
        else:
            top = r.uniform(5, 42)
            bottom = -r.uniform(2, 7)
            colour = (r.randrange(60, 230), r.randrange(50, 210), r.randrange(40, 190))
            dark = tuple(max(0, c - r.randrange(50, 110)) for c in colour)
            windows = []
            for _ in range(r.randrange(3, 10)):
                fx = r.uniform(0.05, 0.8)
                fy = r.uniform(0.15, 0.85)
                windows.append((fx, fx + r.uniform(0.06, 0.15), fy, fy + r.uniform(0.05, 0.1)))
            objects.append(("building", az, az + width, bottom, top, colour, (dark, windows)))
        az += width + (r.uniform(0.5, 6) if r.random() < 0.4 else 0.0)
    clouds = [
        (r.uniform(0, 360), r.uniform(15, 60), r.uniform(5, 18), r.uniform(2, 6))
        for _ in range(r.randrange(0, 4))
    ]
    return {
        "sky": sky,
        "ground": ground,
        "pavement": pavement,
        "road_az": road_az,
        "objects": objects,
        "clouds": clouds,
    }


def _render(scene: dict[str, Any], heading: float, pitch: float, fov: float, w: int, h: int):
    """A rectilinear view of ``scene`` as a PIL image of exactly w x h."""
    im = Image.new("RGB", (w, h), scene["sky"])
    d = ImageDraw.Draw(im)
    fov = min(max(fov, 1.0), 170.0)
    f = (w / 2) / math.tan(math.radians(fov / 2))
    cx, cy = w / 2, h / 2
    big = 4 * (w + h)

    def px(az: float) -> float:
        a = (az - heading + 180.0) % 360.0 - 180.0
        a = min(max(a, -89.0), 89.0)
        return cx + math.tan(math.radians(a)) * f

    def py(elev: float) -> float:
        e = min(max(elev - pitch, -89.0), 89.0)
        return min(max(cy - math.tan(math.radians(e)) * f, -big), big)

    half = fov / 2 + 1

    def visible(a0: float, a1: float) -> bool:
        mid = (a0 + a1) / 2
        rel = (mid - heading + 180.0) % 360.0 - 180.0
        return abs(rel) - (a1 - a0) / 2 < half and abs(rel) < 90 + (a1 - a0) / 2

    for caz, celev, cw, ch in scene["clouds"]:
        if visible(caz - cw, caz + cw):
            d.ellipse([px(caz - cw), py(celev + ch), px(caz + cw), py(celev - ch)], fill="white")
    horizon = py(0.0)
    d.rectangle([0, horizon, w, h], fill=scene["ground"])
    d.rectangle([0, horizon, w, py(-3.0)], fill=scene["pavement"])
    for road in (scene["road_az"], scene["road_az"] + 180.0):
        if visible(road - 30, road + 30):
            x0, x1 = px(road - 2), px(road + 2)
            d.polygon(
                [(x0, horizon), (x1, horizon), (px(road + 30), h), (px(road - 30), h)],
                fill=tuple(max(0, c - 30) for c in scene["ground"]),
            )
            stripe = max(1, w // 160)
            d.line([(px(road), horizon), (px(road), h)], fill=(235, 225, 120), width=stripe)
    for kind, a0, a1, bottom, top, colour, extra in scene["objects"]:
        if not visible(a0, a1):
            continue
        x0, x1 = px(a0), px(a1)
        if x1 <= x0:
            continue
        if kind == "tree":
            trunk = (x0 + x1) / 2
            d.rectangle(
                [trunk - (x1 - x0) * 0.06, py(top * 0.45), trunk + (x1 - x0) * 0.06, py(bottom)],
                fill=(90, 60, 35),
            )
            d.ellipse([x0, py(top), x1, py(top * 0.3)], fill=colour)
            continue
        y0, y1 = py(top), py(bottom)
        d.rectangle([x0, y0, x1, y1], fill=colour)
        dark, windows = extra
        for fx0, fx1, fy0, fy1 in windows:
            d.rectangle(
                [
                    x0 + (x1 - x0) * fx0,
                    y0 + (y1 - y0) * fy0,
                    x0 + (x1 - x0) * fx1,
                    y0 + (y1 - y0) * fy1,
                ],
                fill=dark,
            )
    return im


def _jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# --------------------------------------------------------------------------- the server


def _truthy(v: str | None) -> bool:
    return v is not None and v.strip().lower() in ("true", "1", "yes")


def _float(v: str | None, default: float | None) -> float | None:
    """``default`` when absent; raises ValueError when present but not a finite number."""
    if v is None or v == "":
        return default
    x = float(v)
    if not math.isfinite(x):
        raise ValueError(v)
    return x


_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))"
_LOC_RE = re.compile(rf"^\s*{_NUM}\s*,\s*{_NUM}\s*$")


def _parse_location(v: str) -> tuple[float, float] | None:
    """(lat, lon), None for text that is not coordinates; ValueError when out of range."""
    m = _LOC_RE.match(v)
    if not m:
        return None
    lat, lon = float(m.group(1)), float(m.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(v)
    return lat, lon


def _iso_ms(v: str) -> int:
    dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        return int(calendar.timegm(dt.timetuple()) * 1000 + dt.microsecond // 1000)
    return int(dt.timestamp() * 1000)


class FakeWeb:
    """The fake server. Use as a context manager (background thread) or via ``main()``.

    Parameters
    ----------
    keys: Street View API keys accepted (``key=``).
    secret: URL-signing secret (URL-safe base64); when set, ``signature=`` is required.
    tokens: Mapillary access tokens accepted (``Authorization: OAuth T`` or ``access_token=``).
    fault_rate: probability that a request gets a random transient fault.
    seed: seed of the fault RNG (not of the world).
    fault_kinds: the kinds random mode draws from (default ``TRANSIENT_FAULT_KINDS``).
    slow_seconds: how long a ``slow`` fault waits before answering.
    mly_thumb_size: width of Mapillary thumbnails (height is 3/4 of it).
    coverage, spacing, coverage_block, jitter, world_seed: the world, see :class:`FakeWorld`.
    host, port: where to listen (port 0: a free one).
    image_cache: how many encoded JPEGs to keep.
    log_limit: keep only the last ``log_limit`` request records (None: all).
    jpeg_quality: quality of served JPEGs.
    extra_routes: more ``(method, path, handler)`` to serve (aiohttp handlers), e.g. another
        service a client must reach through the same base URL; logged like the others.
    image_variants: 0 (default) renders every distinct (pano, heading, pitch, fov, size)
        view of its panorama's scene, about 2 ms for 640x640 on first request. N > 0 serves
        instead one of N pictures rendered once per size, chosen by a hash of those
        parameters, with the parameters written into a JPEG comment so that the bytes still
        differ per view: for throughput benchmarks (the process mode's default is 512).
    mly_cap: the most images one Mapillary ``/images?bbox=`` search returns, across all its
        pages (the real service's 2,000 by default): a denser box loses the rest silently,
        so a client must split it.
    far_share: the share of panoramas (chosen by a hash of their cell, the same on every
        run) whose metadata answer names a ``location`` ``far_metres`` north of where the
        panorama is: a service answering with a panorama kilometres from the point.
    """

    def __init__(
        self,
        *,
        keys: Iterable[str] = ("good-key",),
        secret: str | None = None,
        tokens: Iterable[str] = ("MLY|good",),
        fault_rate: float = 0.0,
        seed: int = 0,
        fault_kinds: Iterable[str] | None = None,
        slow_seconds: float = 3.0,
        mly_thumb_size: int = 256,
        coverage: float = 0.9,
        spacing: float = 12.0,
        coverage_block: float = 240.0,
        jitter: float = 2.0,
        world_seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        image_cache: int = 4096,
        log_limit: int | None = None,
        jpeg_quality: int = 80,
        extra_routes: Iterable[tuple[str, str, Any]] = (),
        image_variants: int = 0,
        far_share: float = 0.0,
        far_metres: float = 3000.0,
        mly_cap: int = _MLY_MAX_LIMIT,
    ) -> None:
        self.keys = frozenset([keys] if isinstance(keys, str) else keys)
        self.secret = secret
        self._secret_bytes = _decode_secret(secret) if secret else None
        self.tokens = frozenset([tokens] if isinstance(tokens, str) else tokens)
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        self.fault_rate = float(fault_rate)
        self.seed = seed
        kinds = tuple(TRANSIENT_FAULT_KINDS if fault_kinds is None else fault_kinds)
        for k in kinds:
            self._check_kind(k)
        self.fault_kinds = kinds
        self.slow_seconds = float(slow_seconds)
        self.mly_thumb_size = int(mly_thumb_size)
        self.host = host
        self.port = int(port)
        self.jpeg_quality = int(jpeg_quality)
        self.extra_routes = list(extra_routes)
        self.image_variants = int(image_variants)
        self.far_share = float(far_share)
        self.mly_cap = int(mly_cap)
        self.far_metres = float(far_metres)
        self.world = FakeWorld(
            spacing=spacing,
            coverage=coverage,
            coverage_block=coverage_block,
            jitter=jitter,
            world_seed=world_seed,
        )
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=log_limit)
        self._image_counts: collections.Counter = collections.Counter()
        self._scripted: list[list[Any]] = []
        self._images = _LRU(image_cache)
        self._scenes = _LRU(2048)
        self._mly_pages = _LRU(64)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- public helpers ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if not self.port:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of the request log: dicts with method, path, query, headers, status,
        fault, endpoint, time. ``status`` is None for a ``reset``."""
        with self._lock:
            return list(self._log)

    @property
    def image_requests(self) -> collections.Counter:
        """How many Street View image requests arrived per (pano_id, heading), faulted or
        not; pano_id is the resolved panorama (None where none), heading in [0, 360)."""
        with self._lock:
            return collections.Counter(self._image_counts)

    def count(self, path_prefix: str | None = None) -> int:
        """Requests logged whose path starts with ``path_prefix`` (or an endpoint name)."""
        with self._lock:
            return sum(1 for e in self._log if _matches(e["path"], e["endpoint"], path_prefix))

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._image_counts.clear()

    def inject(self, kind: str, n: int = 1, path_prefix: str | None = None) -> None:
        """Make the next ``n`` requests matching ``path_prefix`` (a path prefix, or one of
        "metadata", "image", "mapillary", "thumb") fail with ``kind``."""
        self._check_kind(kind)
        if n < 1:
            raise ValueError("n must be at least 1")
        with self._lock:
            self._scripted.append([kind, int(n), path_prefix])

    def clear_faults(self) -> None:
        with self._lock:
            self._scripted.clear()

    @property
    def pending_faults(self) -> list[tuple[str, int, str | None]]:
        with self._lock:
            return [tuple(s) for s in self._scripted]  # type: ignore[misc]

    def metadata_answer(self, cell: tuple[int, int] | None) -> dict[str, Any]:
        """The metadata JSON for a lattice cell, moved ``far_metres`` north for the
        ``far_share`` of cells chosen by hash."""
        answer = self.world.metadata_for_cell(cell)
        if cell is not None and self.far_share and _unit("far", *cell[:2]) < self.far_share:
            where = answer["location"]
            where["lat"] = where["lat"] + self.far_metres / 111_320.0
        return answer

    def pano_for(self, lat: float, lon: float, radius: float = 50.0) -> dict[str, Any]:
        """The metadata JSON the server answers for this location (status OK or
        ZERO_RESULTS)."""
        return self.metadata_answer(self.world.lookup(float(lat), float(lon), float(radius)))

    def sample_location(self, covered: bool = True, near=(60.17, 24.94)) -> tuple[float, float]:
        return self.world.sample_location(covered, near)

    def mly_images_in(
        self,
        bbox: tuple[float, float, float, float] | str,
        fields: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The images in ``bbox`` (all of them: ``/images?bbox=...`` returns at most
        ``mly_cap`` of these), in order, with ``fields`` (default: all) plus ``id``."""
        if isinstance(bbox, str):
            bbox = tuple(float(x) for x in bbox.split(","))  # type: ignore[assignment]
        wanted = list(MLY_FIELDS) if fields is None else ["id", *[f for f in fields if f != "id"]]
        base = self.url if self.port else "http://127.0.0.1:0"
        return [self._mly_out(j, i, wanted, base) for j, i in self.world.mly_cells_in(bbox)]

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> FakeWeb:
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready, errors), name="FakeWeb", daemon=True
        )
        self._thread.start()
        ready.wait()
        if errors:
            self._thread.join()
            self._thread = None
            self._loop = None
            raise errors[0]
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeWeb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.astop())
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(METADATA_PATH, self._handle_metadata)
        app.router.add_get(IMAGE_PATH, self._handle_image)
        app.router.add_get(MLY_IMAGES_PATH, self._handle_mly_images)
        app.router.add_get(MLY_THUMB_PREFIX + "{name}", self._handle_mly_thumb)
        for method, path, handler in self.extra_routes:
            app.router.add_route(method, path, handler)
        return app

    async def astart(self) -> None:
        """Start serving on the running loop (the process mode uses this directly)."""
        runner = web.AppRunner(
            self.make_app(), access_log=None, shutdown_timeout=0.5, keepalive_timeout=75.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def astop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- faults -------------------------------------------------------------------------
    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of {', '.join(FAULT_KINDS)}")

    def _pick_fault(self, path: str, endpoint: str) -> str | None:
        with self._lock:
            for entry in self._scripted:
                if _matches(path, endpoint, entry[2]):
                    entry[1] -= 1
                    if entry[1] <= 0:
                        self._scripted.remove(entry)
                    return entry[0]
            if self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                kinds = [
                    k for k in self.fault_kinds if k != "over_query_limit" or endpoint == "metadata"
                ]
                if kinds:
                    return self._rng.choice(kinds)
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        path = request.path
        endpoint = _ENDPOINT_BY_PATH.get(path)
        if endpoint is None and path.startswith(MLY_THUMB_PREFIX):
            endpoint = "thumb"
        entry: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "status": None,
            "fault": None,
            "endpoint": endpoint,
            "time": time.time(),
        }
        with self._lock:
            self._log.append(entry)
        if endpoint == "image":
            key = self._image_key(request.query)
            with self._lock:
                self._image_counts[key] += 1
        fault = self._pick_fault(path, endpoint) if endpoint is not None else None
        entry["fault"] = fault
        try:
            resp = await self._respond(request, handler, endpoint, fault)
        except web.HTTPException as exc:
            entry["status"] = exc.status
            raise
        except Exception:
            entry["status"] = 500  # what aiohttp answers to a handler's exception
            raise
        entry["status"] = None if fault == "reset" else resp.status
        return resp

    async def _respond(self, request, handler, endpoint, fault) -> web.StreamResponse:
        if fault is None:
            return await handler(request)
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
            return await handler(request)
        if fault in ("http429", "http500", "http503"):
            status = int(fault[4:])
            reason = {
                429: "Too Many Requests",
                500: "Internal Server Error",
                503: "Service Unavailable",
            }[status]
            return web.Response(status=status, text=f"{status} {reason}\n")
        if fault == "over_query_limit":
            if endpoint == "metadata":
                return _json(
                    {
                        "status": "OVER_QUERY_LIMIT",
                        "error_message": "You have exceeded your rate-limit for this API.",
                    }
                )
            return web.Response(status=429, text="429 Too Many Requests\n")
        if fault == "request_denied":
            if endpoint == "metadata":
                return _json({"status": "REQUEST_DENIED", "error_message": _MSG_BAD_KEY})
            if endpoint == "mapillary":
                return _mly_auth_error()
            return web.Response(status=403, text=_MSG_BAD_KEY + "\n")
        if fault == "invalid_request":
            if endpoint == "metadata":
                return _json({"status": "INVALID_REQUEST"})
            if endpoint == "mapillary":
                return _mly_error(400, "Invalid parameter", 100)
            return web.Response(status=400, text="400 Bad Request\n")
        if fault == "zero_results":
            if endpoint == "metadata":
                return _json({"status": "ZERO_RESULTS"})
            if endpoint == "mapillary":
                return _json({"data": []})
            if endpoint == "thumb":
                return web.Response(status=404, text="404 Not Found\n")
            return await self._handle_image(request, no_pano=True)
        if fault == "wrong_content_type":
            return web.Response(
                text="<html><body><h1>Service temporarily unavailable</h1></body></html>",
                content_type="text/html",
            )
        if fault == "grey":
            w, h = self.mly_thumb_size, self.mly_thumb_size * 3 // 4
            m = _SIZE_RE.match(request.query.get("size", ""))
            if m and endpoint != "thumb":
                w, h = int(m.group(1)), int(m.group(2))
            elif endpoint != "thumb":
                w, h = _MAX_SIZE, _MAX_SIZE
            return _jpeg_response(self._grey(min(max(w, 1), _MAX_SIZE), min(max(h, 1), _MAX_SIZE)))
        if fault == "truncated":
            resp = await handler(request)
            body = bytes(resp.body or b"") if isinstance(resp, web.Response) else b""
            if len(body) < 2:
                body = body + b" " * (2 - len(body))
            ctype = resp.headers.get("Content-Type", "application/octet-stream")
            head = (
                f"HTTP/1.1 {resp.status} {resp.reason}\r\n"
                f"Content-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            transport = request.transport
            if transport is not None and not transport.is_closing():
                transport.write(head + body[: len(body) // 2])
                transport.close()
            return web.Response(status=resp.status)
        if fault == "reset":
            transport = request.transport
            if transport is not None and not transport.is_closing():
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):  # linger 0: close sends a TCP RST
                        linger = struct.pack("ii", 1, 0)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                transport.abort()
            return web.Response(status=500)
        raise AssertionError(fault)  # pragma: no cover

    # -- Street View ----------------------------------------------------------------------
    def _key_problem(self, query) -> str | None:
        key = query.get("key")
        if not key:
            return _MSG_NO_KEY
        if key not in self.keys:
            return _MSG_BAD_KEY
        return None

    def _signature_ok(self, request: web.Request) -> bool:
        if self._secret_bytes is None:
            return True
        path, _, qs = request.raw_path.partition("?")
        sig = None
        kept = []
        for part in qs.split("&") if qs else ():
            if part.startswith("signature="):
                sig = urllib.parse.unquote(part[len("signature=") :])
            else:
                kept.append(part)
        if not sig:
            return False
        message = f"{path}?{'&'.join(kept)}".encode()
        digest = hmac.new(self._secret_bytes, message, hashlib.sha1).digest()
        expected = base64.urlsafe_b64encode(digest).decode()
        return hmac.compare_digest(expected.encode(), sig.encode())

    def _resolve(self, query):
        """(cell or None, problem) for a Street View request's pano/location/radius.

        problem: None, "missing", "invalid" or "not_found" (text that is not coordinates).
        """
        pano = query.get("pano")
        if pano:
            return self.world.cell_of_pano(pano), None
        location = query.get("location")
        if not location:
            return None, "missing"
        try:
            radius = _float(query.get("radius"), 50.0)
            if radius is None or radius < 0:
                raise ValueError
            loc = _parse_location(location)
        except ValueError:
            return None, "invalid"
        if loc is None:
            return None, "not_found"
        cell = self.world.lookup(loc[0], loc[1], radius)
        return (cell[0], cell[1]) if cell is not None else None, None

    def _image_key(self, query) -> tuple[str | None, float | None]:
        cell, _ = self._resolve(query)
        pano = self.world.pano_id(*cell) if cell is not None else None
        try:
            heading = _float(query.get("heading"), None)
        except ValueError:
            heading = None
        return pano, (round(heading % 360.0, 6) if heading is not None else None)

    async def _handle_metadata(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        problem = self._key_problem(q)
        if problem:
            return _json({"status": "REQUEST_DENIED", "error_message": problem})
        if not self._signature_ok(request):
            return web.Response(status=403, text=_MSG_BAD_SIG + "\n")
        cell, problem = self._resolve(q)
        if problem == "missing":
            return _json(
                {
                    "status": "INVALID_REQUEST",
                    "error_message": "Either location or pano is required.",
                }
            )
        if problem == "invalid":
            return _json({"status": "INVALID_REQUEST"})
        if problem == "not_found":
            return _json({"status": "NOT_FOUND"})
        return _json(self.metadata_answer(cell))

    async def _handle_image(
        self, request: web.Request, no_pano: bool = False
    ) -> web.StreamResponse:
        q = request.query
        problem = self._key_problem(q)
        if problem:
            text = f"The Google Maps Platform server rejected your request. {problem}\n"
            return web.Response(status=403, text=text)
        if not self._signature_ok(request):
            return web.Response(status=403, text=_MSG_BAD_SIG + "\n")
        m = _SIZE_RE.match(q.get("size", ""))
        if not m:
            return web.Response(status=400, text="The size parameter is required: size=WxH.\n")
        w, h = int(m.group(1)), int(m.group(2))
        if not (1 <= w <= _MAX_SIZE and 1 <= h <= _MAX_SIZE):
            return web.Response(status=400, text=f"size must be at most {_MAX_SIZE}x{_MAX_SIZE}.\n")
        cell, problem = self._resolve(q)
        if problem == "missing":
            return web.Response(status=400, text="Either location or pano is required.\n")
        try:
            heading = _float(q.get("heading"), None)
            fov = _float(q.get("fov"), 90.0)
            pitch = _float(q.get("pitch"), 0.0)
        except ValueError:
            return web.Response(status=400, text="heading, fov and pitch must be numbers.\n")
        if no_pano:
            cell = None
        if cell is None or problem is not None:
            if _truthy(q.get("return_error_code")):
                return web.Response(status=404, text="No imagery here.\n")
            return _jpeg_response(self._grey(w, h))
        if heading is None:
            heading = 0.0
            loc = _parse_location(q["location"]) if "location" in q and not q.get("pano") else None
            if loc is not None:
                plat, plon = self.world.pano_location(*cell)
                dx = (loc[1] - plon) * math.cos(math.radians(plat))
                dy = loc[0] - plat
                if abs(dx) + abs(dy) > 1e-6:
                    heading = math.degrees(math.atan2(dx, dy)) % 360.0
        fov = min(max(fov, 10.0), 120.0)
        pitch = min(max(pitch, -90.0), 90.0)
        pano = self.world.pano_id(*cell)
        key = ("sv", pano, round(heading % 360.0, 3), round(pitch, 3), round(fov, 3), w, h)
        body = self._images.get(key)
        if body is None:
            if self.image_variants > 0:
                v = _h64(self.world._ws, "variant", *key) % self.image_variants
                base = self._images.get(("variant", v, w, h))
                if base is None:
                    scene = self._scene_for(f"variant{v}")
                    base = _jpeg(_render(scene, 0.0, 0.0, 90.0, w, h), self.jpeg_quality)
                    self._images.put(("variant", v, w, h), base)
                note = f"pano={pano};heading={key[2]};pitch={key[3]};fov={key[4]}".encode()
                body = base[:2] + b"\xff\xfe" + struct.pack(">H", len(note) + 2) + note + base[2:]
            else:
                scene = self._scene_for(pano)
                body = _jpeg(_render(scene, key[2], key[3], key[4], w, h), self.jpeg_quality)
            self._images.put(key, body)
        return _jpeg_response(body)

    def _scene_for(self, name: str) -> dict[str, Any]:
        scene = self._scenes.get(name)
        if scene is None:
            scene = _scene(_h64(self.world._ws, "scene", name))
            self._scenes.put(name, scene)
        return scene

    def _grey(self, w: int, h: int) -> bytes:
        key = ("grey", w, h)
        body = self._images.get(key)
        if body is None:
            body = _jpeg(Image.new("RGB", (w, h), GREY_PLACEHOLDER_RGB), 90)
            self._images.put(key, body)
        return body

    # -- Mapillary ----------------------------------------------------------------------
    def _mly_token(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization")
        if auth:
            scheme, _, token = auth.strip().partition(" ")
            if scheme.lower() in ("oauth", "bearer") and token.strip():
                return token.strip()
            return None
        return request.query.get("access_token")

    def _mly_out(self, j: int, i: int, fields: list[str], base: str) -> dict[str, Any]:
        rec = self.world.mly_record(j, i)
        out: dict[str, Any] = {}
        for f in fields:
            if f.startswith("thumb_"):
                image_id = rec["id"]
                sig = self.world.mly_thumb_sig(image_id)
                out[f] = f"{base}{MLY_THUMB_PREFIX}{image_id}.jpg?sig={sig}"
            elif f in rec:  # the API leaves out fields an image lacks
                out[f] = rec[f]
        return out

    async def _handle_mly_images(self, request: web.Request) -> web.StreamResponse:
        token = self._mly_token(request)
        if token is None or token not in self.tokens:
            return _mly_auth_error()
        q = request.query
        try:
            bbox = tuple(float(x) for x in q.get("bbox", "").split(","))
            if len(bbox) != 4 or not all(map(math.isfinite, bbox)):
                raise ValueError
        except ValueError:
            return _mly_error(400, "bbox must be minLon,minLat,maxLon,maxLat", 100)
        minlon, minlat, maxlon, maxlat = bbox
        if not (-180 <= minlon < maxlon <= 180 and -90 <= minlat < maxlat <= 90):
            return _mly_error(400, "Invalid bbox", 100)
        fields = ["id"]
        for f in (q.get("fields") or "").split(","):
            f = f.strip()
            if not f or f == "id":
                continue
            if f not in MLY_FIELDS:
                return _mly_error(
                    400, f"(#100) Tried accessing nonexisting field ({f}) on node type (Image)", 100
                )
            fields.append(f)
        try:
            limit = int(q.get("limit", _MLY_MAX_LIMIT))
            if limit < 1:
                raise ValueError
            limit = min(limit, _MLY_MAX_LIMIT)
            offset = 0
            if q.get("after"):
                raw = q["after"]
                offset = int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode())
                if offset < 0:
                    raise ValueError
            start_ms = _iso_ms(q["start_captured_at"]) if q.get("start_captured_at") else None
            end_ms = _iso_ms(q["end_captured_at"]) if q.get("end_captured_at") else None
        except (ValueError, UnicodeDecodeError):
            return _mly_error(400, "Invalid parameter", 100)
        page_key = (bbox, start_ms, end_ms)
        cells = self._mly_pages.get(page_key)
        if cells is None:
            try:
                cells = self.world.mly_cells_in(bbox, start_ms, end_ms)  # type: ignore[arg-type]
            except ValueError:
                return _mly_error(400, "The bbox is too large.", 100)
            cells = cells[: self.mly_cap]  # the service's cap: the rest is silently dropped
            self._mly_pages.put(page_key, cells)
        base = f"{request.scheme}://{request.host}"
        page = cells[offset : offset + limit]
        payload: dict[str, Any] = {"data": [self._mly_out(j, i, fields, base) for j, i in page]}
        if offset + limit < len(cells):
            after = base64.urlsafe_b64encode(str(offset + limit).encode()).decode().rstrip("=")
            before = base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")
            payload["paging"] = {
                "cursors": {"before": before, "after": after},
                "next": str(request.url.update_query(after=after)),
            }
        return _json(payload)

    async def _handle_mly_thumb(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        image_id = name[:-4] if name.endswith(".jpg") else ""
        cell = self.world.cell_of_mly(image_id) if image_id else None
        if cell is None:
            return web.Response(status=404, text="404 Not Found\n")
        sig = request.query.get("sig", "")
        if not hmac.compare_digest(sig.encode(), self.world.mly_thumb_sig(image_id).encode()):
            return web.Response(status=403, text="URL signature mismatch\n")
        w = self.mly_thumb_size
        h = max(1, w * 3 // 4)
        key = ("mly", image_id, w, h)
        body = self._images.get(key)
        if body is None:
            rec = self.world.mly_record(*cell)
            scene = self._scene_for("mly" + image_id)
            body = _jpeg(_render(scene, rec["compass_angle"], 0.0, 90.0, w, h), self.jpeg_quality)
            self._images.put(key, body)
        return _jpeg_response(body)


def _matches(path: str, endpoint: str | None, spec: str | None) -> bool:
    if spec is None:
        return True
    if spec in ENDPOINTS:
        return endpoint == spec
    return path.startswith(spec)


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, ensure_ascii=False).encode(),
        content_type=_JSON,
        charset="utf-8",
    )


def _jpeg_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="image/jpeg")


def _mly_error(status: int, message: str, code: int, kind: str = "MLYApiException"):
    return _json({"error": {"message": message, "type": kind, "code": code}}, status=status)


def _mly_auth_error() -> web.Response:
    return _mly_error(401, "Invalid OAuth access token.", 190, "OAuthException")


# --------------------------------------------------------------------------- process mode


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port (default)")
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0, help="seed of the random faults")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--keys", default="good-key", help="comma-separated API keys")
    p.add_argument("--secret", default=None, help="URL-signing secret (URL-safe base64)")
    p.add_argument("--tokens", default="MLY|good", help="comma-separated Mapillary tokens")
    p.add_argument(
        "--image-size",
        type=int,
        default=256,
        help="width of Mapillary thumbnails in pixels (Street View images are "
        "always the size asked for)",
    )
    p.add_argument("--slow-seconds", type=float, default=3.0)
    p.add_argument("--coverage", type=float, default=0.9)
    p.add_argument("--log-limit", type=int, default=10_000)
    p.add_argument(
        "--image-variants",
        type=int,
        default=512,
        help="serve Street View images from N pictures rendered once per size "
        "(bytes still unique per view); 0: render every view (slower)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = _parse_args(argv)
    fake = FakeWeb(
        keys=[k for k in a.keys.split(",") if k],
        secret=a.secret,
        tokens=[t for t in a.tokens.split(",") if t],
        fault_rate=a.fault_rate,
        seed=a.seed,
        world_seed=a.world_seed,
        slow_seconds=a.slow_seconds,
        mly_thumb_size=a.image_size,
        coverage=a.coverage,
        host=a.host,
        port=a.port,
        log_limit=a.log_limit,
        image_variants=a.image_variants,
    )

    async def serve() -> None:
        await fake.astart()
        print(fake.url, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await fake.astop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
