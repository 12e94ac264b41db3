"""The ``mapillary`` provider: Mapillary's Graph API v4, one listing per tile, then thumbnails.

Pending points are grouped into square tiles of about ``tile_size`` metres (a fixed grid in
a local metric approximation, so a tile is the same on every run). Each tile costs one
listing, ``GET /images?bbox=...`` over its points' bounding box widened by ``radius``,
following ``paging.next`` until the last page. Every point of the tile then chooses among
the images within ``radius`` metres, for each heading (an offset from the road bearing, or
a compass degree with ``absolute_headings``):

- the images whose ``compass_angle`` lies within 45 degrees of the heading (images without a
  compass angle only when no image has one that fits), filtered by ``since``/``until``;
- walked nearest first, the first image of each capture day (UTC) is kept until
  ``captures_per_point`` days are held; they are numbered newest first (``k`` = 0, 1, ...);
- an image already chosen for another heading of the same point is not repeated.

Every field but the id and a location (``computed_geometry``, else ``geometry``) is
optional: undated images count as one capture day of their own (and are dropped by
``since``/``until``), images without a compass angle face no heading in particular.

A heading with no image gets a ``missing`` row, so every point of a tile is recorded. The
1024-pixel thumbnail of each chosen image is fetched right after the listing (its URL
expires) and stored once as ``mly<image id>``, shared by every point that chose it; a
row that reuses an image stored by an earlier run has width and height 0. With
``metadata_only`` nothing but listings is requested (for :func:`urbanvis.harvest.survey`).
Each row carries the image's sequence id in the extra column ``mly_sequence`` and its credit
in ``attribution`` (the creator's username if the listing names one, and the licence:
Mapillary's imagery is CC BY-SA 4.0, attribution required).

Mapillary returns at most 2,000 images for one bbox search (:data:`LISTING_CAP`), without
saying that it dropped any: a search that returns the cap is split into four quarter boxes,
each listed (and split again while it returns the cap), so no image of a dense area is lost;
images on a shared edge are kept once.

The token comes from ``MAPILLARY_TOKEN`` or a file and travels only in the
``Authorization: OAuth`` header of listing requests, never to the thumbnail host and never
into a file, log or message.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from .. import _secrets
from .._dates import bounds
from .._errors import InputError, one_line
from .._secrets import MAPILLARY_TOKEN_ENV as TOKEN_ENV
from ._distance import check_max_distance, located, nowhere
from ._imagecheck import ImageBody
from ._mlylisting import (
    EARTH_RADIUS,
    FIELDS,
    THUMB_FIELD,
    MlyImage,
    distances,
    epoch_ms,
    images_from_listing,
)
from ._registry import pick
from ._web import WebProvider
from ._webhttp import FatalError, Response, TransientError, WebSettings, read_secret
from .base import CaptureResult

log = logging.getLogger(__name__)

API = "https://graph.mapillary.com"
IMAGES = API + "/images"
MAX_PAGE = 2000
"""The API's largest ``limit``."""
SECTOR = 45.0
"""An image faces a heading when its compass angle is within this many degrees of it."""
MAX_PAGES = 1000
"""Pages followed per tile at most (a guard against a service that pages forever)."""
LISTING_CAP = 2000
"""The most images Mapillary returns for one bbox search: a search that returns this many
may have dropped others, so its box is split in four (a quadtree) until each answers fewer."""
MIN_SPLIT_DEG = 1e-6
"""A box narrower than this (about 10 cm) is not split further: so many images in one spot
can only be a broken answer, and splitting would never end."""
M_PER_DEG = math.pi * EARTH_RADIUS / 180.0


@dataclass(frozen=True)
class MapillaryConfig:
    """Which images each point keeps (stored in study.toml; the token never is).

    Parameters
    ----------
    headings
        Degrees: offsets from the road bearing, or compass degrees with ``absolute_headings``.
    radius
        Metres around the point within which an image counts.
    since, until
        Capture dates kept, both periods included: a year (``2015``), ``YYYY-MM``,
        ``YYYY-MM-DD`` or a time (:mod:`urbanvis._dates`; UTC unless a zone is given).
        None: no bound.
    captures_per_point
        Capture days kept per point and heading (2+ gives temporal pairs).
    tile_size
        Side in metres of the square tiles that share one listing request.
    page_size
        Images per listing page (``limit``; the API allows at most 2000).
    max_distance
        Metres: when given, images are chosen within this distance of the point instead of
        within ``radius`` (larger to accept more, smaller to be stricter).
    """

    headings: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    absolute_headings: bool = False
    radius: float = 25.0
    since: str | None = None
    until: str | None = None
    captures_per_point: int = 1
    tile_size: float = 500.0
    page_size: int = MAX_PAGE
    max_distance: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_distance", check_max_distance(self.max_distance))
        headings = tuple(float(h) for h in self.headings)
        if not headings or not all(math.isfinite(h) for h in headings):
            raise InputError("give at least one finite heading in `headings`, e.g. 0,90,180,270")
        object.__setattr__(self, "headings", headings)
        if not (math.isfinite(float(self.radius)) and float(self.radius) > 0):
            raise InputError(f"`radius` must be positive metres, got {self.radius}")
        if int(self.captures_per_point) < 1:
            raise InputError(
                f"`captures_per_point` must be at least 1, got {self.captures_per_point}"
            )
        if not (math.isfinite(float(self.tile_size)) and float(self.tile_size) >= 10):
            raise InputError(f"tile_size must be at least 10 metres, got {self.tile_size}")
        if not 1 <= int(self.page_size) <= MAX_PAGE:
            raise InputError(f"page_size must be 1..{MAX_PAGE} images, got {self.page_size}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):  # 2015 -> "2015"
                object.__setattr__(self, name, str(value))
        bounds(self.since, self.until)  # the one grammar; refuses a since after the until

    @property
    def reach(self) -> float:
        """Metres from a point within which its images are chosen (the listing is exact,
        so no tolerance is added: ``radius``, or ``max_distance`` when given)."""
        return float(self.max_distance if self.max_distance is not None else self.radius)


def create(**options: Any) -> MapillaryProvider:
    """The mapillary provider from its registry options (:mod:`._builtin`)."""
    names = (
        "headings", "absolute_headings", "radius", "since", "until", "captures_per_point",
        "max_distance",
    )  # fmt: skip
    return MapillaryProvider(
        MapillaryConfig(**pick(options, names)),
        WebSettings.from_options(options),
        token_file=options.get("key_file"),
        metadata_only=bool(options.get("metadata_only")),
    )


# --------------------------------------------------------------------------- dates
def time_bounds(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """Inclusive epoch-millisecond bounds of ``since`` and ``until`` (None: unbounded).

    ``since`` starts at the first instant of the period it names, ``until`` ends at the
    last: ``until="2020"`` keeps everything captured in 2020.
    """
    first, last = bounds(since, until)
    start = epoch_ms(first.start_utc) if first is not None else None
    end = epoch_ms(last.end_utc) - 1 if last is not None else None
    return start, end


def _iso_seconds(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ the provider
class MapillaryProvider(WebProvider):
    """Mapillary Graph API v4 captures (module docstring)."""

    name = "mapillary"

    def __init__(
        self,
        config: MapillaryConfig | None = None,
        web: WebSettings | None = None,
        *,
        token: str | None = None,
        token_file: str | None = None,
        metadata_only: bool = False,
        listing_cap: int = LISTING_CAP,
    ) -> None:
        super().__init__(web)
        self.config = config if config is not None else MapillaryConfig()
        self.listing_cap = int(listing_cap)
        """Images one search returns at most (the service's cap; smaller in tests)."""
        self.splits = 0
        """Boxes split because their search returned the cap (last run)."""
        if token:
            _secrets.register(token)
        else:
            token = read_secret(TOKEN_ENV, token_file, what="Mapillary access token")
        self._token = token
        self.metadata_only = bool(metadata_only)
        self._bounds = time_bounds(self.config.since, self.config.until)

    def __repr__(self) -> str:  # never the token
        return f"MapillaryProvider({self.config!r}, metadata_only={self.metadata_only})"

    def request_estimate(self, group: pd.DataFrame) -> int:
        # one listing page (usually), then a thumbnail per point, heading and day at most
        if self.metadata_only:
            return 1
        cfg = self.config
        return 1 + len(group) * len(cfg.headings) * int(cfg.captures_per_point)

    def parameters(self) -> dict[str, Any]:
        return asdict(self.config)

    # ------------------------------------------------------------------- tiles
    def groups(self, points: pd.DataFrame):
        """The points of each ``tile_size`` square, tile by tile (south to north, then
        west to east); points without coordinates come last, on their own."""
        size = float(self.config.tile_size)
        lon = points["lon"].to_numpy(dtype=float)
        lat = points["lat"].to_numpy(dtype=float)
        good = np.isfinite(lon) & np.isfinite(lat)
        row = np.floor(np.where(good, lat, 0.0) * M_PER_DEG / size)
        centre = np.radians(np.clip((row + 0.5) * size / M_PER_DEG, -89.0, 89.0))
        col = np.floor(np.where(good, lon, 0.0) * M_PER_DEG * np.cos(centre) / size)
        order = np.lexsort((np.arange(len(points)), col, row))
        order = order[good[order]]
        if len(order):
            keys = np.stack([row[order], col[order]], axis=1)
            starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
            for a, b in zip(starts, np.r_[starts[1:], len(order)], strict=True):
                yield points.iloc[order[a:b]]
        bad = np.flatnonzero(~good)
        for i in bad:
            yield points.iloc[i : i + 1]

    def _bbox(self, group: pd.DataFrame) -> tuple[float, float, float, float]:
        """The group's points' bounding box widened by ``radius`` metres (and a little)."""
        lon = group["lon"].to_numpy(dtype=float)
        lat = group["lat"].to_numpy(dtype=float)
        margin = self.config.reach * 1.01 + 1.0
        dlat = math.degrees(margin / EARTH_RADIUS)
        widest = min(float(np.max(np.abs(lat))) + dlat, 89.9)
        dlon = math.degrees(margin / (EARTH_RADIUS * max(math.cos(math.radians(widest)), 0.01)))
        return (
            max(float(lon.min()) - dlon, -180.0),
            max(float(lat.min()) - dlat, -90.0),
            min(float(lon.max()) + dlon, 180.0),
            min(float(lat.max()) + dlat, 90.0),
        )

    # ---------------------------------------------------------------- requests
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"OAuth {self._token}"}

    async def _listing(self, bbox: tuple[float, float, float, float]) -> list[MlyImage]:
        """Every image in ``bbox``: across all pages, and in quarter boxes (recursively)
        while a search returns the service's cap."""
        records = await self._search(bbox)
        west, south, east, north = bbox
        if len(records) < self.listing_cap or min(east - west, north - south) < MIN_SPLIT_DEG:
            if len(records) >= self.listing_cap:
                log.warning("a Mapillary box of under 10 cm still returns the cap; kept as is")
            return images_from_listing(records)
        self.splits += 1
        mid_lon, mid_lat = (west + east) / 2, (south + north) / 2
        quarters = [
            (west, south, mid_lon, mid_lat),
            (mid_lon, south, east, mid_lat),
            (west, mid_lat, mid_lon, north),
            (mid_lon, mid_lat, east, north),
        ]
        found = await asyncio.gather(*(self._listing(q) for q in quarters))
        unique: dict[str, MlyImage] = {}
        for images in found:
            for image in images:
                unique.setdefault(image.id, image)  # an image on a shared edge: once
        return list(unique.values())

    async def _search(self, bbox: tuple[float, float, float, float]) -> list[Any]:
        """The raw records of one bbox search, across all pages."""
        params: dict[str, Any] = {
            "bbox": ",".join(f"{v:.7f}" for v in bbox),
            "fields": ",".join(FIELDS),
            "limit": int(self.config.page_size),
        }
        start, end = self._bounds
        if start is not None:  # the service may narrow the listing; the choice re-checks
            params["start_captured_at"] = _iso_seconds(start - start % 1000)
        if end is not None:
            params["end_captured_at"] = _iso_seconds(end - end % 1000 + 1000)
        records: list[Any] = []
        response = await self.client().get(
            IMAGES, params, headers=self._auth(), retry_if=_unreadable
        )
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = _page(response)
            records.extend(page.get("data") or [])
            paging = page.get("paging")
            nxt = paging.get("next") if isinstance(paging, dict) else None
            if not isinstance(nxt, str) or not nxt or nxt in seen:
                break
            seen.add(nxt)
            response = await self.client().get(
                nxt, headers=self._auth(), retry_if=_unreadable, rewrite=False
            )
        else:
            log.warning("stopped following Mapillary pages after %d for one tile", MAX_PAGES)
        return records

    async def _thumb(self, url: str) -> tuple[bytes, int, int]:
        """The thumbnail's bytes and size; TransientError with a short reason if it fails."""
        body = ImageBody(placeholder=False)
        try:  # a CDN link: no token sent
            response = await self.client().get(url, rewrite=False, retry_if=body)
        except TransientError as exc:  # the reason, without the long signed link
            head, sep, _ = str(exc).rpartition(" for ")
            raise TransientError(f"thumbnail: {head if sep else exc}") from None
        if response.status != 200:
            expired = " (expired or refused link)" if response.status in (403, 410) else ""
            raise TransientError(f"thumbnail answered HTTP {response.status}{expired}")
        width, height, _ = body.result()
        return response.body, width, height

    # --------------------------------------------------------------- choosing
    def _headings(self, bearing: float) -> list[tuple[float, float]]:
        """(compass heading, configured offset) per configured heading."""
        cfg = self.config
        if cfg.absolute_headings or not math.isfinite(bearing):
            bearing = 0.0
        return [((bearing + h) % 360.0, h) for h in cfg.headings]

    def choose(
        self, lon: float, lat: float, bearing: float, images: list[MlyImage]
    ) -> list[tuple[float, float, int | None, MlyImage | None, str]]:
        """What one point keeps: (heading, offset, k, image, error) per chosen image, and
        (heading, offset, None, None, why) for each heading left without one."""
        cfg = self.config
        radius = cfg.reach
        headings = self._headings(bearing)
        if not images:
            near = np.zeros(0, dtype=bool)
        else:
            lons = np.array([im.lon for im in images])
            lats = np.array([im.lat for im in images])
            dist = distances(lon, lat, lons, lats)
            near = dist <= radius
            start, end = self._bounds
            if start is not None or end is not None:
                for i, im in enumerate(images):
                    t = im.captured_ms
                    if (
                        t is None
                        or (start is not None and t < start)
                        or (end is not None and t > end)
                    ):
                        near[i] = False
        if not near.any():
            why = f"no Mapillary image within {radius:g} m"
            return [(h, o, None, None, why) for h, o in headings]
        idx: list[int] = sorted(
            np.flatnonzero(near).tolist(), key=lambda i: (float(dist[i]), images[i].id)
        )
        compass = np.array([images[i].compass for i in idx])
        known = np.isfinite(compass)
        out: list[tuple[float, float, int | None, MlyImage | None, str]] = []
        taken: set[str] = set()
        for heading, offset in headings:
            off = np.abs((compass - heading + 180.0) % 360.0 - 180.0)
            facing = known & (off <= SECTOR)
            pool = facing if facing.any() else ~known
            kept: list[MlyImage] = []
            days: set[str] = set()
            for j, use in zip(idx, pool.tolist(), strict=True):
                if not use:
                    continue
                day = images[j].captured_at[:10]
                if day in days:
                    continue
                days.add(day)
                kept.append(images[j])
                if len(kept) >= int(cfg.captures_per_point):
                    break
            if not kept:
                why = (
                    f"no Mapillary image within {radius:g} m facing {heading:.0f} "
                    f"+/- {SECTOR:g} deg"
                )
                out.append((heading, offset, None, None, why))
                continue
            kept.sort(key=lambda im: -im.captured_ms if im.captured_ms is not None else math.inf)
            for k, image in enumerate(kept):
                if image.id not in taken:
                    taken.add(image.id)
                    out.append((heading, offset, k, image, ""))
        return out

    # ------------------------------------------------------------- one tile
    async def capture_group(self, group: pd.DataFrame) -> list[CaptureResult]:
        lon = group["lon"].to_numpy(dtype=float)
        lat = group["lat"].to_numpy(dtype=float)
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            return [
                _row(p, o, h, status="missing", error="the point has no coordinates")
                for p in group.itertuples(index=False)
                for h, o in self._headings(float(p.bearing))
            ]
        try:
            images = await self._listing(self._bbox(group))
        except TransientError as exc:
            return [
                _row(p, o, h, status="failed", error=f"listing: {exc}")
                for p in group.itertuples(index=False)
                for h, o in self._headings(float(p.bearing))
            ]
        plans = [
            (p, self.choose(float(p.lon), float(p.lat), float(p.bearing), images))
            for p in group.itertuples(index=False)
        ]
        answers: list[Any] = []
        if not self.metadata_only:  # one thumbnail per chosen image, shared (ImageCache)
            wanted = [c[3] for _, chosen in plans for c in chosen if c[3] is not None]
            # a cancelled point leaves shared fetches running: ImageCache.close() ends them
            answers = await asyncio.gather(
                *(self._image(image) for image in wanted), return_exceptions=True
            )
            for answer in answers:
                if isinstance(answer, BaseException) and not isinstance(answer, TransientError):
                    raise answer  # a refused token, the budget spent, a cancellation
        pending = iter(answers)
        results = []
        for p, chosen in plans:
            for heading, offset, k, image, why in chosen:
                if image is None:
                    results.append(_row(p, offset, heading, status="missing", error=why))
                    continue
                key = f"mly{image.id}"
                if self.metadata_only:
                    results.append(_row(p, offset, heading, k, image, status="ok", key=key))
                    continue
                answer = next(pending)
                if isinstance(answer, TransientError):
                    results.append(
                        _row(p, offset, heading, k, image, status="failed", error=str(answer))
                    )
                elif answer is None:  # stored by an earlier run
                    results.append(_row(p, offset, heading, k, image, status="ok", key=key))
                else:
                    body, width, height = answer
                    ok = _row(p, offset, heading, k, image, status="ok", key=key, body=body)
                    ok.row.update(width=width, height=height)
                    results.append(ok)
        return results

    async def _image(self, image: MlyImage) -> tuple[bytes, int, int] | None:
        """The thumbnail (shared), or None when an earlier run stored it."""

        async def fetch() -> tuple[bytes, int, int]:
            if image.thumb is None:
                raise TransientError(f"the listing gave no {THUMB_FIELD}")
            return await self._thumb(image.thumb)

        return await self.image_cache().get(f"mly{image.id}", fetch)


def _row(
    point: Any,
    offset: float,
    heading: float,
    k: int | None = None,
    image: MlyImage | None = None,
    *,
    status: str,
    error: str = "",
    key: str | None = None,
    body: bytes | None = None,
) -> CaptureResult:
    pid = int(point.point_id)
    row = {
        "capture_id": f"mly-{pid}-h{int(round(offset)) % 360:03d}-{k or 0}",
        "point_id": pid,
        "pano_id": "",
        "heading": round(heading, 3),
        "pitch": 0.0,
        "fov": math.nan,
        "captured_at": "",
        "width": 0,
        "height": 0,
        "status": status,
        "error": error,
        "lon": float(point.lon),
        "lat": float(point.lat),
        "mly_sequence": "",  # also in the row: a metadata-only survey keeps rows only
        "attribution": "",
        **nowhere(),
    }
    if image is not None:
        row.update(
            pano_id=image.id,
            heading=round(image.compass, 3) if math.isfinite(image.compass) else math.nan,
            captured_at=image.captured_at,
            lon=image.lon,
            lat=image.lat,
            mly_sequence=image.sequence,
            attribution=image.attribution,
            **located(float(point.lon), float(point.lat), image.lon, image.lat),
        )
    return CaptureResult(
        row, image=body, image_key=key, extra={"mly_sequence": row["mly_sequence"]}
    )


def _page(response: Response) -> dict[str, Any]:
    """The JSON page of a listing response; FatalError for a refused token or request."""
    try:
        payload = response.json()
    except TransientError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    if response.status in (401, 403) or error.get("type") == "OAuthException":
        detail = f"HTTP {response.status}"
        if error.get("type"):
            detail += f", {error['type']}"
        raise FatalError(
            f"Mapillary refused the access token ({detail}); set {TOKEN_ENV} (or `key_file`) "
            f"to a valid client access token from https://www.mapillary.com/dashboard/developers"
        )
    if response.status == 400:
        message = _secrets.redact(one_line(str(error.get("message") or "no detail")))[:200]
        raise FatalError(
            f"Mapillary rejected the listing request (HTTP 400: {message}); check "
            f"`since`/`until` and the points' coordinates"
        )
    if response.status != 200:
        raise TransientError(f"listing answered HTTP {response.status}")
    if not isinstance(payload, dict) or not isinstance(payload.get("data", []), list):
        raise TransientError("the listing is not a Mapillary image page")
    return payload


def _unreadable(response: Response) -> str | None:
    """Retry a 200 whose body is not JSON (a proxy's hiccup)."""
    if response.status != 200:
        return None
    try:
        response.json()
    except TransientError:
        return "unreadable listing JSON"
    return None
