"""``urbanvis map``: a folium web map and/or a GeoTIFF surface of a study layer."""

from __future__ import annotations

import click

from ._options import study_option


@click.command("map")
@study_option
@click.option(
    "--layer",
    help="Layer to map (points, captures, embeddings, zones_*, predictions_*...). "
    "Default: captures if the study has it, else points.",
)
@click.option("--column", help="Value to colour by (or, with --raster, to interpolate).")
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
    study_dir, layer, column, out, tiles, attribution, thumbnails, raster, cell, method, radius
):
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
    from pathlib import Path

    from urbanvis import maps
    from urbanvis import study as study_mod
    from urbanvis._errors import InputError

    if raster is not None and not cell > 0:
        raise InputError(f"--cell must be a positive number of metres, not {cell:g}")
    if raster is not None and not column:
        raise InputError("--raster needs --column: the value to interpolate")
    st = study_mod.open_study(study_dir, create=False)
    if layer is None:
        layer = "captures" if st.has_layer("captures") else "points"
    if out is None and raster is None:
        out = str(st.reports / f"map_{layer}.html")
    html_path = maps.check_out_path(out) if out else None
    tif_path = maps.check_out_path(raster, option="--raster") if raster else None
    frame = st.read_layer(layer)
    zones = None
    zone_layers = [n for n in st.layers() if n.startswith(("predictions_", "zones_"))]
    if html_path is not None and zone_layers and layer not in zone_layers:
        zones = st.read_layer(zone_layers[0])
    written = {}
    if html_path is not None:
        m = maps.map_from_layer(
            frame,
            column,
            tiles=tiles,
            attribution=attribution,
            zones=zones,
            study_root=st.root,
            html_dir=html_path.parent,
            thumbnails=thumbnails,
            title=f"urbanvis: {layer}",
        )
        html = maps.render_html(m)  # checked before anything is written
        if tif_path is not None:
            maps.raster_from_points(
                frame, column, tif_path, cell=cell, method=method, radius=radius
            )
            written["raster"] = str(tif_path)
        maps.write_map(html, html_path)
        written["html"] = str(html_path)
    else:
        maps.raster_from_points(frame, column, tif_path, cell=cell, method=method, radius=radius)
        written["raster"] = str(tif_path)
    parameters = dict(
        layer=layer, column=column, tiles=tiles, thumbnails=thumbnails, cell=cell, method=method,
        radius=radius,
    )  # fmt: skip
    st.record_run("map", parameters, features=len(frame), **written)
    for kind, path in written.items():
        click.echo(f"wrote {Path(path)} ({kind}, {len(frame):,} features of '{layer}')")
