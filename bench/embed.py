"""Benchmark: ``embed_captures`` end to end, images/s from JPEG files to vectors on disk.

For each setting a study is built in a temporary folder: two batches + ``n`` street views
rendered by the synthetic city (JPEG, quality 90; at most 512 distinct renderings, made once
in parallel and repeated under other names) and a captures layer pointing at them. Then
:func:`urbanvis.engine.inference.embed_captures` runs with a random-init encoder (the weights do not
change the speed): a warm-up call on two batches, then the timed call on the ``n`` others
(DataLoader workers start inside it, as in a real run), which decodes, resizes and crops,
runs the forward pass, writes a part file per batch, merges them, fits the PCA and writes
the layer. Two figures per setting: images/s of the loop (``EmbedSummary.images_per_second``)
and of the whole timed call, start-up, merge and layer write included.

Settings, one printed line each:

cpu
    ``--arch`` (ViT-Tiny/16) at 224 px in fp32, PIL decoding in ``--workers`` processes.
cuda-nvjpeg (when CUDA is available)
    ``--gpu-arch`` (ViT-B/16) in bf16 autocast; workers read bytes, JPEGs are decoded as a
    batch with nvJPEG and resized on the GPU (``decode="gpu"``); once per mode of
    ``--gpu-compile`` (``off``, ``on``: ``torch.compile``). With compile on, the loop's
    rate is also given without the compile time (the first batch's extra time, which a
    long run pays once; the warm-up call compiled in another module, which dynamo may or
    may not reuse).
cuda-pil (unless ``--skip-pil``)
    the same model and precision with PIL decoding in the workers (``decode="cpu"``).
cuda-forward
    the forward pass alone on a random batch already on the GPU: the ceiling.

Examples
--------
python bench/embed.py --device cpu --n 256 --batch 32 --workers 2
python bench/embed.py --device cuda --gpu-n 8192 --gpu-batch 256 --gpu-workers 12
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import tempfile
import time
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path


def render_jpeg(args: tuple[int, int]) -> bytes:
    """Street view ``i`` of the synthetic city at ``size`` px, JPEG quality 90."""
    import numpy as np
    from PIL import Image

    from urbanvis.simulate import City, render

    i, size = args
    rng = np.random.default_rng(i)
    x, y = rng.uniform(0, 3000, 2)
    image = render(City(seed=0), x, y, float(rng.uniform(0, 360)), "2020-06-01T12:00", size=size)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@lru_cache(maxsize=4)
def distinct_jpegs(size: int, count: int) -> tuple[bytes, ...]:
    """``count`` renderings, made once per size and in parallel (one takes 0.12 s at 640 px)."""
    processes = max(1, min(count, (os.cpu_count() or 2) - 1))
    with get_context("spawn").Pool(processes) as pool:  # CUDA may be up: spawn, not fork
        return tuple(pool.map(render_jpeg, [(i, size) for i in range(count)]))


def build_study(root: Path, n: int, size: int):
    """A study of ``n`` captures whose images are ``size`` px JPEGs of the synthetic city."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    from urbanvis.study import open_study

    study = open_study(root)
    folder = study.images / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    distinct = distinct_jpegs(size, min(n, 512))
    for i in range(n):
        (folder / f"{i}.jpg").write_bytes(distinct[i % len(distinct)])
    frame = pd.DataFrame(
        {
            "capture_id": [f"bench-{i}" for i in range(n)],
            "point_id": np.arange(n, dtype=np.int64),
            "image_path": [f"images/bench/{i}.jpg" for i in range(n)],
            "status": "ok",
        }
    )
    lon = 24.94 + rng.uniform(0, 0.01, n)
    lat = 60.17 + rng.uniform(0, 0.01, n)
    study.write_layer(
        "captures", gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon, lat), crs=4326)
    )
    return study


def run_setting(name: str, *, n: int, source: int, **kwargs) -> dict:
    """Warm up on two batches, then time ``embed_captures`` on ``n`` more images."""
    from urbanvis.engine.inference import embed_captures

    root = Path(tempfile.mkdtemp(prefix=f"urbanvis-bench-embed-{name}-"))
    warm_up = 2 * kwargs["batch_size"]
    try:
        study = build_study(root / "study", warm_up + n, source)
        common = dict(model=kwargs.pop("arch"), random_init=True, **kwargs)
        embed_captures(study, limit=warm_up, **common)
        started = time.perf_counter()
        summary = embed_captures(study, **common)
        total = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    compiled = summary.compile_seconds
    return {
        "setting": name,
        "arch": common["model"],
        **kwargs,
        "source_px": source,
        "images": summary.images,
        "loop_images_per_second": round(summary.images_per_second, 1),
        "call_images_per_second": round(summary.images / total, 1),
        "compile_seconds": None if compiled is None else round(compiled, 1),
        "loop_images_per_second_after_compile": None
        if compiled is None
        else round(summary.images / max(summary.seconds - compiled, 1e-9), 1),
    }


def forward_only(arch: str, batch: int, steps: int = 20) -> dict:
    """Images/s of the bf16 forward pass alone on a batch already on the GPU."""
    import torch

    from urbanvis.engine.encoders import create_encoder

    net = create_encoder(arch).cuda().eval()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            net.forward_head(net.forward_features(x), pre_logits=True)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            net.forward_head(net.forward_features(x), pre_logits=True)
        torch.cuda.synchronize()
    rate = steps * batch / (time.perf_counter() - started)
    return {
        "setting": "cuda-forward",
        "arch": arch,
        "batch_size": batch,
        "precision": "bf16",
        "loop_images_per_second": round(rate, 1),
    }


def line(r: dict) -> str:
    parts = [f"{r['setting']:<13}", f"{r['arch']:<22}", f"{r.get('precision', 'fp32'):<5}"]
    if "decode" in r:
        parts.append(
            f"decode {r['decode']:<4} compile {r.get('compile', 'auto'):<4} batch "
            f"{r['batch_size']:>4} workers {r['workers']:>2} "
            f"{r['images']:>6,} images of {r['source_px']} px:  loop "
            f"{r['loop_images_per_second']:>8,.1f} img/s   whole call "
            f"{r['call_images_per_second']:>8,.1f} img/s"
        )
        if r.get("compile_seconds") is not None:
            parts.append(
                f"compiled in {r['compile_seconds']:.0f} s, loop after it "
                f"{r['loop_images_per_second_after_compile']:>8,.1f} img/s"
            )
    else:
        parts.append(
            f"batch {r['batch_size']:>4}, forward pass only:  "
            f"{r['loop_images_per_second']:>8,.1f} img/s"
        )
    return "  ".join(parts)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="cpu: the CPU setting; cuda: the GPU settings; auto: cpu, then cuda if present",
    )
    parser.add_argument("--arch", default="vit_tiny_patch16_224", help="CPU model")
    parser.add_argument("--n", type=int, default=256, help="images timed (CPU)")
    parser.add_argument("--source", type=int, default=320, help="side of the JPEGs (CPU)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (CPU)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (CPU)")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="(CPU)")
    parser.add_argument("--gpu-arch", default="vit_base_patch16_224")
    parser.add_argument("--gpu-n", type=int, default=8192, help="images timed (GPU)")
    parser.add_argument("--gpu-source", type=int, default=640, help="Street View's 640 px")
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--gpu-workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument(
        "--gpu-compile", default="off,on", help="compile modes of cuda-nvjpeg: off, on or both"
    )
    parser.add_argument("--skip-pil", action="store_true", help="no cuda-pil setting")
    parser.add_argument(
        "--skip-forward", action="store_true", help="no cuda-forward setting (the ceiling)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        parser.error("--device cuda: no CUDA GPU is visible")
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        **({"gpu": torch.cuda.get_device_name()} if cuda else {}),
    }
    print("machine:", ", ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
    results = []
    if args.device in ("auto", "cpu"):
        torch.set_num_threads(os.cpu_count() or 1)
        results.append(
            run_setting(
                "cpu",
                n=args.n,
                source=args.source,
                arch=args.arch,
                batch_size=args.batch,
                workers=args.workers,
                device="cpu",
                precision="fp32",
                decode="cpu",
                compile=args.compile,
            )
        )
        print(line(results[-1]), flush=True)
    if args.device in ("auto", "cuda") and cuda:
        modes = [m.strip() for m in args.gpu_compile.split(",") if m.strip()]
        if not modes or set(modes) - {"off", "on"}:
            parser.error("--gpu-compile takes off, on or off,on")
        settings = [("cuda-nvjpeg", "gpu", mode) for mode in modes]
        if not args.skip_pil:
            settings.append(("cuda-pil", "cpu", "off"))
        for name, decode, mode in settings:
            results.append(
                run_setting(
                    name,
                    n=args.gpu_n,
                    source=args.gpu_source,
                    arch=args.gpu_arch,
                    batch_size=args.gpu_batch,
                    workers=args.gpu_workers,
                    device="cuda",
                    precision="bf16",
                    decode=decode,
                    compile=mode,
                )
            )
            print(line(results[-1]), flush=True)
            if args.json:  # after every setting, so that a later failure keeps these
                args.json.write_text(
                    json.dumps({"machine": machine, "results": results}, indent=2) + "\n"
                )
        if not args.skip_forward:
            results.append(forward_only(args.gpu_arch, args.gpu_batch))
            print(line(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
