"""``urbanvis eval``: the paper's evaluations of frozen encoders, one subcommand each."""

from __future__ import annotations

import click


@click.group("eval")
def eval_group() -> None:
    """Evaluate frozen encoders against baselines: one table row per encoder.

    \b
    Every subcommand compares the encoders you name: checkpoints (--checkpoint, repeatable),
    random weights (--model NAME --random-init) and the colour-thumbnail baseline
    (--thumbnail). A learned encoder is only worth something where it beats both.
    """


from .eval_safety import safety  # noqa: E402

eval_group.add_command(safety)

from .eval_socioeconomic import socioeconomic  # noqa: E402

eval_group.add_command(socioeconomic)

from .eval_vpr import eval_vpr  # noqa: E402

eval_group.add_command(eval_vpr)

from .eval_attention import eval_attention  # noqa: E402

eval_group.add_command(eval_attention)
