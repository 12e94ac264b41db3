"""The ``gsv-historical`` provider: every dated Street View panorama near each point.

For each point, one lookup through the ``streetlevel`` package (an optional extra:
``pip install 'urbanvis[historical]'``) finds the panorama nearest the point within
``radius`` metres together with the older panoramas Google keeps for that spot. Those dated
within ``since``/``until`` (a year such as ``2010`` or a month ``YYYY-MM``, both ends
included) are kept, and each kept panorama is fetched at every heading through the
official Street View Static API by ``pano=<id>``, exactly as the ``gsv`` provider fetches
its images (the same key, signing, checks and image sharing: :mod:`.gsv`). Capture ids are
``gsvh-<point_id>-<pano_id>-h<offset>``; ``captured_at`` is the panorama's ``YYYY-MM``.

The lookups go through the same engine as every other request (:mod:`._web`): concurrency
slots, rate limit, retries, request budget and ``--endpoint`` (which replaces the host of
both the lookup and the image requests). The lookups carry no key. ``metadata_only`` makes
the lookups alone, with no image request and no key needed.

.. warning::
   The lookup uses endpoints Google does not document (the ones its own web map uses),
   reached through ``streetlevel``. They may change or stop working without notice, and
   using them may breach the Google Maps Platform terms of service. Whoever runs this
   provider bears that risk. Google's terms also limit caching of its content: urbanvis
   keeps pano ids, dates and locations in the ``captures`` layer, and the images under
   ``images/gsv-historical/`` are yours to keep or delete.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from .._dates import bounds
from .._errors import MissingDependencyError, first_line
from ._cost import PRICE_PER_1000
from ._distance import check_max_distance, limit_m, located, nowhere, too_far
from ._registry import pick
from ._web import WebProvider
from ._webhttp import BudgetExhausted, FatalError, Http, Response, TransientError, WebSettings
from .base import CaptureResult
from .gsv import GsvConfig, GsvProvider

INSTALL = "gsv-historical needs the streetlevel package: pip install 'urbanvis[historical]'"


MONTHS_ONLY = "Street View dates panoramas by month"


@dataclass(frozen=True)
class HistoricalConfig:
    """What the images look like and which dates to keep (stored in study.toml).

    Parameters
    ----------
    headings, absolute_headings, size, fov, pitch, radius
        As for the ``gsv`` provider (:class:`urbanvis.providers.gsv.GsvConfig`).
    since, until
        Keep panoramas dated from ``since`` to ``until``, both included: a year (``2010``)
        or a month (``2010-06``); None: no bound. Undated panoramas are kept only when
        neither bound is given.
    max_distance
        As for ``gsv``: a panorama farther from the point is left out (``missing`` when
        none is left, with the distance in the reason).
    """

    headings: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    absolute_headings: bool = False
    size: int = 640
    fov: float = 90.0
    pitch: float = 0.0
    radius: float = 50.0
    since: str | None = None
    until: str | None = None
    max_distance: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_distance", check_max_distance(self.max_distance))
        self.image_config()  # the gsv provider's checks of headings, size, fov, pitch, radius
        since, until = bounds(self.since, self.until, finest="month", note=MONTHS_ONLY)
        object.__setattr__(self, "since", since.text if since else None)
        object.__setattr__(self, "until", until.text if until else None)

    def image_config(self) -> GsvConfig:
        """The same views as a :class:`GsvConfig`, for the Static API requests."""
        return GsvConfig(
            headings=tuple(float(h) for h in self.headings),
            absolute_headings=bool(self.absolute_headings),
            size=int(self.size),
            fov=float(self.fov),
            pitch=float(self.pitch),
            radius=float(self.radius),
        )

    @functools.cached_property
    def _bounds(self) -> tuple[tuple[int, int], tuple[int, int]]:
        since, until = bounds(self.since, self.until, finest="month")
        first = (since.start.year, since.start.month) if since else (0, 0)
        last = (until.last.year, until.last.month) if until else (9999, 12)
        return first, last

    def keeps(self, date: str) -> bool:
        """Whether a panorama dated ``date`` (``YYYY-MM``, or "" when unknown) is kept."""
        if self.since is None and self.until is None:
            return True
        if not date:
            return False
        since, until = self._bounds
        return since <= (int(date[:4]), int(date[5:7])) <= until

    def span(self) -> str:
        return f"{self.since or 'any date'}..{self.until or 'any date'}"


def create(**options: Any) -> HistoricalProvider:
    """The gsv-historical provider from its registry options (:mod:`._builtin`)."""
    names = (
        "headings", "absolute_headings", "size", "fov", "pitch", "radius", "since", "until",
        "max_distance",
    )  # fmt: skip
    return HistoricalProvider(
        HistoricalConfig(**pick(options, names)),
        WebSettings.from_options(options),
        key_file=options.get("key_file"),
        secret_file=options.get("secret_file"),
        metadata_only=bool(options.get("metadata_only")),
    )


@dataclass(frozen=True)
class _Pano:
    """A panorama the lookup found: id, where, and when (``YYYY-MM`` or "")."""

    id: str
    lat: float
    lon: float
    date: str
    attribution: str = ""


def _streetview() -> Any:
    """``streetlevel.streetview``, or a one-line error saying how to install it."""
    try:
        from streetlevel import streetview
    except ImportError as exc:
        if getattr(exc, "name", None) in ("streetlevel", "streetlevel.streetview"):
            raise MissingDependencyError(INSTALL) from None
        raise MissingDependencyError(
            f"{INSTALL} (streetlevel is installed but does not import: {first_line(exc)})"
        ) from None
    return streetview


class HistoricalProvider(WebProvider):
    """Every dated panorama per point, images by the Static API (module docstring)."""

    name = "gsv-historical"

    default_price_per_1000 = PRICE_PER_1000
    rough_estimate = True  # how many dated panoramas a point has is known only per lookup

    def __init__(
        self,
        config: HistoricalConfig | None = None,
        web: WebSettings | None = None,
        *,
        key: str | None = None,
        key_file: str | None = None,
        secret: str | None = None,
        secret_file: str | None = None,
        metadata_only: bool = False,
    ) -> None:
        super().__init__(web)
        self.config = config if config is not None else HistoricalConfig()
        self.streetview = _streetview()
        self.metadata_only = bool(metadata_only)
        # The image half: the gsv provider's requests, key and signing, on this engine.
        self.static: GsvProvider | None = None
        if not self.metadata_only:
            self.static = GsvProvider(
                self.config.image_config(),
                self.web,
                key=key,
                key_file=key_file,
                secret=secret,
                secret_file=secret_file,
            )

    def request_estimate(self, group: pd.DataFrame) -> int:
        # one lookup, then (typically a few) dated panoramas times the headings
        per_point = 1 if self.metadata_only else 1 + 3 * len(self.config.headings)
        return len(group) * per_point

    def paid_estimate(self, group: pd.DataFrame) -> int:
        """Billed image requests: typically a few dated panoramas times the headings (the
        lookups carry no key and are not billed); ``max_cost`` is still kept exactly."""
        return 0 if self.metadata_only else len(group) * 3 * len(self.config.headings)

    def parameters(self) -> dict[str, Any]:
        params = asdict(self.config)
        params["signed"] = bool(self.static is not None and self.static.secret)
        return params

    # ------------------------------------------------------------------ the lookup
    async def _lookup(self, lat: float, lon: float) -> list[_Pano]:
        """The panorama nearest (lat, lon) and its historical ones; [] when none."""
        session = EngineSession(self.client())
        try:
            found = await self.streetview.find_panorama_async(
                lat, lon, session, radius=float(self.config.radius)
            )
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FatalError(
                f"streetlevel could not read Google's panorama lookup ({type(exc).__name__}); "
                f"the undocumented endpoint may have changed: pip install -U streetlevel"
            ) from None
        if found is None:
            return []
        panos: list[_Pano] = []
        for pano in [found, *found.historical]:
            if not pano.id or any(p.id == pano.id for p in panos):
                continue
            lat_ = pano.lat if pano.lat is not None else found.lat
            lon_ = pano.lon if pano.lon is not None else found.lon
            credit = getattr(pano, "copyright_message", None) or getattr(
                found, "copyright_message", None
            )
            panos.append(
                _Pano(
                    str(pano.id),
                    float(lat_),
                    float(lon_),
                    _year_month(pano.date),
                    " ".join(str(credit).split()) if credit else "© Google",
                )
            )
        return sorted(panos, key=lambda p: (p.date, p.id))

    # -------------------------------------------------------------- one point
    async def capture_group(self, group: pd.DataFrame) -> list[CaptureResult]:
        point = group.iloc[0]
        pid = int(point["point_id"])
        cfg = self.config
        bearing = float(point["bearing"])
        if cfg.absolute_headings or not math.isfinite(bearing):
            bearing = 0.0
        headings = [((bearing + h) % 360.0, int(round(h)) % 360) for h in cfg.headings]
        base = {"point_id": pid, "pitch": float(cfg.pitch), "fov": float(cfg.fov)}
        plon, plat = float(point["lon"]), float(point["lat"])

        def row(offset: int, heading: float, pano: _Pano | None, **fields: Any) -> dict:
            out = {
                **base,
                "capture_id": f"gsvh-{pid}-{pano.id + '-' if pano else ''}h{offset:03d}",
                "heading": round(heading, 3),
                "pano_id": pano.id if pano else "",
                "captured_at": pano.date if pano else "",
                "width": 0,
                "height": 0,
                "status": "missing",
                "error": "",
                "lon": pano.lon if pano else float(point["lon"]),
                "lat": pano.lat if pano else float(point["lat"]),
                "attribution": pano.attribution if pano else "",
                **(located(plon, plat, pano.lon, pano.lat) if pano else nowhere()),
            }
            out.update(fields)
            return out

        try:
            found = await self._lookup(float(point["lat"]), float(point["lon"]))
        except TransientError as exc:
            return [
                CaptureResult(row(o, h, None, status="failed", error=f"lookup: {exc}"))
                for h, o in headings
            ]
        limit = limit_m(cfg.radius, cfg.max_distance)
        far = {p.id: too_far(located(plon, plat, p.lon, p.lat)["distance_m"], limit) for p in found}
        near = [p for p in found if not far[p.id]]
        kept = [p for p in near if cfg.keeps(p.date)]
        # a panorama of the span that lies too far is recorded missing, with its distance
        # (at the point: its own location, kilometres away maybe, is in pano_lon/pano_lat)
        too_far_rows = [
            CaptureResult(row(o, h, p, error=str(far[p.id]), lon=plon, lat=plat))
            for p in found
            if far[p.id] and cfg.keeps(p.date)
            for h, o in headings
        ]
        if not kept:
            if too_far_rows:
                return too_far_rows
            why = (
                f"no panorama within {cfg.radius:g} m"
                if not found
                else f"none of {len(found)} panoramas dated {cfg.span()}"
            )
            return [CaptureResult(row(o, h, None, error=why)) for h, o in headings]
        if self.metadata_only:
            return [
                CaptureResult(row(o, h, p, status="ok"), image_key=self._key(p.id, h))
                for p in kept
                for h, o in headings
            ] + too_far_rows
        static, cache = self.static, self.image_cache()
        assert static is not None, "without metadata_only there is an image half"
        static.http, static.images = self.client(), cache  # gsv's requests on this engine

        async def view(pano: _Pano, heading: float, offset: int) -> CaptureResult:
            key = self._key(pano.id, heading)
            try:
                fetched = await cache.get(key, lambda: static._image(pano.id, heading))
            except TransientError as exc:
                return CaptureResult(row(offset, heading, pano, status="failed", error=str(exc)))
            if fetched is None:  # stored already by an earlier capture
                return CaptureResult(row(offset, heading, pano, status="ok"), image_key=key)
            body, error, width, height = fetched
            if body is None:
                return CaptureResult(row(offset, heading, pano, error=error))
            return CaptureResult(
                row(offset, heading, pano, status="ok", width=width, height=height),
                image=body,
                image_key=key,
            )

        done = await asyncio.gather(
            *(view(p, h, o) for p in kept for h, o in headings), return_exceptions=True
        )  # shared fetches left running when a point is cancelled: ImageCache.close() ends them
        errors = [r for r in done if isinstance(r, BaseException)]
        if errors:  # after every view settled; a denied key first, then a spent budget
            errors.sort(
                key=lambda e: (not isinstance(e, FatalError), not isinstance(e, BudgetExhausted))
            )
            raise errors[0]
        return [r for r in done if isinstance(r, CaptureResult)] + too_far_rows

    def _key(self, pano: str, heading: float) -> str:
        cfg = self.config
        return f"{pano}_h{heading:.1f}_p{cfg.pitch:g}_f{cfg.fov:g}_s{cfg.size}"


def _year_month(date: Any) -> str:
    """``YYYY-MM`` of a streetlevel date (CaptureDate or datetime), "" when unknown."""
    year, month = getattr(date, "year", None), getattr(date, "month", None)
    if not year or not month:
        return ""
    return f"{int(year):04d}-{int(month):02d}"


# ------------------------------------------------ streetlevel's requests, on our engine
class EngineSession:
    """Just enough of an ``aiohttp.ClientSession`` for streetlevel's async lookups.

    streetlevel calls ``session.post(url, data=..., headers=...)`` (and ``session.get(url,
    headers=...)``) as async context managers and reads ``status``, ``text()`` or
    ``json()``. Here every such request goes through :meth:`Http.request`: concurrency
    slots, rate limit, retries, request budget, and the ``--endpoint`` override of the
    official host (``maps.googleapis.com`` or ``www.google.com`` alike). A refused request
    stops the harvest (:class:`FatalError`); one that keeps failing fails its point.
    """

    def __init__(self, http: Http) -> None:
        self.http = http

    def post(self, url: str, *, data: str | bytes | None = None,
             headers: dict[str, str] | None = None) -> _Call:  # fmt: skip
        return _Call(self.http, "POST", str(url), data, headers)

    def get(self, url: str, *, headers: dict[str, str] | None = None) -> _Call:
        return _Call(self.http, "GET", str(url), None, headers)


class _Call:
    """One request, sent when entered (``async with session.post(...) as response``)."""

    def __init__(self, http: Http, method: str, url: str, data, headers) -> None:
        self.http, self.method, self.url, self.data = http, method, url, data
        # aiohttp derives Host from the URL, which an --endpoint replaces
        self.headers = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}

    async def __aenter__(self) -> _Reply:
        response = await self.http.request(
            self.method, self.url, data=self.data, headers=self.headers, retry_if=_unreadable
        )
        if response.status in (401, 403, 400):
            raise FatalError(
                f"Google refused the panorama lookup (HTTP {response.status}); the "
                f"undocumented endpoint streetlevel uses may have changed or be blocking this "
                f"client: lower `rate`, try later, or pip install -U streetlevel"
            )
        if not 200 <= response.status < 300:
            raise TransientError(f"panorama lookup answered HTTP {response.status}")
        return _Reply(response)

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Reply:
    """The parts of ``aiohttp.ClientResponse`` streetlevel reads, over a finished body."""

    def __init__(self, response: Response) -> None:
        self._response = response
        self.status = response.status
        self.headers = {"Content-Type": response.content_type}
        self.content_type = response.content_type.split(";")[0].strip()
        self.url = response.url

    async def read(self) -> bytes:
        return self._response.body

    async def text(self, encoding: str | None = None, errors: str = "strict") -> str:
        return self._response.body.decode(encoding or "utf-8", errors)

    async def json(self, *, loads: Any = json.loads, **_: Any) -> Any:
        return loads(self._response.body.decode("utf-8"))

    def raise_for_status(self) -> None:
        return None  # non-2xx answers never get this far (_Call)


def _unreadable(response: Response) -> str | None:
    """Retry a lookup whose 200 answer is not JSON (a body cut short by a proxy)."""
    if response.status != 200:
        return None
    try:
        json.loads(response.body)
    except ValueError:
        return "unreadable panorama lookup answer"
    return None
