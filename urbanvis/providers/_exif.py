"""Reading a folder of geotagged images: the image files, and the GPS position, camera
heading and capture time in each one's EXIF (for the ``folder`` provider, :mod:`.folder`).

Camera headings are taken as given: EXIF ``GPSImgDirection`` may be relative to magnetic
north (``GPSImgDirectionRef = M``), and it is not corrected. Capture times are the camera's
local time.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
"""Files a source folder is searched for (case-insensitive)."""

_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769
_LAT_REF, _LAT, _LON_REF, _LON, _DIRECTION = 1, 2, 3, 4, 17
_DATETIME_ORIGINAL, _DATETIME = 0x9003, 0x0132
_ISO = re.compile(
    r"(\d{4})(?:[-:](\d{1,2})(?:[-:](\d{1,2})"  # date
    r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?)?)?"  # time
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?"  # zone, dropped
)


def image_files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            Path(root, f)
            for f in files
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
        ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def exif_tags(path: Path) -> dict[str, Any] | None:
    """lon, lat, heading and captured_at from an image's EXIF; None without a GPS fix."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow warns about malformed EXIF; it is just absent
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                exif = im.getexif()
                gps = dict(exif.get_ifd(_GPS_IFD))
                stamp = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    lat = _signed(_degrees(gps.get(_LAT)), gps.get(_LAT_REF), "S")
    lon = _signed(_degrees(gps.get(_LON)), gps.get(_LON_REF), "W")
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        return None
    if lat == 0 and lon == 0:  # what cameras write without a fix
        return None
    heading = _degrees(gps.get(_DIRECTION))
    return {
        "lon": lon,
        "lat": lat,
        "heading": heading % 360.0 if math.isfinite(heading) else float("nan"),
        "captured_at": iso_time(_text(stamp)) or "",
    }


def _degrees(value: Any) -> float:
    """Degrees from an EXIF rational, a number, or (degrees, minutes, seconds)."""
    if value is None:
        return float("nan")
    try:
        if isinstance(value, tuple | list):
            parts = [float(v) for v in value][:3]
            return sum(p / 60.0**k for k, p in enumerate(parts)) if parts else float("nan")
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return float("nan")


def _signed(value: float, ref: Any, negative: str) -> float:
    return -abs(value) if _text(ref).upper() == negative else value


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    return str(value).strip("\x00 ").strip() if value is not None else ""


def iso_time(text: str) -> str | None:
    """An ISO date-time at the precision given ("2021", "2021-06-03T10:15"...), or None.

    Also reads EXIF's "2021:06:03 10:15:00". "" for empty text; None when not a date.
    """
    text = text.strip()
    if not text:
        return ""
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    parts = [int(p) for p in match.groups() if p is not None]
    year, month, day, hour, minute, second = parts + [1, 1, 0, 0, 0][len(parts) - 1 :]
    try:
        datetime(year, month, day, hour, minute, second)  # a real calendar date and time
    except ValueError:
        return None
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    return text[: {1: 4, 2: 7, 3: 10, 5: 16, 6: 19}[len(parts)]]
