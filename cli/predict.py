"""``urbanvis predict``: zone indicators from mean zone embeddings (Table 2 of the paper)."""

from __future__ import annotations

import click

from ._options import echo_result, study_option


@click.command()
@study_option
@click.option(
    "--level",
    type=click.Choice(["blockgroup", "tract", "hex", "buffer"]),
    default="blockgroup",
    show_default=True,
    help="Zone level; names the layers zones_LEVEL and predictions_LEVEL. Without --zones, "
    "blockgroup and tract zones are downloaded from Census TIGER/Line (US only).",
)
@click.option(
    "--zones",
    default=None,
    help="Zones file (shapefile or GeoPackage, any CRS) [default: TIGER/Line for "
    "blockgroup/tract, a grid for hex/buffer].",
)
@click.option("--zones-layer", default=None, help="Layer of a multi-layer --zones file.")
@click.option(
    "--id-field", default="GEOID", show_default=True, help="Zone id in --zones and --indicators."
)
@click.option(
    "--indicators",
    default=None,
    help="CSV of indicators keyed by --id-field, or acs:VAR[,VAR...] to download American "
    "Community Survey 5-year estimates for the zones' GEOIDs: raw names (B19013_001E) or "
    "aliases (median_income, poverty, population, median_age, median_rent, "
    "median_home_value). A CENSUS_API_KEY in the environment is used when set.",
)
@click.option("--columns", default=None, help="Comma-separated indicator columns [default: all].")
@click.option(
    "--topics",
    default=None,
    help="CSV with columns indicator,topic [default: topics.csv beside the --indicators "
    "CSV (the synthetic city writes one), else the paper's topics].",
)
@click.option(
    "--protocol",
    type=click.Choice(["holdout", "kfold5"]),
    default="holdout",
    show_default=True,
    help="holdout: seeded 70/30 split; kfold5: outer 5-fold CV.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option(
    "--min-images",
    type=int,
    default=1,
    show_default=True,
    help="Zones with fewer images are flagged and left out of fitting and scoring.",
)
@click.option("--cell-size", type=float, default=500.0, show_default=True, help="hex: metres.")
@click.option(
    "--buffer", type=float, default=100.0, show_default=True, help="buffer: square metres side."
)
@click.option("--model", default=None, help="Embedding model id when the study holds several.")
@click.option(
    "--apply", "apply_path", default=None, help="Predict with saved models (no --indicators)."
)
@click.option(
    "--tiger-year",
    type=int,
    default=2023,
    show_default=True,
    help="TIGER/Line vintage of the downloaded zones (2020 census boundaries: 2020-2029).",
)
@click.option(
    "--acs-year",
    type=int,
    default=2022,
    show_default=True,
    help="ACS 5-year estimates ending this year (2022: 2018-2022); its geography must match "
    "the zones' (2020 boundaries from ACS 2020 on).",
)
@click.option(
    "--tiger-url",
    default=None,
    help="TIGER/Line mirror replacing https://www2.census.gov/geo/tiger [env URBANVIS_TIGER_URL].",
)
@click.option(
    "--census-url",
    default=None,
    help="Census Data API mirror replacing https://api.census.gov/data [env URBANVIS_CENSUS_URL].",
)
def predict(
    study_dir, level, zones, zones_layer, id_field, indicators, columns, topics, protocol, seed,
    min_images, cell_size, buffer, model, apply_path, tiger_year, acs_year, tiger_url, census_url,
):  # fmt: skip
    """Predict zone indicators: StandardScaler -> PCA(0.99) -> LassoCV(cv=5) per indicator.

    \b
    Writes layers zones_LEVEL and predictions_LEVEL, reports/predict_LEVEL.csv and .md
    (R² per indicator and topic) and models/predict_LEVEL.joblib (for --apply).

    \b
    US studies need no files: block groups (or tracts) come from Census TIGER/Line and
    indicators from the ACS, both downloaded once and cached in ~/.cache/urbanvis
    (env URBANVIS_CACHE); elsewhere pass --zones and an --indicators CSV.

    \b
    Examples:
      urbanvis predict --study la --indicators acs:median_income,poverty
      urbanvis predict --study la --level tract --indicators acs:B19013_001E --acs-year 2021
      urbanvis predict --study hel --zones bg.shp --id-field GEOID --indicators acs.csv
      urbanvis predict --study sim --zones sim/study.gpkg --zones-layer zones_sim \\
          --id-field zone_id --indicators sim/truth/indicators.csv --protocol kfold5
      urbanvis predict --study new --apply hel/models/predict_blockgroup.joblib --zones bg.shp
    """
    from urbanvis import stages

    result = stages.predict(
        study_dir, level=level, zones=zones, zones_layer=zones_layer, id_field=id_field,
        indicators=indicators, columns=columns, topics=topics, protocol=protocol, seed=seed,
        min_images=min_images, cell_size=cell_size, buffer=buffer, model=model,
        apply=apply_path, tiger_year=tiger_year, acs_year=acs_year, tiger_url=tiger_url,
        census_url=census_url,
    )  # fmt: skip
    echo_result(result)
