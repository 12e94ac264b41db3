"""Benchmark: ``embed_captures`` end to end, images/s from JPEG files to vectors on disk.

A study is built in a temporary folder with ``n`` street views rendered by the synthetic
city (``--source`` px JPEGs, quality 90) and a captures layer pointing at them; then
:func:`urbanvis.embed.embed_captures` runs with a random-init encoder (the weights do not
change the speed): decoding, bicubic resize and centre crop in DataLoader workers, the
forward pass, part files written per batch, the merge, the PCA and the layer write. The
figure printed is images/s of the loop (``EmbedSummary.images_per_second``) and of the
whole call including start-up, merge and layer write.

cpu
    vit_tiny_patch16_224 at 224 px, fp32 (the default).
cuda
    the same code path on a GPU (``--device cuda --arch vit_base_patch16_224``); workers
    decode with PIL, the batch is pinned and copied; not measured yet.

Examples
--------
python bench/embed.py --device cpu --n 256 --batch 32 --workers 2
python bench/embed.py --device cuda --arch vit_base_patch16_224 --n 4096 --batch 256 --workers 14
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def build_study(root: Path, n: int, size: int):
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    from PIL import Image

    from urbanvis.simulate import City, render
    from urbanvis.study import open_study

    study = open_study(root)
    folder = study.images / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    city = City(seed=0)
    rng = np.random.default_rng(0)
    for i in range(n):
        x, y = rng.uniform(0, 3000, 2)
        image = render(city, x, y, float(rng.uniform(0, 360)), "2020-06-01T12:00", size=size)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=90)
        (folder / f"{i}.jpg").write_bytes(buf.getvalue())
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


def main() -> None:
    import torch

    from urbanvis.embed import embed_captures

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--arch", default="vit_tiny_patch16_224")
    parser.add_argument("--n", type=int, default=256, help="images")
    parser.add_argument("--source", type=int, default=320, help="side of the JPEG files")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    root = Path(tempfile.mkdtemp(prefix="urbanvis-bench-embed-"))
    study = build_study(root / "study", args.n, args.source)
    started = time.perf_counter()
    summary = embed_captures(
        study,
        model=args.arch,
        random_init=True,
        batch_size=args.batch,
        workers=args.workers,
        device=args.device,
    )
    total = time.perf_counter() - started
    out = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            **({"gpu": torch.cuda.get_device_name()} if args.device == "cuda" else {}),
        },
        "config": vars(args) | {"json": None},
        "images": summary.embedded,
        "loop_images_per_second": round(summary.images_per_second, 2),
        "call_images_per_second": round(summary.embedded / total, 2),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
