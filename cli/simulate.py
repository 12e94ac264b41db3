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
    help="--truth: about this many points per zone (10 to 200; zones of under half that, "
    "or under 10 points, are folded into their neighbours).",
)
@click.option(
    "--size",
    type=int,
    default=160,
    show_default=True,
    help="--contact-sheet: tile size; --vpr-set and --safety-set: image side, in pixels.",
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
    "--queries",
    type=click.Choice(["evening", "day"]),
    default="evening",
    show_default=True,
    help="--vpr-set: when the queries are taken: an overcast autumn evening after sunset "
    "(day to night), or an overcast spring afternoon (another day's light and season).",
)
@click.option(
    "--safety-set",
    type=click.Path(file_okay=False, path_type=str),
    metavar="DIR",
    help="Render a Place Pulse 2.0-shaped safety set into a new folder: images/<id>.jpg, "
    "votes.csv (PP2 columns) and truth.csv; for urbanvis eval safety --pp2 DIR/votes.csv.",
)
@click.option(
    "--images",
    type=int,
    default=1000,
    show_default=True,
    help="--safety-set: how many images.",
)
@click.option(
    "--votes-per-image",
    type=int,
    default=6,
    show_default=True,
    help="--safety-set: votes drawn per image (each vote shows two).",
)
def simulate(study_dir, sheet, truth, seed, points_per_zone, size, vpr_set, places, queries,
             safety_set, images, votes_per_image):  # fmt: skip
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
      urbanvis simulate --safety-set pp --images 1000 --seed 0
      urbanvis simulate --vpr-set vpr --places 200
      urbanvis simulate --vpr-set vpr-day --places 200 --queries day
    """
    from urbanvis import stages

    result = stages.simulate(
        study_dir if truth else None,
        truth=truth,
        contact_sheet=sheet,
        seed=seed,
        points_per_zone=points_per_zone,
        size=size,
        safety_set=safety_set,
        images=images,
        votes_per_image=votes_per_image,
        vpr_set=vpr_set,
        places=places,
        queries=queries,
    )
    echo_result(result)
