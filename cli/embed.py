"""``urbanvis embed``: ViT embeddings of the study's captures into the embeddings layer."""

from __future__ import annotations

import os

import click

from ._options import ProgressBar, echo_result, study_option


@click.command()
@study_option
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Checkpoint file: urbanvis/MoCo v3 (checkpoints/...pth.tar) or timm/DeiT.",
)
@click.option(
    "--model",
    default=None,
    help="Encoder name (e.g. vit_base_patch16_224) instead of a checkpoint; needs --random-init.",
)
@click.option(
    "--random-init",
    is_flag=True,
    help="With --model: random weights (a baseline; no pretrained weights ship offline).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random-init.")
@click.option(
    "--batch-size",
    type=int,
    default=64,
    show_default=True,
    help="Distinct images per forward pass and per saved part; a kill loses at most the "
    "batch in flight (two on a GPU).",
)
@click.option(
    "--workers",
    type=int,
    default=2,
    show_default=True,
    help="Processes decoding images (--decode cpu) or reading their files (--decode gpu).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="Forward pass in bf16 autocast or fp32; auto: bf16 on CUDA, fp32 on CPU.",
)
@click.option(
    "--decode",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default="auto",
    show_default=True,
    help="Where images are decoded and resized: cpu (PIL, in the workers) or gpu (a batch at "
    "a time on the device, JPEGs with nvJPEG); auto picks gpu on CUDA.",
)
@click.option(
    "--compile",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="torch.compile the backbone; auto: on for CUDA, off on CPU. Its speed-up for "
    "embedding is unmeasured; the first batch compiles (reported).",
)
@click.option(
    "--image-size",
    type=int,
    default=None,
    help="Resize and centre-crop side [default: the model's input size, 224 for ViTs].",
)
@click.option(
    "--limit", type=int, default=None, help="Embed at most this many more captures (a trial)."
)
def embed(
    study_dir,
    checkpoint,
    model,
    random_init,
    seed,
    batch_size,
    workers,
    device,
    precision,
    decode,
    compile,
    image_size,
    limit,
):
    """Embed every ok capture with a ViT backbone ([CLS] after the final LayerNorm), resumably.

    \b
    Vectors (float32) go to embeddings/MODEL/vectors.parquet, keyed by capture_id; the
    embeddings layer gets capture_id, point_id, model (encoder@checkpoint-sha256), pc1..pc3
    and the capture's point. Captures that share an image file (one panorama seen from
    neighbouring points) share one forward pass and its vector. Rerunning skips captures
    this model has already embedded.
    Read both in Python with urbanvis.vectors.read_embeddings(study, model=...).
    Under torchrun each process embeds its own share and rank 0 writes the layer; a killed
    run, single or multi-process, resumes where it stopped.

    \b
    Examples:
      urbanvis embed --study hel --checkpoint hel/checkpoints/run/checkpoint_0299.pth.tar
      urbanvis embed --study hel --model vit_small --random-init --device cpu
      torchrun --standalone --nproc_per_node 8 -m urbanvis_cli.main embed --study hel \\
          --checkpoint C --batch-size 256
    """
    from urbanvis import stages

    rank0 = int(os.environ.get("RANK", "0")) == 0
    with ProgressBar("embed", unit="capture", enabled=rank0) as progress:
        result = stages.embed(
            study_dir,
            checkpoint=checkpoint,
            model=model,
            random_init=random_init,
            seed=seed,
            batch_size=batch_size,
            workers=workers,
            device=device,
            precision=precision,
            decode=decode,
            compile=compile,
            image_size=image_size,
            limit=limit,
            progress=progress,
        )
    if rank0:
        echo_result(result)
