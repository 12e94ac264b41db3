"""The built-in providers and their options, registered lazily (:mod:`._registry`).

Nothing here imports a provider module: each is imported when :func:`create_provider`
makes that provider. The help texts are the command line's (``urbanvis harvest --help``),
with each provider's own default in brackets.
"""

from __future__ import annotations

from ._cost import PRICE_PER_1000, PRICE_PUBLISHED
from ._registry import OptionSpec, register_option, register_provider

SIMULATOR, FOLDER, GSV, HISTORICAL, MAPILLARY = (
    "simulator",
    "folder",
    "gsv",
    "gsv-historical",
    "mapillary",
)
WEB = (GSV, HISTORICAL, MAPILLARY)
"""The providers that request a web service (and share the web options)."""
_WEB = "gsv, gsv-historical, mapillary"

OPTIONS = (
    OptionSpec(
        "headings",
        tuple,
        default=(0.0, 90.0, 180.0, 270.0),
        help="Viewing directions in degrees, as offsets from the road bearing "
        "(see --absolute-headings).",
        providers=(SIMULATOR, GSV, HISTORICAL, MAPILLARY),
        show_default=True,
    ),
    OptionSpec(
        "absolute_headings",
        bool,
        default=False,
        help="Treat --headings as compass degrees, not offsets from the road.",
        providers=(SIMULATOR, GSV, HISTORICAL, MAPILLARY),
    ),
    OptionSpec(
        "size",
        int,
        help="Image side in pixels [simulator 224, gsv 640 (its maximum)].",
        providers=(SIMULATOR, GSV, HISTORICAL),
        range=(1, 2048),
        provider_defaults=((SIMULATOR, 224), (GSV, 640), (HISTORICAL, 640)),
    ),
    OptionSpec(
        "fov",
        float,
        help="gsv: field of view, 10-120 [90].",
        providers=(GSV, HISTORICAL),
        range=(10, 120),
        provider_defaults=((GSV, 90.0), (HISTORICAL, 90.0)),
    ),
    OptionSpec(
        "pitch",
        float,
        help="gsv: camera pitch, -90..90 [0].",
        providers=(GSV, HISTORICAL),
        range=(-90, 90),
        provider_defaults=((GSV, 0.0), (HISTORICAL, 0.0)),
    ),
    OptionSpec(
        "radius",
        float,
        help="Metres around a point to look for imagery [gsv 50, mapillary 25, folder 25].",
        providers=(GSV, HISTORICAL, MAPILLARY, FOLDER),
        range=(1, None),
        provider_defaults=((GSV, 50.0), (HISTORICAL, 50.0), (MAPILLARY, 25.0), (FOLDER, 25.0)),
    ),
    OptionSpec(
        "max_distance",
        float,
        help=f"{_WEB}: metres from its point beyond which an image is recorded missing, "
        "never ok [gsv: --radius + 5 m, allowing for rounded coordinates; mapillary: --radius].",
        providers=WEB,
        range=(0.01, None),
    ),
    OptionSpec(
        "source",
        str,
        default="outdoor",
        help="gsv: official outdoor panoramas only (source=outdoor).",
        providers=(GSV,),
        choices=("outdoor", "default"),
        show_default=True,
    ),
    OptionSpec(
        "since",
        str,
        help="First capture date kept: a year or YYYY-MM [simulator: 2015].",
        providers=(SIMULATOR, FOLDER, HISTORICAL, MAPILLARY),
        provider_defaults=((SIMULATOR, "2015"),),
    ),
    OptionSpec(
        "until",
        str,
        help="Last capture date kept: a year or YYYY-MM [simulator: 2024].",
        providers=(SIMULATOR, FOLDER, HISTORICAL, MAPILLARY),
        provider_defaults=((SIMULATOR, "2024"),),
    ),
    OptionSpec(
        "images",
        str,
        help="folder: a folder of geotagged images, or a CSV/GeoPackage manifest "
        "(path, lon, lat[, heading, date]).",
        providers=(FOLDER,),
    ),
    OptionSpec(
        "key_file",
        str,
        help="gsv/gsv-historical: file holding the API key (else GOOGLE_MAPS_API_KEY); "
        "mapillary: the token (else MAPILLARY_TOKEN).",
        providers=WEB,
    ),
    OptionSpec(
        "secret_file",
        str,
        help="gsv: file holding the URL-signing secret (else GOOGLE_MAPS_URL_SECRET, if set).",
        providers=(GSV, HISTORICAL),
    ),
    OptionSpec(
        "concurrency",
        int,
        help=f"{_WEB}: requests in flight [16].",
        providers=WEB,
        range=(1, None),
        provider_defaults=tuple((p, 16) for p in WEB),
    ),
    OptionSpec(
        "rate",
        float,
        help=f"{_WEB}: requests per second at most, 0 for no limit [50].",
        providers=WEB,
        range=(0, None),
        provider_defaults=tuple((p, 50.0) for p in WEB),
    ),
    OptionSpec(
        "retries",
        int,
        help=f"{_WEB}: retries of a failed request, with backoff [5].",
        providers=WEB,
        range=(0, None),
        provider_defaults=tuple((p, 5) for p in WEB),
    ),
    OptionSpec(
        "timeout",
        float,
        help=f"{_WEB}: seconds per request [30].",
        providers=WEB,
        range=(0.1, None),
        provider_defaults=tuple((p, 30.0) for p in WEB),
    ),
    OptionSpec(
        "max_requests",
        int,
        help=f"{_WEB}: stop after this many requests (retries count); rerun to continue.",
        providers=WEB,
        range=(1, None),
    ),
    OptionSpec(
        "price_per_1000",
        float,
        help="gsv, gsv-historical: USD per 1,000 image requests, for the cost estimate "
        f"printed first and --max-cost [{PRICE_PER_1000:.2f}: the Street View Static API "
        f"list price as of {PRICE_PUBLISHED}, written down offline and never checked against "
        "the live page; check the current price list]. Metadata requests are assumed free.",
        providers=(GSV, HISTORICAL),
        range=(0, None),
    ),
    OptionSpec(
        "max_cost",
        float,
        help="gsv, gsv-historical: stop before the image requests would cost more than "
        "this many USD at --price-per-1000 (retries count); rerun to continue.",
        providers=(GSV, HISTORICAL),
        range=(0, None),
    ),
    OptionSpec(
        "metadata_only",
        bool,
        default=False,
        help=f"{_WEB}: count coverage and cost without downloading; writes coverage_PROVIDER.",
        providers=WEB,
    ),
    OptionSpec(
        "endpoint",
        str,
        help=f"{_WEB}: scheme://host of a mirror, proxy or test server (paths stay official).",
        providers=WEB,
    ),
    OptionSpec(
        "captures_per_point",
        int,
        help="simulator, mapillary: capture dates per point and heading (2+ gives temporal "
        "pairs) [simulator 3, mapillary 1].",
        providers=(SIMULATOR, MAPILLARY),
        range=(1, None),
        provider_defaults=((SIMULATOR, 3), (MAPILLARY, 1)),
    ),
    OptionSpec(
        "seed",
        int,
        default=0,
        help="simulator: the synthetic city (another seed, another city).",
        providers=(SIMULATOR,),
        range=(0, None),
        show_default=True,
    ),
    OptionSpec(
        "workers",
        int,
        default=1,
        help="simulator: processes rendering in parallel.",
        providers=(SIMULATOR,),
        range=(1, None),
        show_default=True,
    ),
)
"""Every built-in option, in the order ``urbanvis harvest --help`` lists them."""


def register_builtins() -> None:
    """Register the built-in providers and options (done on ``import urbanvis.providers``)."""
    for spec in OPTIONS:
        register_option(spec)
    register_provider(
        SIMULATOR, "urbanvis.providers.simulator:create", summary="offline synthetic city"
    )
    register_provider(
        FOLDER, "urbanvis.providers.folder:create", summary="your own geotagged images"
    )
    register_provider(GSV, "urbanvis.providers.gsv:create", summary="Street View Static API")
    register_provider(
        HISTORICAL,
        "urbanvis.providers.historical:create",
        summary="every dated panorama, via streetlevel",
    )
    register_provider(MAPILLARY, "urbanvis.providers.mapillary:create", summary="Graph API v4")
