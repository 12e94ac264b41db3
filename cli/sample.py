"""``urbanvis sample``: points along the road network into the study's ``points`` layer."""

from __future__ import annotations

import click

from ._options import echo_result, study_option


@click.command()
@study_option
@click.option(
    "--city",
    metavar="NAME",
    help="Place name geocoded by Nominatim (online), e.g. 'Helsinki, Finland'.",
)
@click.option(
    "--area",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE",
    help="Polygon file (GeoPackage, shapefile, GeoJSON...) bounding the sample.",
)
@click.option(
    "--bbox", metavar="W,S,E,N", help="Bounding box in degrees, e.g. 24.93,60.16,24.96,60.18."
)
@click.option(
    "--osm",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE",
    help="Local OSM file (.osm.pbf, .osm XML or .graphml); clipped to --city/--area/--bbox "
    "if given. Without it, roads are downloaded from Overpass (online).",
)
@click.option(
    "--network",
    type=click.Choice(["drive", "walk", "all"]),
    default="drive",
    show_default=True,
    help="Which roads to follow.",
)
@click.option(
    "--spacing",
    type=float,
    default=15.0,
    show_default=True,
    help="Metres between points along a street (the paper uses 15).",
)
@click.option(
    "--method",
    type=click.Choice(["network", "grid"]),
    default="network",
    show_default=True,
    help="'grid' places points on a square grid instead (areas with poor OSM coverage).",
)
@click.option(
    "--merge-distance",
    type=float,
    default=1.0,
    show_default=True,
    help="Points closer than this (metres), e.g. where streets meet, become one.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the points of a study that has points but no captures yet.",
)
@click.option(
    "--nominatim-url", metavar="URL", help="Nominatim server to use instead of the public one."
)
@click.option(
    "--overpass-url", metavar="URL", help="Overpass API server to use instead of the public one."
)
def sample(
    study_dir,
    city,
    area,
    bbox,
    osm,
    network,
    spacing,
    method,
    merge_distance,
    overwrite,
    nominatim_url,
    overpass_url,
):
    """Sample points every --spacing metres along streets into the study's points layer.

    \b
    Each point gets point_id, the road bearing there (degrees from north), the edge and
    OSM way it lies on. Two-way streets are sampled once; points where streets meet are
    merged. Measured in the local UTM zone, stored as EPSG:4326.

    \b
    Examples:
      urbanvis sample --study la --city "Los Angeles, California, USA"
      urbanvis sample --study hel --osm helsinki.osm.pbf --bbox 24.93,60.16,24.96,60.18
      urbanvis sample --study site --area site.gpkg --method grid --spacing 50
    """
    from urbanvis import stages

    result = stages.sample(
        study_dir,
        city=city,
        area=area,
        bbox=bbox,
        osm=osm,
        network=network,
        spacing=spacing,
        method=method,
        merge_distance=merge_distance,
        nominatim_url=nominatim_url,
        overpass_url=overpass_url,
        overwrite=overwrite,
    )
    echo_result(result)
