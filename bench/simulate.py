"""Benchmark: images per second and memory of the synthetic street-view city.

Renders street-level images with :func:`urbanvis.simulate.render` on one core and reports
the rate and the resident memory (RSS) while rendering many of them.

What is rendered
----------------
Every image is a fresh place, heading and capture time drawn from a seeded generator:
places uniform over the city's 5 km x 5 km extent, headings uniform, times uniform over
2021 between 06:00 and 22:00 (so night, dawn, every weather and season occur). Each
render returns a new ``(H, W, 3)`` uint8 array that is dropped at once, as a harvest loop
writing files would. Nothing is cached between images except the per-city tables (cloud
tile, window hashes, latent-field waves), built on the first call.

Figures
-------
rate
    ``--images`` renders timed with ``time.perf_counter``, after ``--warmup`` renders,
    for the full dynamic layer and again with ``dynamic=False`` (static layer only),
    best of ``--repeat``.
memory
    RSS from ``/proc/self/status`` every ``--every`` images over ``--memory-images``
    renders. The slope of RSS against the image count (least squares over the second half
    of the samples, after allocator warm-up) is extrapolated to 100,000 images.

``--threads 1`` (the default) sets the OpenMP/OpenBLAS/MKL thread counts to 1 before numpy
is imported and pins the process to one CPU.

Examples
--------
::

    .venv/bin/python bench/simulate.py
    .venv/bin/python bench/simulate.py --memory-images 20000 --size 224
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--images", type=int, default=1000, help="renders per timed run")
    p.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--memory-images", type=int, default=5000, help="renders watched for RSS")
    p.add_argument("--every", type=int, default=250, help="RSS sample interval (images)")
    p.add_argument("--threads", type=int, default=1, help="CPU cores to use")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def limit_threads(n: int) -> None:
    """One core: thread counts for numpy's libraries (before numpy is imported) and affinity."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(n)
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[:n])


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numpy as np

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (
        f"{platform.platform()}; CPU {cpu}, {os.cpu_count()} logical cores, {cores} used; "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )


def captures(n: int, seed: int):
    """``n`` (x, y, heading, time) tuples drawn from a seeded generator."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 5000, n), rng.uniform(0, 5000, n)
    heading = rng.uniform(0, 360, n)
    day = rng.integers(0, 365, n)
    minute = rng.integers(6 * 60, 22 * 60, n)
    base = np.datetime64("2021-01-01T00:00")
    when = (base + day.astype("timedelta64[D]") + minute.astype("timedelta64[m]")).astype(str)
    return list(zip(x.tolist(), y.tolist(), heading.tolist(), when.tolist(), strict=True))


def timed(city, items, **options) -> float:
    from urbanvis.simulate import render

    gc.collect()
    t0 = time.perf_counter()
    for x, y, h, w in items:
        render(city, x, y, h, w, **options)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit_threads(args.threads)
    import numpy as np

    from urbanvis.simulate import City, render

    city = City(seed=args.seed)
    print(f"machine: {machine()}")
    print(f"image: {args.size}x{args.size}, city seed {args.seed}")
    for x, y, h, w in captures(args.warmup, args.seed + 1):
        render(city, x, y, h, w, size=args.size)

    items = captures(args.images, args.seed + 2)
    for label, options in (("dynamic layer on", {}), ("dynamic layer off", {"dynamic": False})):
        best = min(timed(city, items, size=args.size, **options) for _ in range(args.repeat))
        print(
            f"rate, {label}: {args.images / best:,.1f} images/s "
            f"({1000 * best / args.images:.2f} ms/image, best of {args.repeat} x {args.images})"
        )

    rss0 = rss_mib()
    counts, samples = [0], [rss0]
    t0 = time.perf_counter()
    for i, (x, y, h, w) in enumerate(captures(args.memory_images, args.seed + 3), start=1):
        render(city, x, y, h, w, size=args.size)
        if i % args.every == 0:
            counts.append(i)
            samples.append(rss_mib())
    elapsed = time.perf_counter() - t0
    half = len(counts) // 2
    slope = float(np.polyfit(counts[half:], samples[half:], 1)[0]) if len(counts) > 3 else 0.0
    print(
        f"memory: {args.memory_images:,} images in {elapsed:.1f} s "
        f"({args.memory_images / elapsed:,.1f} images/s); RSS {samples[0]:.1f} MiB before, "
        f"{samples[-1]:.1f} MiB after, peak sample {max(samples):.1f} MiB"
    )
    print(
        f"memory: RSS slope over the second half {1000 * slope:+.3f} MiB per 1,000 images; "
        f"extrapolated to 100,000 images: {samples[-1] + slope * (100_000 - counts[-1]):.1f} MiB"
    )
    print(
        "memory: RSS samples (images: MiB): "
        + ", ".join(f"{c}: {s:.1f}" for c, s in zip(counts, samples, strict=True))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
