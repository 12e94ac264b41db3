"""Options every ``urbanvis eval`` command shares: the encoders to compare and ``--out``."""

from __future__ import annotations

import functools

import click

ENCODER_HELP = """\b
Encoders (one table row each; give any mix):
  --checkpoint FILE     a checkpoint (urbanvis/MoCo v3 or timm/DeiT); repeatable
  --model NAME --random-init   an architecture with random weights (no pretraining)
  --thumbnail           16x16 colour thumbnails, the non-learned baseline"""


def encoder_options(command):
    """Add --checkpoint (repeatable), --model (repeatable), --random-init, --thumbnail,
    --seed, --image-size, --batch-size, --workers, --device and --out to a command."""
    options = [
        click.option(
            "--checkpoint",
            "checkpoints",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=str),
            metavar="FILE",
            help="Checkpoint to evaluate (urbanvis/MoCo v3 or timm/DeiT); repeat for several.",
        ),
        click.option(
            "--model",
            "models",
            multiple=True,
            metavar="NAME",
            help="Architecture with random weights (needs --random-init); repeatable.",
        ),
        click.option(
            "--random-init", is_flag=True, help="With --model: random weights, a baseline."
        ),
        click.option(
            "--thumbnail",
            is_flag=True,
            help="Add the 16x16 colour-thumbnail baseline (no learning at all).",
        ),
        click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Seed of --random-init weights and of any split.",
        ),  # fmt: skip
        click.option(
            "--image-size",
            type=int,
            default=None,
            help="Resize and centre-crop side [default: the model's].",
        ),  # fmt: skip
        click.option(
            "--batch-size", type=int, default=64, show_default=True, help="Images per forward pass."
        ),  # fmt: skip
        click.option(
            "--workers", type=int, default=2, show_default=True, help="Processes decoding images."
        ),  # fmt: skip
        click.option(
            "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
        ),  # fmt: skip
        click.option(
            "--out",
            type=click.Path(dir_okay=False, path_type=str),
            metavar="FILE.csv",
            help="Write the table here (CSV, and Markdown beside it).",
        ),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), command)
