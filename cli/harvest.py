"""``urbanvis harvest``: street-level images for the study's points into the captures layer."""

from __future__ import annotations

import click

from ._options import ProgressBar, echo_result, study_option

_WEB = "gsv, gsv-historical, mapillary"


@click.command()
@study_option
@click.option(
    "--provider",
    default="simulator",
    show_default=True,
    help="Where images come from: simulator (offline synthetic city), folder (your own "
    "geotagged images), gsv (Street View Static API), gsv-historical (every dated "
    "panorama, via streetlevel), mapillary (Graph API v4).",
)
@click.option(
    "--headings",
    default="0,90,180,270",
    show_default=True,
    help="Viewing directions in degrees, as offsets from the road bearing "
    "(see --absolute-headings).",
)
@click.option(
    "--absolute-headings",
    is_flag=True,
    help="Treat --headings as compass degrees, not offsets from the road.",
)
@click.option("--size", type=int, default=None,
              help="Image side in pixels [simulator 224, gsv 640 (its maximum)].")  # fmt: skip
@click.option("--fov", type=float, default=None, help="gsv: field of view, 10-120 [90].")
@click.option("--pitch", type=float, default=None, help="gsv: camera pitch, -90..90 [0].")
@click.option(
    "--radius",
    type=float,
    default=None,
    help="Metres around a point to look for imagery [gsv 50, mapillary 25, folder 25].",
)
@click.option(
    "--outdoor-only/--any-imagery",
    default=True,
    show_default=True,
    help="gsv: official outdoor panoramas only (source=outdoor).",
)
@click.option("--since", default=None,
              help="First capture date kept: a year or YYYY-MM [simulator: 2015].")  # fmt: skip
@click.option("--until", default=None,
              help="Last capture date kept: a year or YYYY-MM [simulator: 2024].")  # fmt: skip
@click.option(
    "--city",
    metavar="NAME",
    help="No points yet? Sample this place's streets first (as urbanvis sample).",
)
@click.option("--area", metavar="FILE", help="No points yet? Sample inside this polygon file.")
@click.option("--bbox", metavar="W,S,E,N", help="No points yet? Sample inside this box.")
@click.option("--osm", metavar="FILE",
              help="No points yet? Sample the roads of this local OSM file.")  # fmt: skip
@click.option(
    "--images",
    default=None,
    help="folder: a folder of geotagged images, or a CSV/GeoPackage manifest "
    "(path, lon, lat[, heading, date]).",
)
@click.option(
    "--key-file",
    default=None,
    help="gsv/gsv-historical: file holding the API key (else GOOGLE_MAPS_API_KEY); "
    "mapillary: the token (else MAPILLARY_TOKEN).",
)
@click.option(
    "--secret-file",
    default=None,
    help="gsv: file holding the URL-signing secret (else GOOGLE_MAPS_URL_SECRET, if set).",
)
@click.option("--concurrency", type=int, default=None,
              help=f"{_WEB}: requests in flight [16].")  # fmt: skip
@click.option("--rate", type=float, default=None,
              help=f"{_WEB}: requests per second at most, 0 for no limit [50].")  # fmt: skip
@click.option("--retries", type=int, default=None,
              help=f"{_WEB}: retries of a failed request, with backoff [5].")  # fmt: skip
@click.option("--timeout", type=float, default=None,
              help=f"{_WEB}: seconds per request [30].")  # fmt: skip
@click.option(
    "--max-requests",
    type=int,
    default=None,
    help=f"{_WEB}: stop after this many requests (retries count); rerun to continue.",
)
@click.option(
    "--metadata-only",
    is_flag=True,
    help=f"{_WEB}: count coverage and cost without downloading; writes coverage_PROVIDER.",
)
@click.option(
    "--endpoint",
    default=None,
    help=f"{_WEB}: scheme://host of a mirror, proxy or test server (paths stay official).",
)
@click.option(
    "--captures-per-point",
    type=int,
    default=None,
    help="simulator, mapillary: capture dates per point and heading (2+ gives temporal "
    "pairs) [simulator 3, mapillary 1].",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="simulator: the synthetic city (another seed, another city).",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="simulator: processes rendering in parallel.",
)
@click.option(
    "--batch-size",
    type=int,
    default=64,
    show_default=True,
    help="Points per committed batch; a kill loses at most one batch.",
)
@click.option(
    "--limit", type=int, default=None, help="Harvest at most this many more points (a trial run)."
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Harvest again the points whose captures failed last time (after every retry).",
)
def harvest(study_dir, provider, headings, absolute_headings, size, fov, pitch, radius,
            outdoor_only, since, until, city, area, bbox, osm, images, key_file, secret_file,
            concurrency, rate, retries, timeout, max_requests, metadata_only, endpoint,
            captures_per_point, seed, workers, batch_size, limit, retry_failed):  # fmt: skip
    """Capture street-level images for every point of the study, resumably.

    \b
    Rows go to the study's captures layer (capture_id, point_id, provider, pano_id,
    heading, pitch, fov, captured_at, image_path, sha256, width, height, status, error)
    and images under images/PROVIDER/. Each finished batch is committed with its images,
    so Ctrl-C or kill -9 loses at most the batch in flight; rerunning continues where the
    last run stopped and fetches nothing that finished. Secrets come from the environment
    or --key-file and are never written anywhere.

    \b
    Examples:
      urbanvis harvest --study hel --provider simulator --captures-per-point 3
      urbanvis harvest --study la --city "Los Angeles, California, USA" --provider gsv
      GOOGLE_MAPS_API_KEY=... urbanvis harvest --study la --provider gsv --metadata-only
      urbanvis harvest --study la --provider gsv --headings 0,90,180,270 --rate 100
      urbanvis harvest --study la --provider gsv-historical --since 2010 --until 2020
      MAPILLARY_TOKEN=... urbanvis harvest --study hel --provider mapillary --radius 20
      urbanvis harvest --study site --provider folder --images photos/
    """
    from urbanvis import stages

    label = "survey" if metadata_only else "harvest"
    with ProgressBar(f"{label} {provider}") as progress:
        result = stages.harvest(
            study_dir,
            provider=provider,
            city=city,
            area=area,
            bbox=bbox,
            osm=osm,
            metadata_only=metadata_only,
            batch_size=batch_size,
            limit=limit,
            retry_failed=retry_failed,
            progress=progress,
            seed=seed,
            captures_per_point=captures_per_point,
            since=since,
            until=until,
            headings=headings,
            absolute_headings=absolute_headings,
            size=size,
            fov=fov,
            pitch=pitch,
            radius=radius,
            source="outdoor" if outdoor_only else "default",
            workers=workers,
            images=images,
            key_file=key_file,
            secret_file=secret_file,
            concurrency=concurrency,
            rate=rate,
            retries=retries,
            timeout=timeout,
            max_requests=max_requests,
            endpoint=endpoint,
        )
    echo_result(result)
