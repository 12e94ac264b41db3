"""Benchmark: how much of the training step's rate the input pipeline keeps, eager and compiled.

Both figures come from :func:`urbanvis.engine.pretrain.pretrain` itself, one epoch on a pair
table of JPEG files rendered by the synthetic city, timed by its progress callback after
``--warm-up`` iterations (the first compiles):

step
    the loop fed by a stand-in for :class:`urbanvis.engine.gpu_views.DeviceViews` that
    yields one random view pair already on the device every iteration: the rate of the
    step alone (forward, backward, AdamW, momentum update, the loss read back each step).
end to end
    the real pipeline (``augment="gpu"``): DataLoader workers read the JPEG bytes, a
    thread decodes each batch (nvJPEG on CUDA) and makes the two views on a side stream,
    two batches ahead of the step.

Their ratio is the share of the step's rate the pipeline keeps (issue 14's goal: at least
0.95 of the compiled step at batch 512, ViT-B/16, bf16). ``--compile`` lists the modes
run (``off``, ``on``); the compile time is the first step's extra time, as the loop
reports it.

Examples
--------
python bench/pipeline.py --device cuda --batch 512 --steps 20 --compile off,on
python bench/pipeline.py --device cpu --arch vit_test_patch8 --image-px 64 --batch 8 \\
    --mlp-dim 64 --steps 3 --warm-up 1 --workers 0 --distinct 16 --compile off
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import torch
from embed import render_jpeg  # bench/embed.py: the same JPEG street views


def build_pairs(root: Path, distinct: int, size: int, pairs: int) -> Path:
    """``distinct`` JPEGs under ``root``/images and a table of ``pairs`` pairs of them."""
    import pandas as pd

    folder = root / "images" / "bench"
    folder.mkdir(parents=True)
    processes = max(1, min(distinct, (os.cpu_count() or 2) - 1))
    with get_context("spawn").Pool(processes) as pool:  # CUDA may be up: spawn, not fork
        images = pool.map(render_jpeg, [(i, size) for i in range(distinct)])
    for i, data in enumerate(images):
        (folder / f"{i}.jpg").write_bytes(data)
    names = [f"images/bench/{i}.jpg" for i in range(distinct)]
    table = pd.DataFrame(
        {
            "image_a": [names[i % distinct] for i in range(pairs)],
            "image_b": [names[(i * 7 + 3) % distinct] for i in range(pairs)],
        }
    )
    path = root / "pairs.parquet"
    table.to_parquet(path)
    return path


class SyntheticViews:
    """Stands in for ``DeviceViews``: one random view pair on the device, every iteration."""

    shape: tuple[int, ...] = ()

    def __init__(self, loader, size: int, device: torch.device, seed_of, **_) -> None:
        self.n = len(loader)
        g = torch.Generator(device=device).manual_seed(0)
        shape = (self.shape[0], 3, size, size)
        self.x1 = torch.randn(shape, generator=g, device=device)
        self.x2 = torch.randn(shape, generator=g, device=device)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield self.x1, self.x2


def run(root: Path, pairs: Path, config, *, warm_up: int, synthetic: bool) -> dict:
    """One epoch of ``pretrain``; pairs/s over the iterations after ``warm_up``."""
    import urbanvis.engine.gpu_views as gpu_views
    from urbanvis.engine.pretrain import pretrain

    stamps: list[float] = []
    real = gpu_views.DeviceViews
    if synthetic:
        SyntheticViews.shape = (config.batch_size,)
        gpu_views.DeviceViews = SyntheticViews  # type: ignore[misc,assignment]
    run_dir = root / f"run-{config.compile}-{'step' if synthetic else 'e2e'}"
    try:
        result = pretrain(
            root, pairs, run_dir, config, progress=lambda _: stamps.append(time.perf_counter())
        )
    finally:
        gpu_views.DeviceViews = real  # type: ignore[misc]
        shutil.rmtree(run_dir, ignore_errors=True)  # the checkpoint is not wanted
    timed = len(stamps) - 1 - warm_up
    if timed < 1:
        raise SystemExit(f"--steps leaves no timed iteration after --warm-up {warm_up}")
    seconds = stamps[-1] - stamps[warm_up]
    return {
        "pairs_per_s": round(timed * config.batch_size / seconds, 1),
        "timed_iterations": timed,
        "compile_seconds": None
        if result.compile_seconds is None
        else round(result.compile_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--arch", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--mlp-dim", type=int, default=4096, help="projector/predictor width")
    parser.add_argument("--steps", type=int, default=20, help="iterations timed")
    parser.add_argument("--warm-up", type=int, default=4, help="iterations not timed")
    parser.add_argument("--image-px", type=int, default=640, help="side of the JPEGs")
    parser.add_argument("--distinct", type=int, default=256, help="distinct JPEG files")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--compile", default="off,on", help="modes to run: off, on or both")
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args()
    modes = [m.strip() for m in args.compile.split(",") if m.strip()]
    if not modes or set(modes) - {"off", "on"}:
        parser.error("--compile takes off, on or off,on")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible")

    from urbanvis.engine.pretrain import PretrainConfig

    out: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            **({"gpu": torch.cuda.get_device_name()} if args.device == "cuda" else {}),
        },
        "config": {
            "arch": args.arch,
            "batch": args.batch,
            "precision": "bf16" if args.device == "cuda" else "fp32",
            "image_px": args.image_px,
            "workers": args.workers,
            "steps": args.steps,
            "warm_up": args.warm_up,
        },
        "results": {},
    }
    print("machine:", ", ".join(f"{k} {v}" for k, v in out["machine"].items()), flush=True)
    root = Path(tempfile.mkdtemp(prefix="urbanvis-bench-pipeline-"))
    try:
        started = time.perf_counter()
        pairs = build_pairs(
            root, args.distinct, args.image_px, args.batch * (args.steps + args.warm_up + 1)
        )
        print(f"{args.distinct} JPEGs rendered in {time.perf_counter() - started:.0f} s")
        for mode in modes:
            config = PretrainConfig(
                arch=args.arch,
                epochs=1,
                batch_size=args.batch,
                mlp_dim=args.mlp_dim,
                warmup_epochs=0,
                workers=args.workers,
                device=args.device,
                augment="gpu",
                compile=mode,
                save_every=1000,
            )
            figures: dict = {}
            out["results"][f"compile_{mode}"] = figures
            for name, synthetic in (("step", True), ("end_to_end", False)):
                figures[name] = run(root, pairs, config, warm_up=args.warm_up, synthetic=synthetic)
                print(f"compile {mode:<3}  {name:<10}  {figures[name]}", flush=True)
            figures["end_to_end_over_step"] = round(
                figures["end_to_end"]["pairs_per_s"] / figures["step"]["pairs_per_s"], 3
            )
            print(f"compile {mode:<3}  end to end / step: {figures['end_to_end_over_step']}")
            if args.json:  # after every mode, so that a later failure keeps these figures
                args.json.write_text(json.dumps(out, indent=2) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if "compile_on" in out["results"] and "compile_off" in out["results"]:
        on, off = out["results"]["compile_on"], out["results"]["compile_off"]
        out["compiled_over_eager_step"] = round(
            on["step"]["pairs_per_s"] / off["step"]["pairs_per_s"], 3
        )
        out["end_to_end_over_compiled_step"] = round(
            on["end_to_end"]["pairs_per_s"] / on["step"]["pairs_per_s"], 3
        )
    print(json.dumps(out, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
