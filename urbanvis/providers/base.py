"""The one small interface every street-view provider implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

CAPTURE_COLUMNS = [
    "capture_id",
    "point_id",
    "provider",
    "pano_id",
    "heading",
    "pitch",
    "fov",
    "captured_at",
    "image_path",
    "sha256",
    "width",
    "height",
    "status",
    "error",
]
"""The ``captures`` layer's columns (design section 3), geometry aside. Never rename these."""

STATUSES = ("ok", "missing", "failed")


@dataclass
class CaptureResult:
    """One capture as a provider returns it: the row (without image_path/sha256) and bytes.

    ``row`` holds at least ``capture_id, point_id, pano_id, heading, pitch, fov,
    captured_at, width, height, status, error, lon, lat``. ``image`` is the encoded file
    (JPEG or PNG) for ``status == "ok"``, else None. ``suffix`` is the file extension.
    """

    row: dict[str, Any]
    image: bytes | None = None
    suffix: str = ".jpg"
    extra: dict[str, Any] = field(default_factory=dict)
    image_key: str | None = None
    """Names the image when several captures can share it (one panorama seen from one
    heading by neighbouring points): the engine stores it once under this name, and an ok
    result whose key is already stored may come without ``image``."""


class Provider(Protocol):
    """A source of street-level images for sampled points.

    ``name`` goes into the ``provider`` column and the images/ subfolder.
    ``capture_points`` receives a batch of ``points`` rows (``point_id``, ``bearing``,
    ``lon``, ``lat``) and returns every capture for them, including missing and failed ones,
    so that a point is recorded as done once its batch is committed.
    """

    name: str

    def parameters(self) -> dict[str, Any]:
        """The settings that shape the captures, for provenance (never secrets)."""
        ...

    def capture_points(self, points: pd.DataFrame) -> Sequence[CaptureResult]: ...
