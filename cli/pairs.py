"""``urbanvis pairs``: contrastive pair datasets (self, temporal, spatial) from the captures."""

from __future__ import annotations

import click

from ._options import ProgressBar, echo_result, study_option


@click.command()
@study_option
@click.option(
    "--strategy",
    required=True,
    metavar="self|temporal|spatial",
    help="self: one image, two augmented views; temporal: same place and heading at "
    "different dates; spatial: two images of the same zone.",
)
@click.option(
    "--max-pairs",
    type=int,
    default=1_000_000,
    show_default=True,
    help="Pair budget (the paper's 1,000,000), spread evenly over places/zones.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the draw.")
@click.option(
    "--max-distance",
    type=float,
    default=5.0,
    show_default=True,
    help="temporal: metres between the two captures of a pair.",
)
@click.option(
    "--heading-tol",
    type=float,
    default=10.0,
    show_default=True,
    help="temporal: degrees between the two captures' headings.",
)
@click.option(
    "--buffer",
    type=float,
    default=None,
    help="spatial: side in metres of the square zones, cells of a grid in the local UTM "
    "zone (the paper's 100 m areas)  [default: 100]",
)
@click.option(
    "--zones",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE",
    help="spatial: polygon file (any CRS), e.g. census block groups; replaces --buffer.",
)
@click.option("--zone-id", metavar="FIELD", help="spatial: the zones' id field, e.g. GEOID.")
@click.option("--shards", is_flag=True, help="Also write WebDataset tar shards for streaming.")
@click.option(
    "--shard-size", type=int, default=1000, show_default=True, help="Pairs per tar shard."
)
def pairs(
    study_dir,
    strategy,
    max_pairs,
    seed,
    max_distance,
    heading_tol,
    buffer,
    zones,
    zone_id,
    shards,
    shard_size,
):
    """Draw a contrastive pair dataset from the study's captures into pairs/.

    \b
    Writes pairs/STRATEGY.parquet (pair_id, capture_a/b, image_a/b relative to the
    study, point_a/b, distance_m, days_apart, heading_diff, zone...), a summary beside
    it (.json, .md) and, with --shards, pairs/STRATEGY-shards/STRATEGY-000000.tar...
    Only captures with status ok are used. Spatial zones are --buffer metre grid cells
    (id EPSG:EASTING:NORTHING of the south-west corner) or --zones polygons.

    \b
    Examples:
      urbanvis pairs --study hel --strategy temporal --max-pairs 1000000
      urbanvis pairs --study hel --strategy spatial --buffer 100 --shards
      urbanvis pairs --study la --strategy spatial --zones bg.gpkg --zone-id GEOID
    """
    from urbanvis import stages

    with ProgressBar("shards", unit="pair", enabled=shards) as progress:
        result = stages.pairs(
            study_dir,
            strategy=strategy,
            max_pairs=max_pairs,
            seed=seed,
            max_distance=max_distance,
            heading_tol=heading_tol,
            buffer=buffer,
            zones=zones,
            zone_id=zone_id,
            shards=shards,
            shard_size=shard_size,
            progress=progress,
        )
    echo_result(result)
