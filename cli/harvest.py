"""``urbanvis harvest``: street-level images for the study's points into the captures layer."""

from __future__ import annotations

import click

from ._options import ProgressBar, study_option


def _headings(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of degrees, e.g. 0,90,180,270"
        ) from None


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
    from urbanvis import _secrets
    from urbanvis import study as study_mod
    from urbanvis.harvest import harvest as run_harvest
    from urbanvis.harvest import survey
    from urbanvis.providers import provider_from_name

    _secrets.install_log_filter()
    options = dict(
        seed=seed,
        captures_per_point=captures_per_point,
        since=since,
        until=until,
        headings=_headings(headings),
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
        metadata_only=metadata_only,
    )
    source = provider_from_name(provider, **options)  # validates before touching the study
    where = dict(city=city, area=area, bbox=bbox, osm=osm)
    if any(where.values()):
        _sample_first(study_dir, where)
    elif provider != "folder" and not _has_study(study_dir):
        from urbanvis._errors import InputError

        raise InputError(
            f"{study_dir} is not a study yet; give --city, --area, --bbox or --osm to sample "
            f"its points first, or run 'urbanvis sample --study {study_dir}'"
        )
    st = study_mod.open_study(study_dir, create=provider == "folder")
    if metadata_only:
        if not getattr(source, "metadata_only", False):
            from urbanvis._errors import InputError

            raise InputError(f"--metadata-only is for {_WEB}, not {provider}")
        with ProgressBar(f"survey {provider}") as progress:
            found = survey(st, source, limit=limit, progress=progress)
        st.record_run(
            "harvest --metadata-only",
            {"provider": provider, **source.parameters()},
            points=found.surveyed,
            panoramas=found.panoramas,
            images=found.images,
        )
        click.echo(found.line())
        return
    with ProgressBar(f"harvest {provider}") as progress:
        summary = run_harvest(
            st,
            source,
            batch_size=batch_size,
            limit=limit,
            progress=progress,
            retry_failed=retry_failed,
        )
    st.record_run(
        "harvest",
        {"provider": provider, **source.parameters(), "batch_size": batch_size, "limit": limit},
        **summary.counts,
        points=summary.points_harvested,
        **summary.stats,
    )
    click.echo(summary.line())


def _sample_first(study_dir: str, where: dict) -> None:
    """Sample points (urbanvis sample's defaults) unless the study has them already."""
    import logging

    from urbanvis import sampling
    from urbanvis import study as study_mod

    log = logging.getLogger("urbanvis.harvest")
    study_mod.check_writable(study_dir)
    existing = study_mod.open_study(study_dir, create=False) if _has_study(study_dir) else None
    if existing is not None and existing.has_layer("points"):
        given = ", ".join(f"--{k}" for k, v in where.items() if v)
        log.info("the study has its points already; %s not used again", given)
        return
    points = sampling.sample(**where)  # a bad place or file fails here, before any write
    st = study_mod.open_study(study_dir)
    st.write_layer("points", points)
    st.record_run("sample", {**where, "spacing": 15.0, "network": "drive"}, points=len(points))
    log.info("sampled %s points into %s", f"{len(points):,}", st.gpkg)


def _has_study(study_dir: str) -> bool:
    from pathlib import Path

    return (Path(study_dir).expanduser() / "study.gpkg").is_file()
