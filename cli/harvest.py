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


@click.command()
@study_option
@click.option(
    "--provider",
    default="simulator",
    show_default=True,
    help="Where images come from. Today: simulator (offline synthetic city).",
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
@click.option(
    "--captures-per-point",
    type=int,
    default=3,
    show_default=True,
    help="simulator: capture dates per point (2+ gives temporal pairs).",
)
@click.option(
    "--since",
    type=int,
    default=2015,
    show_default=True,
    help="simulator: first year of capture dates.",
)
@click.option(
    "--until",
    type=int,
    default=2024,
    show_default=True,
    help="simulator: last year of capture dates.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="simulator: the synthetic city (another seed, another city).",
)
@click.option("--size", type=int, default=224, show_default=True, help="Image side in pixels.")
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
def harvest(
    study_dir,
    provider,
    headings,
    absolute_headings,
    captures_per_point,
    since,
    until,
    seed,
    size,
    workers,
    batch_size,
    limit,
):
    """Capture street-level images for every point of the study, resumably.

    \b
    Rows go to the study's captures layer (capture_id, point_id, provider, pano_id,
    heading, pitch, fov, captured_at, image_path, sha256, width, height, status, error)
    and images under images/PROVIDER/. Rerunning continues where the last run stopped:
    nothing finished is fetched again.

    \b
    Examples:
      urbanvis harvest --study hel --provider simulator --captures-per-point 3
      urbanvis harvest --study hel --headings 90,270 --limit 100
    """
    from urbanvis import study as study_mod
    from urbanvis.harvest import harvest as run_harvest
    from urbanvis.providers import provider_from_name

    settings = dict(
        seed=seed,
        captures_per_point=captures_per_point,
        since=since,
        until=until,
        headings=_headings(headings),
        absolute_headings=absolute_headings,
        size=size,
        workers=workers,
    )
    source = provider_from_name(provider, **settings)  # validates before touching the study
    st = study_mod.open_study(study_dir, create=False)
    with ProgressBar(f"harvest {provider}") as progress:
        summary = run_harvest(st, source, batch_size=batch_size, limit=limit, progress=progress)
    st.record_run(
        "harvest",
        {"provider": provider, **source.parameters(), "batch_size": batch_size, "limit": limit},
        **summary.counts,
        points=summary.points_harvested,
    )
    total = summary.points_done_before + summary.points_harvested
    click.echo(f"{total:,} of {summary.points_total:,} points harvested; captures in {st.gpkg}")
