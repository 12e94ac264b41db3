"""Options shared by several commands."""

from __future__ import annotations

import click

study_option = click.option(
    "--study",
    "study_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=".",
    show_default=True,
    help="Study folder (holds study.gpkg, images/, reports/...). Created if missing.",
)
