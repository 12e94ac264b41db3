"""``urbanvis harvest``: street-level images for the study's points into the captures layer.

The provider options (``--headings``, ``--radius``, ``--rate``...) are generated from the
provider registry (:mod:`urbanvis.providers`), the same specs the QGIS plugin reads.
"""

from __future__ import annotations

import click

from urbanvis._errors import word_params

from ._options import ProgressBar, echo_result, flag_name, study_option
from ._provider_options import provider_options


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
    "--city",
    metavar="NAME",
    help="No points yet? Sample this place's streets first (as urbanvis sample).",
)
@click.option("--area", metavar="FILE", help="No points yet? Sample inside this polygon file.")
@click.option("--bbox", metavar="W,S,E,N", help="No points yet? Sample inside this box.")
@click.option("--osm", metavar="FILE",
              help="No points yet? Sample the roads of this local OSM file.")  # fmt: skip
@provider_options
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
def harvest(study_dir, provider, city, area, bbox, osm, batch_size, limit, retry_failed,
            **options):  # fmt: skip
    """Capture street-level images for every point of the study, resumably.

    \b
    Rows go to the study's captures layer (capture_id, point_id, provider, pano_id,
    heading, pitch, fov, captured_at, image_path, sha256, width, height, status, error;
    the web providers add pano_lon, pano_lat, distance_m and attribution, the credit to
    show with each image) and images under images/PROVIDER/. gsv and gsv-historical
    first print the image requests, time and estimated cost (--price-per-1000). Each
    finished batch is committed with its images, so Ctrl-C or kill -9 loses at most the
    batch in flight; rerunning continues where the last run stopped and fetches nothing
    that finished. Secrets come from the environment or --key-file and are never written
    anywhere. Read the providers' terms (README, "Terms and credit") before you harvest.

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

    label = "survey" if options.get("metadata_only") else "harvest"
    with ProgressBar(f"{label} {provider}") as progress:
        result = stages.harvest(
            study_dir,
            provider=provider,
            city=city,
            area=area,
            bbox=bbox,
            osm=osm,
            batch_size=batch_size,
            limit=limit,
            retry_failed=retry_failed,
            progress=progress,
            notice=lambda line: click.echo(word_params(line, flag_name)),
            **options,
        )
    echo_result(result)
