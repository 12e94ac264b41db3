"""``urbanvis pretrain``: MoCo v3 ViT pretraining on a pair table."""

from __future__ import annotations

import os

import click

from ._options import ProgressBar, echo_result, study_option


@click.command()
@study_option
@click.option(
    "--pairs",
    "pairs_name",
    default="temporal",
    show_default=True,
    help="A pair table: a strategy name (pairs/NAME.parquet in the study) or a path.",
)
@click.option(
    "--arch",
    default="vit_base_patch16_224",
    show_default=True,
    help="Backbone: vit_base_patch16_224, vit_small_patch16_224, vit_large_patch16_224, "
    "vit_tiny_patch16_224, vit_mini_patch16 (CPU), vit_test_patch8 (tests).",
)
@click.option("--epochs", type=int, default=300, show_default=True)
@click.option(
    "--batch-size",
    type=int,
    default=1024,
    show_default=True,
    help="Global batch (summed over all processes).",
)
@click.option(
    "--base-lr",
    type=float,
    default=1.5e-4,
    show_default=True,
    help="Learning rate per 256 pairs; the rate used is base-lr x batch / 256.",
)
@click.option("--weight-decay", type=float, default=0.1, show_default=True)
@click.option(
    "--warmup-epochs",
    type=float,
    default=None,
    help="Linear warmup (default 40/300 of --epochs, the paper's 40 of 300).",
)
@click.option(
    "--momentum",
    type=float,
    default=0.99,
    show_default=True,
    help="Base momentum of the target encoder (raised to 1 by a cosine).",
)
@click.option("--temperature", type=float, default=0.2, show_default=True)
@click.option(
    "--crop-min",
    type=float,
    default=0.08,
    show_default=True,
    help="Smallest random crop, as a share of the image (MoCo v3's 0.08).",
)
@click.option(
    "--photometric",
    type=float,
    default=1.0,
    show_default=True,
    help="Factor on the colour jitter, greyscale, blur and solarize probabilities: 1 is "
    "MoCo v3's, 0 none (temporal/spatial pairs already differ in light and season).",
)
@click.option(
    "--learn-patch",
    is_flag=True,
    help="Train the patch projection (MoCo v3 freezes it at its random init).",
)
@click.option(
    "--mlp-dim",
    type=int,
    default=4096,
    show_default=True,
    help="Hidden width of the projector and predictor.",
)
@click.option("--dim", type=int, default=256, show_default=True, help="Output width.")
@click.option("--image-size", type=int, default=None, help="Input size (default: the arch's).")
@click.option(
    "--workers",
    type=int,
    default=4,
    show_default=True,
    help="Data-loading processes per training process.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="auto: bf16 on CUDA, fp32 on CPU.",
)
@click.option(
    "--augment",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default="auto",
    show_default=True,
    help="Where views are made: cpu (PIL, in the workers) or gpu (batched on the device, "
    "decoding with nvJPEG); auto picks gpu on CUDA.",
)
@click.option(
    "--compile",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="torch.compile the encoders; auto: on for CUDA, off on CPU. Measured 1.27x faster "
    "at batch 256 on an H200 (ViT-B/16, bf16); the first step compiles (reported).",
)
@click.option(
    "--accumulate",
    type=int,
    default=1,
    show_default=True,
    help="Split each batch into this many micro-batches (when it does not fit).",
)
@click.option(
    "--save-every",
    type=int,
    default=10,
    show_default=True,
    help="Checkpoint every N epochs (and at the end).",
)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint of --name.")
@click.option(
    "--name",
    default=None,
    help="Run name: checkpoints go to checkpoints/NAME/ (default: PAIRS-ARCH).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--on-missing",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="Pairs whose images are missing: stop, or skip them.",
)
def pretrain(study_dir, pairs_name, name, resume, **options):
    """Pretrain a ViT with MoCo v3 on self, temporal or spatial pairs.

    \b
    The paper's recipe is the default: ViT-B/16, 300 epochs, batch 1024, AdamW with
    lr 1.5e-4 x batch/256 and weight decay 0.1, 40 warmup epochs then cosine, momentum
    0.99 -> 1, temperature 0.2. Checkpoints use the MoCo v3 reference format.

    \b
    One GPU or CPU:     urbanvis pretrain --study S --pairs temporal
    Many GPUs / nodes:  torchrun --nproc_per_node 8 -m urbanvis_cli.main pretrain ...
    A CPU trial:        urbanvis pretrain --study S --pairs temporal --arch vit_mini_patch16
                          --epochs 5 --batch-size 64 --mlp-dim 512
    Eased for CPU budgets (what `urbanvis experiment`'s cpu preset uses):
                        ... --photometric 0 --crop-min 0.5 --momentum 0.9 --learn-patch
    """
    from urbanvis import stages

    with ProgressBar("pretrain", unit="it") as progress:
        result = stages.pretrain(
            study_dir, pairs=pairs_name, name=name, resume=resume, progress=progress, **options
        )
    if result.files.get("checkpoint") and int(os.environ.get("RANK", "0")) == 0:
        echo_result(result)
