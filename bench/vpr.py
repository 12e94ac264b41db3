"""Benchmark: the search of ``urbanvis eval vpr`` against a bare faiss IndexFlatIP search.

The goal of issue 11: on a 1,000,000 x 768 database and 10,000 queries, exact, peak memory
under twice the database's size and time within 1.5x of a bare faiss ``IndexFlatIP``
search measured in the same run.

The data are written once to ``.npy`` files: ``--n`` random unit vectors of width ``--dim``
(float32) and ``--queries`` queries, each a noisy copy of one database vector (its one
positive; about 0.22 cosine similarity to it). Each measurement then runs in a fresh
Python process that imports numpy, faiss and urbanvis, loads the two arrays and searches:

``urbanvis``
    what ``eval vpr`` does once the descriptors exist: :func:`urbanvis.evaluate.vpr.nearest`
    (k = 25, the default backend and block size) and :func:`~urbanvis.evaluate.vpr.recall_at_k`.
``faiss``
    ``faiss.IndexFlatIP``: ``add`` (which copies the database into the index), then
    ``search`` (k = 25). Its time is the search alone; ``add`` is printed beside it.

Peak memory is the process's ``VmHWM`` (peak resident set) read from ``/proc/self/status``
at the end, so it counts everything: the interpreter with numpy, faiss and urbanvis
imported (printed as the baseline), the database, the queries and the search. The
database's size is ``n x dim x 4`` bytes. The encoder part of ``eval vpr`` (images to
descriptors) is not measured: it does not depend on the search.

Issue 11's size (about 4 minutes per search on a 2-core machine)::

    nice .venv/bin/python bench/vpr.py --n 1000000 --queries 10000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def vm_hwm_bytes() -> int:
    """Peak resident set of this process so far (Linux ``VmHWM``)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.platform()}; {cpu}; {os.cpu_count()} logical cores; {mem:.1f} GiB"


def write_data(folder: Path, n: int, dim: int, queries: int, seed: int) -> None:
    """Database, queries and each query's positive, written in chunks."""
    rng = np.random.default_rng(seed)
    db = np.lib.format.open_memmap(folder / "database.npy", "w+", np.float32, (n, dim))
    for start in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        db[start : start + len(block)] = block
    positives = rng.integers(0, n, queries)
    noise = rng.standard_normal((queries, dim), dtype=np.float32)
    q = db[positives] + noise * np.float32(4.5 / np.sqrt(dim))  # noise norm about 4.5
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    db.flush()
    del db
    np.save(folder / "queries.npy", q)
    np.save(folder / "positives.npy", positives)


def worker(name: str, folder: Path, k: int) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    import faiss

    from urbanvis.evaluate.vpr import nearest, recall_at_k

    baseline = vm_hwm_bytes()
    db = np.load(folder / "database.npy")
    q = np.load(folder / "queries.npy")
    positives = np.load(folder / "positives.npy")
    loaded = vm_hwm_bytes()
    out: dict = {"threads": faiss.omp_get_max_threads(), "faiss": faiss.__version__}
    if name == "faiss":
        t = time.perf_counter()
        index = faiss.IndexFlatIP(db.shape[1])
        index.add(db)
        out["add_s"] = time.perf_counter() - t
        t, cpu = time.perf_counter(), cpu_seconds()
        _, ids = index.search(q, k)
    else:
        t, cpu = time.perf_counter(), cpu_seconds()
        _, ids = nearest(db, q, k)
        out["recall"] = recall_at_k(ids, list(positives[:, None]))
    out["seconds"] = time.perf_counter() - t
    out["cpu"] = cpu_seconds() - cpu
    out["load"] = os.getloadavg()[0]
    out.update(baseline=baseline, loaded=loaded, peak=vm_hwm_bytes())
    np.save(folder / f"{name}_ids.npy", ids)
    print(json.dumps(out))


def measure(name: str, folder: Path, k: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--data", str(folder), "--k", str(k)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database vectors")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None, help="folder for the data files")
    parser.add_argument("--first", choices=["faiss", "urbanvis"], default="faiss",
                        help="which search runs first")  # fmt: skip
    parser.add_argument("--worker", choices=["urbanvis", "faiss"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.k)
        return

    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    print(f"date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {machine()}")
    print(f"command: {command} (niceness {os.nice(0)})")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    db_bytes = args.n * args.dim * 4
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="vprbench-") as tmp:
        folder = Path(tmp)
        write_data(folder, args.n, args.dim, args.queries, args.seed)
        second = "urbanvis" if args.first == "faiss" else "faiss"
        done = {name: measure(name, folder, args.k) for name in (args.first, second)}
        bare, ours = done["faiss"], done["urbanvis"]
        same = np.all(np.load(folder / "urbanvis_ids.npy") == np.load(folder / "faiss_ids.npy"), 1)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"faiss {bare['faiss']}, numpy {np.__version__}, {bare['threads']} OpenMP threads")
    print(f"n: {args.n:,}; d: {args.dim}; queries: {args.queries:,}; k: {args.k}; exact")
    print(f"DB size: {db_bytes / 1e9:.3f} GB (n x d x 4 bytes)")
    print(f"bare faiss IndexFlatIP search: {bare['seconds']:.1f} s, {bare['cpu']:.1f} CPU s "
          f"(add before it: {bare['add_s']:.1f} s; 1-min load average at its end "
          f"{bare['load']:.2f})")  # fmt: skip
    print(f"urbanvis nearest + recall_at_k: {ours['seconds']:.1f} s, {ours['cpu']:.1f} CPU s "
          f"(1-min load average at its end {ours['load']:.2f}); {args.first} first")  # fmt: skip
    ratio = ours["seconds"] / bare["seconds"]
    print(f"time ratio: {ratio:.2f}x ({'within' if ratio <= 1.5 else 'OVER'} the 1.5x goal); "
          f"CPU time ratio {ours['cpu'] / bare['cpu']:.2f}x")  # fmt: skip
    for name, m in (("urbanvis", ours), ("bare faiss", bare)):
        print(
            f"peak RSS {name}: {m['peak'] / 1e9:.3f} GB = {m['peak'] / db_bytes:.2f}x DB "
            f"(baseline after imports {m['baseline'] / 1e9:.3f} GB; after loading the data "
            f"{m['loaded'] / 1e9:.3f} GB; search adds {(m['peak'] - m['loaded']) / 1e9:.3f} GB)"
        )
    mem = ours["peak"] / db_bytes
    print(f"memory ratio: {mem:.2f}x ({'under' if mem < 2 else 'OVER'} the 2x goal)")
    recall = ", ".join(f"R@{k} {v:.2f}" for k, v in ours["recall"].items())
    print(f"identical neighbour lists: {same.mean():.4%}; {recall}")


if __name__ == "__main__":
    main()
