"""``urbanvis simulate``: the synthetic city's contact sheet and ground truth."""

from __future__ import annotations

import click

from ._options import echo_result, study_option


@click.command()
@study_option
@click.option(
    "--contact-sheet",
    "sheet",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="PNG",
    help="Write a contact sheet: one place over 6 dates, 6 places "
    "along a street, 6 neighbourhoods.",
)
@click.option(
    "--truth",
    is_flag=True,
    help="Write the study's ground truth: zones_sim layer, truth/indicators.csv and "
    "(with simulator captures) truth/safety_scores.csv and safety_votes.csv.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="The synthetic city (use the seed the harvest used).",
)
@click.option(
    "--points-per-zone",
    type=int,
    default=60,
    show_default=True,
    help="--truth: about this many points per zone (20 to 200 each).",
)
@click.option(
    "--vpr-set",
    type=click.Path(file_okay=False, path_type=str),
    metavar="DIR",
    help="Write a visual place recognition set of unseen places (database/ and queries/, "
    "@utm_east@utm_north@...@.jpg) into this new folder, for urbanvis eval vpr.",
)
@click.option(
    "--places", type=int, default=200, show_default=True, help="--vpr-set: places along a street."
)
@click.option(
    "--size",
    type=int,
    default=160,
    show_default=True,
    help="--contact-sheet: tile size; --vpr-set: image size, in pixels.",
)
def simulate(study_dir, sheet, truth, seed, points_per_zone, vpr_set, places, size):
    """The synthetic street-view city: look at it, or export its ground truth.

    \b
    The simulator provider (urbanvis harvest --provider simulator) renders a procedural
    city whose neighbourhoods follow smooth latent fields (style, greenery, density,
    upkeep); zone indicators and image safety scores are known functions of them, so
    the paper's hypotheses can be checked against the truth.

    \b
    Examples:
      urbanvis simulate --contact-sheet city.png --seed 0
      urbanvis simulate --study hel --truth --seed 0
      urbanvis simulate --vpr-set vpr --places 200
    """
    from urbanvis import stages

    result = stages.simulate(
        study_dir if truth else None,
        truth=truth,
        contact_sheet=sheet,
        seed=seed,
        points_per_zone=points_per_zone,
        size=size,
        vpr_set=vpr_set,
        places=places,
    )
    echo_result(result)
