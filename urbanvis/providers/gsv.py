"""The ``gsv`` provider: Google's official Street View Static API, metadata then image.

For each point, one metadata request (free) finds the newest panorama within ``radius``
metres; then one image request per heading asks for that panorama by id (so every heading
shows the same capture). Headings are offsets from the road bearing unless
``absolute_headings``. Neighbouring points often resolve to one panorama: each
(panorama, heading, pitch, fov, size) image is fetched and stored once and shared.

The key comes from ``GOOGLE_MAPS_API_KEY`` or a key file; with a URL-signing secret
(``GOOGLE_MAPS_URL_SECRET`` or ``secret_file``) every request is signed. Google's terms
limit caching of its content: urbanvis keeps pano ids, dates and locations in the
``captures`` layer, and the images are yours to keep or delete (``images/gsv/``); see the
README's "Terms and credit". Each row keeps the metadata's ``copyright`` text in
``attribution``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from .._errors import InputError, one_line
from .._secrets import GSV_KEY_ENV as KEY_ENV
from .._secrets import GSV_SECRET_ENV as SECRET_ENV
from ._cost import PRICE_PER_1000
from ._distance import check_max_distance, limit_m, located, nowhere, too_far
from ._imagecheck import ImageBody
from ._registry import pick
from ._web import WebProvider
from ._webhttp import FatalError, Response, TransientError, WebSettings, read_secret
from .base import CaptureResult

API = "https://maps.googleapis.com/maps/api/streetview"
METADATA = API + "/metadata"
RETRY_METADATA = ("OVER_QUERY_LIMIT", "UNKNOWN_ERROR")
MISSING_METADATA = ("ZERO_RESULTS", "NOT_FOUND")


@dataclass(frozen=True)
class GsvConfig:
    """What the images look like (stored in study.toml; the key never is).

    Parameters
    ----------
    headings
        Degrees: offsets from the road bearing, or compass degrees with ``absolute_headings``.
    size
        Image side in pixels (the API's maximum is 640).
    fov, pitch
        Horizontal field of view (10..120 degrees) and camera pitch (-90..90).
    radius
        Metres around the point to look for a panorama.
    source
        ``outdoor`` (official outdoor imagery only) or ``default``.
    max_distance
        Metres: a panorama farther than this from its point is recorded ``missing``, never
        ``ok``. None: ``radius`` plus a few metres (:data:`._distance.TOLERANCE_M`).
    """

    headings: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    absolute_headings: bool = False
    size: int = 640
    fov: float = 90.0
    pitch: float = 0.0
    radius: float = 50.0
    source: str = "outdoor"
    max_distance: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_distance", check_max_distance(self.max_distance))
        if not self.headings or not all(math.isfinite(h) for h in self.headings):
            raise InputError("give at least one finite heading in `headings`, e.g. 0,90,180,270")
        if not 1 <= int(self.size) <= 640:
            raise InputError(f"`size` must be 1..640 pixels for Street View, got {self.size}")
        if not 10 <= float(self.fov) <= 120:
            raise InputError(f"`fov` must be 10..120 degrees, got {self.fov}")
        if not -90 <= float(self.pitch) <= 90:
            raise InputError(f"`pitch` must be -90..90 degrees, got {self.pitch}")
        if not float(self.radius) > 0:
            raise InputError(f"`radius` must be positive metres, got {self.radius}")
        if self.source not in ("outdoor", "default"):
            raise InputError(f"`source` must be outdoor or default, got {self.source!r}")


def create(**options: Any) -> GsvProvider:
    """The gsv provider from its registry options (:mod:`urbanvis.providers._builtin`)."""
    names = (
        "headings", "absolute_headings", "size", "fov", "pitch", "radius", "source",
        "max_distance",
    )  # fmt: skip
    return GsvProvider(
        GsvConfig(**pick(options, names)),
        WebSettings.from_options(options),
        key_file=options.get("key_file"),
        secret_file=options.get("secret_file"),
        metadata_only=bool(options.get("metadata_only")),
    )


def sign_url(url: str, secret: str) -> str:
    """Google's URL signature: HMAC-SHA1 of path + query with the URL-safe base64 secret."""
    parts = urlsplit(url)
    try:
        raw = base64.urlsafe_b64decode(secret.encode() + b"=" * (-len(secret) % 4))
    except (ValueError, TypeError):
        raise InputError(
            f"the URL signing secret is not URL-safe base64; copy it again from the Google "
            f"Cloud console into {SECRET_ENV}"
        ) from None
    digest = hmac.new(raw, f"{parts.path}?{parts.query}".encode(), hashlib.sha1).digest()
    return f"{url}&signature={base64.urlsafe_b64encode(digest).decode()}"


class GsvProvider(WebProvider):
    """Street View Static API captures (module docstring)."""

    name = "gsv"
    default_price_per_1000 = PRICE_PER_1000

    def __init__(
        self,
        config: GsvConfig | None = None,
        web: WebSettings | None = None,
        *,
        key: str | None = None,
        key_file: str | None = None,
        secret: str | None = None,
        secret_file: str | None = None,
        metadata_only: bool = False,
    ) -> None:
        super().__init__(web)
        self.config = config if config is not None else GsvConfig()
        self.key = key if key else read_secret(KEY_ENV, key_file, what="Google Maps API key")
        if secret_file:
            secret = read_secret(
                SECRET_ENV, secret_file, what="URL signing secret", param="secret_file"
            )
        elif secret is None:
            import os

            secret = os.environ.get(SECRET_ENV) or None
        if secret:
            from .. import _secrets

            _secrets.register(secret)
            sign_url("https://x/y?z", secret)  # a malformed secret fails now, not per request
        self.secret = secret
        from .. import _secrets

        _secrets.register(self.key)
        self.metadata_only = bool(metadata_only)

    def request_estimate(self, group: pd.DataFrame) -> int:
        per_point = 1 if self.metadata_only else 1 + len(self.config.headings)
        return len(group) * per_point

    def paid_estimate(self, group: pd.DataFrame) -> int:
        """One billed image request per heading (the metadata request is free)."""
        return 0 if self.metadata_only else len(group) * len(self.config.headings)

    def parameters(self) -> dict[str, Any]:
        params = asdict(self.config)
        params["signed"] = bool(self.secret)
        return params

    # ------------------------------------------------------------------ requests
    def _sign(self, url: str) -> str:
        return sign_url(url, self.secret) if self.secret else url

    async def _metadata(self, lat: float, lon: float) -> dict[str, Any]:
        cfg = self.config
        params = {"location": f"{lat:.7f},{lon:.7f}", "radius": f"{cfg.radius:g}"}
        if cfg.source != "default":
            params["source"] = cfg.source
        params["key"] = self.key
        response = await self.client().get(
            METADATA, params, sign=self._sign, retry_if=_metadata_retry
        )
        if response.status in (401, 403):
            raise FatalError(_denied(f"HTTP {response.status}"))
        if response.status != 200:
            raise TransientError(f"metadata answered HTTP {response.status}")
        meta = response.json()
        status = str(meta.get("status", ""))
        if status == "REQUEST_DENIED":
            raise FatalError(_denied(meta.get("error_message", "")))
        if status == "INVALID_REQUEST":
            raise FatalError(
                f"Street View says INVALID_REQUEST ({meta.get('error_message', 'no detail')}); "
                f"check `radius`, `source` and the points' coordinates"
            )
        return meta

    async def _image(self, pano: str, heading: float) -> tuple[bytes | None, str, int, int]:
        """(bytes or None, error, width, height) of one view; None + reason when missing."""
        cfg = self.config
        params = {
            "size": f"{cfg.size}x{cfg.size}",
            "pano": pano,
            "heading": f"{heading:.2f}",
            "fov": f"{cfg.fov:g}",
            "pitch": f"{cfg.pitch:g}",
            "return_error_code": "true",
            "key": self.key,
        }
        body = ImageBody(size=(cfg.size, cfg.size))
        response = await self.client().get(API, params, sign=self._sign, retry_if=body, paid=True)
        if response.status == 404:
            return None, "no imagery (HTTP 404)", 0, 0
        if response.status in (401, 403):
            raise FatalError(_denied(f"image request answered HTTP {response.status}"))
        if response.status == 400:
            raise FatalError(
                "Street View says INVALID_REQUEST for an image; check `size`, `fov`, `pitch`"
            )
        if response.status != 200:
            raise TransientError(f"image answered HTTP {response.status}")
        width, height, grey = body.result()
        if grey:
            return None, "no imagery (grey placeholder)", 0, 0
        return response.body, "", width, height

    # -------------------------------------------------------------- one point
    async def capture_group(self, group: pd.DataFrame) -> list[CaptureResult]:
        point = group.iloc[0]
        pid = int(point["point_id"])
        cfg = self.config
        bearing = float(point["bearing"])
        if cfg.absolute_headings or not math.isfinite(bearing):
            bearing = 0.0
        headings = [((bearing + h) % 360.0, h) for h in cfg.headings]
        base = {"point_id": pid, "pitch": float(cfg.pitch), "fov": float(cfg.fov)}

        def row(offset: float, heading: float, **fields: Any) -> dict[str, Any]:
            out = {
                **base,
                "capture_id": f"gsv-{pid}-h{int(round(offset)) % 360:03d}",
                "heading": round(heading, 3),
                "pano_id": "",
                "captured_at": "",
                "width": 0,
                "height": 0,
                "status": "missing",
                "error": "",
                "lon": float(point["lon"]),
                "lat": float(point["lat"]),
                "attribution": "",
                **nowhere(),
            }
            out.update(fields)
            return out

        try:
            meta = await self._metadata(float(point["lat"]), float(point["lon"]))
        except TransientError as exc:
            return [
                CaptureResult(row(o, h, status="failed", error=f"metadata: {exc}"))
                for h, o in headings
            ]
        status = str(meta.get("status", ""))
        if status != "OK" or not meta.get("pano_id"):
            return [CaptureResult(row(o, h, error=status or "no status")) for h, o in headings]
        pano = str(meta["pano_id"])
        found: dict[str, Any] = {
            "pano_id": pano,
            "captured_at": str(meta.get("date", "")),
            "attribution": one_line(str(meta.get("copyright") or "")),  # "© Google"
        }
        where = _location(meta)
        if where is not None:  # the row's geometry is the panorama's, unless it is too far
            found.update(located(float(point["lon"]), float(point["lat"]), *where))
            far = too_far(found["distance_m"], limit_m(cfg.radius, cfg.max_distance))
            if far:
                return [CaptureResult(row(o, h, error=far, **found)) for h, o in headings]
            found.update(lon=where[0], lat=where[1])
        if self.metadata_only:
            return [
                CaptureResult(row(o, h, status="ok", **found), image_key=self._key(pano, h))
                for h, o in headings
            ]
        results = []
        for heading, offset in headings:
            key = self._key(pano, heading)
            try:
                fetched = await self.image_cache().get(
                    key, functools.partial(self._image, pano, heading)
                )
            except TransientError as exc:
                results.append(CaptureResult(row(offset, heading, status="failed",
                                                 error=str(exc), **found)))  # fmt: skip
                continue
            if fetched is None:  # stored already by an earlier capture
                results.append(CaptureResult(row(offset, heading, status="ok", **found),
                                             image_key=key))  # fmt: skip
                continue
            body, error, width, height = fetched
            if body is None:
                results.append(CaptureResult(row(offset, heading, error=error, **found)))
                continue
            results.append(
                CaptureResult(
                    row(offset, heading, status="ok", width=width, height=height, **found),
                    image=body,
                    image_key=key,
                )
            )
        return results

    def _key(self, pano: str, heading: float) -> str:
        cfg = self.config
        return f"{pano}_h{heading:.1f}_p{cfg.pitch:g}_f{cfg.fov:g}_s{cfg.size}"


def _location(meta: dict[str, Any]) -> tuple[float, float] | None:
    """(lon, lat) of the panorama from a metadata answer, None when it gives none."""
    where = meta.get("location")
    if not isinstance(where, dict):
        return None
    try:
        lon, lat = float(where["lng"]), float(where["lat"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90):
        return None
    return lon, lat


def _metadata_retry(response: Response) -> str | None:
    if response.status != 200:
        return None
    try:
        status = response.json().get("status")
    except (TransientError, AttributeError):
        return "unreadable metadata"
    return status if status in RETRY_METADATA else None


def _denied(detail: str) -> str:
    detail = f" ({detail})" if detail else ""
    return (
        f"Street View denied the request{detail}; check the key in {KEY_ENV} (or `key_file`), "
        f"that the Street View Static API is enabled for it, and the signing secret in "
        f"{SECRET_ENV} if you sign"
    )
