"""Mapillary's image listings, read: every field but the id and a location
(``computed_geometry``, else ``geometry``) is optional (for the ``mapillary`` provider,
:mod:`.mapillary`), and the great-circle distances that choose among the listed images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

THUMB_FIELD = "thumb_1024_url"
FIELDS = (
    "id", "captured_at", "compass_angle", "computed_geometry", "geometry", "sequence",
    "creator", THUMB_FIELD,
)  # fmt: skip
"""The fields a listing asks for."""
EARTH_RADIUS = 6_371_008.8
"""Mean earth radius, metres."""
LICENCE = "Mapillary, CC BY-SA 4.0"
"""The credit of an image whose creator the listing does not name (Mapillary's imagery is
licensed CC BY-SA 4.0, attribution required)."""


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since 1970-01-01 UTC of an aware datetime."""
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))


@dataclass(frozen=True)
class MlyImage:
    """One listed image, every field but the id and location optional."""

    id: str
    lon: float
    lat: float
    captured_ms: int | None
    compass: float  # NaN when unknown
    sequence: str
    thumb: str | None
    creator: str = ""
    """The uploader's username, "" when the listing names none."""

    @property
    def attribution(self) -> str:
        """The credit to show with the image: its creator and the licence."""
        return f"© {self.creator}, {LICENCE}" if self.creator else LICENCE

    @property
    def captured_at(self) -> str:
        """``YYYY-MM-DDTHH:MM`` in UTC, or "" when unknown."""
        if self.captured_ms is None:
            return ""
        return datetime.fromtimestamp(self.captured_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M")


def _point(geometry: Any) -> tuple[float, float] | None:
    if not isinstance(geometry, dict):
        return None
    coords = geometry.get("coordinates")
    if not isinstance(coords, list | tuple) or len(coords) < 2:
        return None
    try:
        lon, lat = float(coords[0]), float(coords[1])
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90):
        return None
    return lon, lat


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return epoch_ms(moment)
        ms = float(value)
        if not math.isfinite(ms):
            return None
        out = int(ms)
        datetime.fromtimestamp(out / 1000, tz=UTC)  # representable
        return out
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _compass(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        angle = float(value)
    except (TypeError, ValueError):
        return math.nan
    return angle % 360.0 if math.isfinite(angle) else math.nan


def images_from_listing(records: Any) -> list[MlyImage]:
    """The usable images of a listing's ``data``: those with an id and a location
    (``computed_geometry``, else ``geometry``); the first of repeated ids is kept."""
    out: list[MlyImage] = []
    seen: set[str] = set()
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, dict) or record.get("id") in (None, ""):
            continue
        image_id = str(record["id"])
        where = _point(record.get("computed_geometry")) or _point(record.get("geometry"))
        if where is None or image_id in seen:
            continue
        seen.add(image_id)
        sequence = record.get("sequence")
        if isinstance(sequence, dict):
            sequence = sequence.get("id")
        thumb = record.get(THUMB_FIELD)
        creator = record.get("creator")
        username = creator.get("username") if isinstance(creator, dict) else None
        out.append(
            MlyImage(
                id=image_id,
                lon=where[0],
                lat=where[1],
                captured_ms=_epoch_ms(record.get("captured_at")),
                compass=_compass(record.get("compass_angle")),
                sequence=str(sequence) if sequence not in (None, "") else "",
                thumb=thumb if isinstance(thumb, str) and thumb else None,
                creator=username.strip() if isinstance(username, str) else "",
            )
        )
    return out


def distances(lon: float, lat: float, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
    """Great-circle metres from (lon, lat) to each of (lons, lats) on a sphere."""
    p1, p2 = math.radians(lat), np.radians(lats)
    dphi = p2 - p1
    dlmb = np.radians(lons - lon)
    a = np.sin(dphi / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
