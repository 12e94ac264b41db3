"""``urbanvis map``: a folium web map and/or a GeoTIFF surface of a study layer."""

from __future__ import annotations

import click

from ._options import echo_result, study_option


@click.command("map")
@study_option
@click.option(
    "--layer",
    help="Layer to map (points, captures, embeddings, zones_*, predictions_*...). "
    "Default: captures if the study has it, else points.",
)
@click.option("--column", help="Value to colour by (or, with --raster, to interpolate).")
@click.option(
    "--zones-layer",
    metavar="LAYER",
    help="Zones whose values popups of points and captures show. Default: the study's "
    "first predictions_* or zones_* layer.",
)
@click.option("--title", help="Title of the web map. Default: 'urbanvis: LAYER'.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="HTML",
    help="Web map to write. Default: STUDY/reports/map_LAYER.html (none with --raster).",
)
@click.option(
    "--tiles",
    default="OpenStreetMap",
    show_default=True,
    help="Base map: 'none' (works offline, requests nothing), a folium name such as "
    "'CartoDB positron', or an XYZ URL template with --attribution.",
)
@click.option("--attribution", help="Attribution for an XYZ --tiles URL template.")
@click.option(
    "--thumbnails",
    type=click.Choice(["auto", "embed", "link", "none"]),
    default="auto",
    show_default=True,
    help="Capture thumbnails in popups: small JPEGs inside the page (auto: up to 1,000 "
    "images) or links to the study's images, relative to the HTML.",
)
@click.option(
    "--raster",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="TIF",
    help="Also (or only) write a GeoTIFF surface of --column.",
)
@click.option(
    "--cell", type=float, default=50.0, show_default=True, help="--raster: cell size in metres."
)
@click.option(
    "--method",
    type=click.Choice(["idw", "kernel"]),
    default="idw",
    show_default=True,
    help="--raster: inverse distance weighting or a Gaussian kernel average.",
)
@click.option(
    "--radius",
    type=float,
    help="--raster: cells farther than this (metres) from any point are nodata. "
    "Default: twice the spacing of the points.",
)
def map_command(
    study_dir, layer, column, out, tiles, attribution, thumbnails, raster, cell, method, radius,
    zones_layer, title,
):  # fmt: skip
    """Draw a study layer as a web map (folium HTML) or a GeoTIFF surface (QGIS).

    \b
    Points and captures are coloured by --column or by imagery date, embeddings (pc1..pc3)
    as RGB; zones show observed and predicted indicators and their residual, with legends.
    Popups show the capture's thumbnail, date, heading and its zone's values. The HTML
    carries Leaflet inside it: with --tiles none it opens offline.

    \b
    Examples:
      urbanvis map --study hel --layer captures --out hel/reports/captures.html
      urbanvis map --study hel --layer zones_sim --column poverty_rate --tiles none
      urbanvis map --study hel --layer zones_sim --column poverty_rate --raster pov.tif --cell 50
    """
    from urbanvis import stages

    result = stages.map(
        study_dir, layer=layer, column=column, out=out, tiles=tiles, attribution=attribution,
        thumbnails=thumbnails, raster=raster, cell=cell, method=method, radius=radius,
        zones_layer=zones_layer, title=title,
    )  # fmt: skip
    echo_result(result)
