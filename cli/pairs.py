"""``urbanvis pairs``: contrastive pair datasets (self, temporal, spatial) from the captures."""

from __future__ import annotations

import click
from click.core import ParameterSource

from ._options import study_option


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
    default=100.0,
    show_default=True,
    help="spatial: side in metres of the square zones, cells of a grid in the local UTM "
    "zone (the paper's 100 m areas).",
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
@click.pass_context
def pairs(
    ctx,
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
    from urbanvis import pairs as pairs_mod
    from urbanvis import study as study_mod
    from urbanvis._errors import InputError

    pairs_mod.PairConfig(  # validate before reading anything
        strategy=strategy,
        max_pairs=max_pairs,
        seed=seed,
        max_distance=max_distance,
        heading_tol=heading_tol,
        buffer=buffer,
        zone_id=zone_id,
    )
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, got {shard_size}")
    if (zones or zone_id) and strategy != "spatial":
        raise InputError("--zones and --zone-id apply to --strategy spatial only; drop them")
    if zones and ctx.get_parameter_source("buffer") == ParameterSource.COMMANDLINE:
        raise InputError("give --zones or --buffer, not both")
    if zone_id and not zones:
        raise InputError("--zone-id needs --zones FILE, the polygons it identifies")
    st = study_mod.open_study(study_dir, create=False)
    if not st.has_layer("captures"):
        raise InputError(
            f"study {st.root} has no captures; run 'urbanvis harvest --study {study_dir}' first"
        )
    polygons = pairs_mod.zones_for_pairs(zones, zone_id=zone_id) if zones else None
    table, summary = pairs_mod.pairs_from_captures(
        st.read_layer("captures"),
        strategy=strategy,
        max_pairs=max_pairs,
        seed=seed,
        max_distance=max_distance,
        heading_tol=heading_tol,
        buffer=buffer,
        zones=polygons,
        zone_id=zone_id,
    )
    with _ShardBar(shards) as progress:
        files = pairs_mod.write_pairs(
            st,
            table,
            summary,
            strategy=strategy,
            shards=shards,
            shard_size=shard_size,
            progress=progress,
        )
    st.record_run(
        "pairs",
        {
            "strategy": strategy,
            "max_pairs": max_pairs,
            "seed": seed,
            "max_distance": max_distance,
            "heading_tol": heading_tol,
            "buffer": None if zones else buffer,
            "zones": zones,
            "zone_id": zone_id,
            "shards": shards,
            "shard_size": shard_size,
        },
        pairs=summary.pairs,
        anchors=summary.anchors,
        images=summary.images,
        table=files.table,
        shards=len(files.shards),
    )
    click.echo(summary.text())
    click.echo(f"pair table: {st.root / files.table}")
    if files.shard_pattern:
        click.echo(f"shards: {st.root / files.shard_pattern}")


class _ShardBar:
    """A tqdm bar for ``write_pairs``' ``progress(done, total)``, only when shards are written."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="pair", desc="shards", dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def __enter__(self):
        return self if self.enabled else None

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
