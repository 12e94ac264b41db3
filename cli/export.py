"""``urbanvis export``: a study's embeddings as one GeoParquet file other tools read."""

from __future__ import annotations

import click

from ._options import ProgressBar, echo_result, study_option


@click.command()
@study_option
@click.option(
    "--model",
    default=None,
    help="Model id whose embeddings to export (as the embeddings layer's model column "
    "names it); may be left out when the study holds one model.",
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["geoparquet"]),
    default="geoparquet",
    show_default=True,
    help="File format: GeoParquet 1.0 (WKB points, EPSG:4326).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE",
    help="File to write (.parquet; its folder must exist). "
    "Default: STUDY/exports/embeddings_MODEL.parquet.",
)
def export(study_dir, model, format_, out):
    """Export embeddings: one row per capture, its vector and its point, as GeoParquet.

    \b
    Columns: capture_id, point_id, model, the capture's metadata (provider, pano_id,
    captured_at, heading, image_path...), pc1..pc3, vector (a fixed-size list of float32)
    and geometry (WKB point, EPSG:4326, with GeoParquet metadata). The file is written in
    chunks, never all vectors at once, and appears only when complete.
    \b
    Read it with geopandas.read_parquet(FILE), pyarrow.parquet.read_table(FILE), DuckDB
    (SELECT * FROM 'FILE'), QGIS/GDAL 3.8+ (Layer > Add Vector Layer), or back in urbanvis
    with urbanvis.vectors.read_embeddings("FILE").

    \b
    Examples:
      urbanvis export --study hel
      urbanvis export --study hel --model random-init:vit_small:0 --out hel-vectors.parquet
    """
    from urbanvis import stages

    with ProgressBar("export", unit="vec") as progress:
        result = stages.export(study_dir, model=model, format=format_, out=out, progress=progress)
    echo_result(result)
