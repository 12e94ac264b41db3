"""Benchmark: MoCo v3 pretraining throughput (pairs/s), peak memory and MFU.

Two configurations, as the issue asks:

cpu
    ViT-Tiny at 112 px, fp32, on the CPU: pairs/s and peak RSS of urbanvis's training step,
    and in the same run a plain straightforward MoCo v3 step written the way the reference
    script is (a Python loop over parameters for the momentum update, einsum logits,
    ``nn.CrossEntropyLoss``), on the same model, batch and inputs; the ratio is reported.
cuda
    ViT-B/16 at 224 px in bf16 autocast on a CUDA GPU: pairs/s of the training step (eager
    and, with ``--compile``, ``torch.compile``), FLOPs per step counted by
    ``torch.utils.flop_counter``, MFU against the card's bf16 peak measured here with a
    large matmul, peak CUDA memory, and the throughput of the data pipeline (JPEG decode and
    the two augmentations in DataLoader workers) that would feed it.

Inputs of the step are random tensors already on the device, so the step's figures measure
the model and optimizer alone; the data pipeline is measured separately on real JPEGs
rendered by the synthetic city.

Examples
--------
python bench/pretrain.py --device cpu --steps 20
python bench/pretrain.py --device cuda --batch 256 --steps 30 --compile
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


def step_urbanvis(model, optimizer, x1, x2, m, amp):
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = model(x1, x2, m)
    loss.backward()
    optimizer.step()
    return loss


class PlainMoCo(nn.Module):
    """The reference's forward, written straightforwardly (the baseline of the ratio)."""

    def __init__(self, moco):
        super().__init__()
        self.base_encoder = moco.base_encoder
        self.momentum_encoder = moco.momentum_encoder
        self.predictor = moco.predictor
        self.T = 0.2
        self.criterion = nn.CrossEntropyLoss()

    def ctr(self, q, k):
        q = nn.functional.normalize(q, dim=1)
        k = nn.functional.normalize(k, dim=1)
        logits = torch.einsum("nc,mc->nm", [q, k]) / self.T
        labels = torch.arange(q.shape[0], dtype=torch.long, device=q.device)
        return self.criterion(logits, labels) * (2 * self.T)

    def forward(self, x1, x2, m):
        q1 = self.predictor(self.base_encoder(x1))
        q2 = self.predictor(self.base_encoder(x2))
        with torch.no_grad():
            for pb, pm in zip(
                self.base_encoder.parameters(), self.momentum_encoder.parameters(), strict=True
            ):
                pm.data = pm.data * m + pb.data * (1.0 - m)
            k1 = self.momentum_encoder(x1)
            k2 = self.momentum_encoder(x2)
        return self.ctr(q1, k2) + self.ctr(q2, k1)


def build(arch, size, device, mlp_dim=4096):
    from urbanvis.engine.encoders import create_encoder
    from urbanvis.engine.moco import MoCo

    torch.manual_seed(0)
    model = MoCo(create_encoder(arch, img_size=size), mlp_dim=mlp_dim).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    return model, optimizer


def time_steps(fn, steps, warmup, device):
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def flops_per_step(model, optimizer, x1, x2, amp):
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step_urbanvis(model, optimizer, x1, x2, 0.99, amp)
    return counter.get_total_flops()


def bf16_peak(device, n=8192, reps=20):
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def jpeg_folder(size, n=256):
    """``n`` distinct street views rendered by the synthetic city, as JPEG files."""
    import numpy as np
    from PIL import Image

    from urbanvis.simulate import City, render

    root = Path(tempfile.mkdtemp(prefix="urbanvis-bench-"))
    city = City(seed=0)
    rng = np.random.default_rng(0)
    for i in range(n):
        x, y = rng.uniform(0, 3000, 2)
        image = render(city, x, y, float(rng.uniform(0, 360)), "2020-06-01T12:00", size=size)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=90)
        (root / f"{i}.jpg").write_bytes(buf.getvalue())
    return root, [f"{i}.jpg" for i in range(n)]


def pair_table(names, n):
    import pandas as pd

    return pd.DataFrame(
        {
            "image_a": [names[i % len(names)] for i in range(n)],
            "image_b": [names[(i * 7 + 3) % len(names)] for i in range(n)],
        }
    )


def loader_rate(size, workers, batch, n_images=2048, seconds=20.0):
    """Pairs/s of JPEG decode + the two augmentations with PIL in DataLoader workers."""
    from urbanvis.engine.data import PairDataset
    from urbanvis.engine.transforms import view_transforms

    root, names = jpeg_folder(size)
    v1, v2 = view_transforms(size)
    loader = torch.utils.data.DataLoader(
        PairDataset(root, pair_table(names, n_images), v1, v2),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    seen, start = 0, None
    while True:
        for x1, _ in loader:
            if start is None:
                start = time.perf_counter()  # after the workers' start-up
                continue
            seen += x1.shape[0]
            if time.perf_counter() - start > seconds:
                return seen / (time.perf_counter() - start)


def end_to_end(step_model, optimizer, size, batch, workers, steps, amp, device):
    """Pairs/s of training fed by the on-device pipeline: workers read JPEG bytes, the
    batch is decoded with nvJPEG and augmented on a side stream in a thread, two batches
    ahead of the step."""
    from urbanvis.engine.data import PairBytesDataset, collate_bytes
    from urbanvis.engine.gpu_views import DeviceViews

    root, names = jpeg_folder(size)
    loader = torch.utils.data.DataLoader(
        PairBytesDataset(root, pair_table(names, batch * (steps + 6))),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate_bytes,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    seen, start = 0, None
    for k, (x1, x2) in enumerate(DeviceViews(loader, size, device, lambda k: k)):
        if k == 5:  # warm-up done (workers started, kernels ready)
            torch.cuda.synchronize()
            start = time.perf_counter()
        step_urbanvis(step_model, optimizer, x1, x2, 0.99, amp)
        if start is not None:
            seen += batch
    torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="pairs per step")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--loader-workers", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args()
    device = torch.device(args.device)
    out: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        }
    }
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
        arch, size, batch, amp = "vit_tiny_patch16_224", 112, args.batch or 64, False
    else:
        out["machine"]["gpu"] = torch.cuda.get_device_name()
        torch.backends.cuda.matmul.allow_tf32 = True
        arch, size, batch, amp = "vit_base_patch16_224", 224, args.batch or 256, True
    model, optimizer = build(arch, size, device)
    x1 = torch.randn(batch, 3, size, size, device=device)
    x2 = torch.randn(batch, 3, size, size, device=device)
    out["config"] = {
        "arch": arch,
        "image_size": size,
        "batch": batch,
        "precision": "bf16" if amp else "fp32",
        "steps": args.steps,
    }

    def save() -> None:  # after every stage, so that a later failure keeps these figures
        print(json.dumps(out, indent=2), flush=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))

    seconds = time_steps(
        lambda: step_urbanvis(model, optimizer, x1, x2, 0.99, amp), args.steps, 3, device
    )
    out["urbanvis_pairs_per_s"] = batch / seconds
    flops = flops_per_step(model, optimizer, x1, x2, amp)
    out["flops_per_pair"] = flops / batch
    save()
    if device.type == "cpu":
        plain = PlainMoCo(model)
        plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-4, weight_decay=0.1)
        p_seconds = time_steps(
            lambda: step_urbanvis(plain, plain_opt, x1, x2, 0.99, amp), args.steps, 3, device
        )
        out["plain_pairs_per_s"] = batch / p_seconds
        out["ratio_urbanvis_over_plain"] = p_seconds / seconds
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        workers = args.loader_workers if args.loader_workers is not None else 1
    else:
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
        peak = bf16_peak(device)
        out["bf16_peak_tflops_measured"] = peak / 1e12
        out["mfu"] = flops / seconds / peak
        save()
        if args.compile:
            try:
                compiled = torch.compile(model)
                c_seconds = time_steps(
                    lambda: step_urbanvis(compiled, optimizer, x1, x2, 0.99, amp),
                    args.steps,
                    5,
                    device,
                )
                out["compiled_pairs_per_s"] = batch / c_seconds
                out["compiled_mfu"] = flops / c_seconds / peak
            except Exception as exc:  # report, keep the other figures
                out["compiled_error"] = f"{type(exc).__name__}: {exc}"[:500]
            save()
        workers = (
            args.loader_workers
            if args.loader_workers is not None
            else max((os.cpu_count() or 2) - 2, 1)
        )
        try:
            rate = end_to_end(model, optimizer, size, batch, workers, args.steps, amp, device)
            out["end_to_end_gpu_augment_pairs_per_s"] = rate
            out["end_to_end_share_of_synthetic"] = rate / out["urbanvis_pairs_per_s"]
            if "compiled_pairs_per_s" in out:
                rate = end_to_end(
                    compiled, optimizer, size, batch, workers, args.steps, amp, device
                )
                out["end_to_end_compiled_pairs_per_s"] = rate
                out["end_to_end_compiled_share_of_synthetic"] = rate / out["compiled_pairs_per_s"]
        except Exception as exc:
            out["end_to_end_error"] = f"{type(exc).__name__}: {exc}"[:500]
        save()
    out["loader_workers"] = workers
    out["loader_pairs_per_s"] = loader_rate(size, workers, min(batch, 64))
    save()


if __name__ == "__main__":
    main()
