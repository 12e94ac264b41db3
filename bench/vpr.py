"""Benchmark: the exact search of ``urbanvis eval vpr`` against a bare faiss IndexFlatIP.

A database of ``--n`` random unit vectors of width ``--dim`` (float32) and ``--queries``
random unit queries; :func:`urbanvis.evaluate.vpr.nearest` finds each query's 25 nearest
(blockwise: each block of the database is normalised into its own copy, searched with
faiss's inner-product kernel and merged, so no full copy of the database is made). Then,
in the same run, a bare ``faiss.IndexFlatIP`` is built (``add`` copies the database) and
searched for the same 25. Printed: the machine, the peak RSS of the process after the
urbanvis search (the database, the queries and the search; the goal is under twice the
database's size) and both search times (goal: urbanvis within 1.5x of faiss), and how many
neighbour lists agree.

Full size (the goal of issue 11): 1,000,000 x 768 (3.07 GB) and 10,000 queries::

    python bench/vpr.py --n 1000000 --queries 10000

Reduced size, for a small shared machine::

    python bench/vpr.py --n 200000 --queries 10000
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np


def unit_vectors(n: int, dim: int, seed: int, chunk: int = 65536) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        block = out[start : start + chunk]
        block[...] = rng.standard_normal(block.shape, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.platform()}; {cpu}; {os.cpu_count()} logical cores; {mem:.1f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database vectors")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=25)
    parser.add_argument("--block-rows", type=int, default=131072)
    args = parser.parse_args()

    import faiss

    from urbanvis.evaluate.vpr import nearest

    print(f"machine: {machine()}")
    print(f"faiss {faiss.__version__}, numpy {np.__version__}, {faiss.omp_get_max_threads()} "
          "OpenMP threads")  # fmt: skip
    print(f"peak RSS before the data (interpreter, numpy, faiss): {peak_rss_gb():.2f} GB")
    db = unit_vectors(args.n, args.dim, seed=0)
    q = unit_vectors(args.queries, args.dim, seed=1)
    db_gb = db.nbytes / 1e9
    print(f"database {args.n:,} x {args.dim} float32 = {db_gb:.2f} GB; {args.queries:,} queries")

    t = time.perf_counter()
    _, ours = nearest(db, q, args.k, backend="faiss", block_rows=args.block_rows)
    t_ours = time.perf_counter() - t
    rss = peak_rss_gb()
    print(f"urbanvis nearest: {t_ours:.1f} s; peak RSS {rss:.2f} GB = {rss / db_gb:.2f}x the "
          f"database ({'under' if rss < 2 * db_gb else 'OVER'} the 2x goal)")  # fmt: skip

    t = time.perf_counter()
    index = faiss.IndexFlatIP(args.dim)
    index.add(db)
    _, bare = index.search(q, args.k)
    t_bare = time.perf_counter() - t
    print(f"bare faiss IndexFlatIP (add + search): {t_bare:.1f} s; peak RSS now "
          f"{peak_rss_gb():.2f} GB")  # fmt: skip
    ratio = t_ours / t_bare
    print(
        f"urbanvis / faiss time: {ratio:.2f}x ({'within' if ratio <= 1.5 else 'OVER'} the "
        f"1.5x goal); identical neighbour lists: {np.mean(np.all(ours == bare, axis=1)):.4%}"
    )


if __name__ == "__main__":
    main()
