"""``urbanvis eval socioeconomic``: zone indicator R² per embedding model (Table 2)."""

from __future__ import annotations

import click

from ._options import ProgressBar, echo_result, study_option


@click.command("socioeconomic")
@study_option
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="ID",
    help="Embedding model id in the study (one column each); repeatable [default: all].",
)
@click.option(
    "--level",
    type=click.Choice(["blockgroup", "tract", "hex", "buffer"]),
    default="blockgroup",
    show_default=True,
    help="Zone level, as for urbanvis predict (without --zones: TIGER/Line or a grid).",
)
@click.option("--zones", default=None, help="Zones file (shapefile or GeoPackage, any CRS).")
@click.option("--zones-layer", default=None, help="Layer of a multi-layer --zones file.")
@click.option(
    "--id-field", default="GEOID", show_default=True, help="Zone id in --zones and --indicators."
)
@click.option(
    "--indicators",
    required=True,
    help="CSV of indicators keyed by --id-field, or acs:VAR[,VAR...] (as for predict).",
)
@click.option("--columns", default=None, help="Comma-separated indicator columns [default: all].")
@click.option(
    "--topics",
    default=None,
    help="CSV with columns indicator,topic [default: topics.csv beside --indicators, "
    "else the paper's topics].",
)
@click.option(
    "--protocol",
    type=click.Choice(["holdout", "kfold5"]),
    default="kfold5",
    show_default=True,
    help="kfold5: outer 5-fold CV (the authors'); holdout: seeded 70/30 split.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds.")
@click.option(
    "--min-images",
    type=int,
    default=1,
    show_default=True,
    help="Zones with fewer images (for any model) are left out of fitting and scoring.",
)
@click.option("--cell-size", type=float, default=500.0, show_default=True, help="hex: metres.")
@click.option(
    "--buffer", type=float, default=100.0, show_default=True, help="buffer: square metres side."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE.csv",
    help="Write the table here [default: reports/eval_socioeconomic.csv of the study].",
)
def socioeconomic(study_dir, models, level, zones, zones_layer, id_field, indicators, columns,
                  topics, protocol, seed, min_images, cell_size, buffer, out):  # fmt: skip
    """Zone indicator R² of several encoders side by side: indicators x models.

    \b
    Reads the study's vector store: it embeds nothing. Make one embedding model per
    encoder first (urbanvis embed --checkpoint FILE, or --model NAME --random-init);
    every model is then scored by predict's method (StandardScaler -> PCA(0.99) ->
    LassoCV(cv=5) on mean zone embeddings) on the same zones and the same folds.
    Writes only the table (CSV and Markdown): no predictions layer, no model file.

    \b
    Examples:
      urbanvis eval socioeconomic --study sim --zones sim/study.gpkg \\
          --zones-layer zones_sim --id-field zone_id --indicators sim/truth/indicators.csv
      urbanvis eval socioeconomic --study la --indicators acs:median_income,poverty \\
          --model vit_base_patch16_224@0123456789ab --model random-init:vit_base_patch16_224:0
    """
    from urbanvis import stages

    with ProgressBar("models", unit="model") as bar:
        result = stages.eval_socioeconomic(
            study_dir, indicators=indicators, models=models, level=level, zones=zones,
            zones_layer=zones_layer, id_field=id_field, columns=columns, topics=topics,
            protocol=protocol, seed=seed, min_images=min_images, cell_size=cell_size,
            buffer=buffer, out=out, progress=bar,
        )  # fmt: skip
    echo_result(result)
