"""Benchmark: peak memory of ``embed``'s final step (merge + PCA + layer) at millions of vectors.

For each ``--n``, builds a study under ``--root`` (not measured): a captures layer of ``n``
points and ``n`` random ``--dim`` float32 vectors in part files of ``--part-rows``, as
``urbanvis embed`` leaves them before its final step. Then runs, in a child process, what
``embed`` (:func:`urbanvis.engine.inference.embed_captures`) runs besides the model, with
the same functions: at the start of a fresh run, :func:`urbanvis.vectors.pending_captures`
(no vector done yet) and the distinct image files of the pending captures
(:class:`urbanvis._imagefiles.ImageFiles`), which it holds through inference and drops
before :func:`urbanvis.vectors.finalise`. The child reports its resident memory while
holding the files, its peak before ``finalise``, the peak during ``finalise`` (``VmHWM``,
reset through ``/proc/self/clear_refs``) and the time; the whole process's peak is the
larger of the two peaks. Each size's folder is deleted before the next.

``--check`` first compares ``finalise`` with the in-memory path (every vector read at once,
:func:`urbanvis.vectors.principal_components`) on that many vectors: merged vectors equal,
PCA scores equal up to sign.

    nice -n 10 .venv/bin/python bench/embed_scale.py --n 1000000 2000000 5000000 --check 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

CRS = "EPSG:32635"
MODEL = "bench@000000000000"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1_000_000, 2_000_000, 5_000_000])
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--part-rows", type=int, default=4096, help="vectors per part file")
    p.add_argument("--root", type=Path, default=Path("/work/tmp-bench-scale"))
    p.add_argument("--check", type=int, default=0, help="vectors for the equality check")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build(root: Path, n: int, dim: int, part_rows: int, seed: int = 0) -> Path:
    """A study with ``n`` ok captures and their vectors in part files (not measured)."""
    import geopandas as gpd
    import numpy as np
    import pyogrio
    import shapely

    from urbanvis.study import open_study
    from urbanvis.vectors import model_folder, write_meta, write_part

    study = open_study(root)
    rng = np.random.default_rng(seed)
    ids = np.char.add("c", np.char.zfill(np.arange(n).astype(str), 8)).astype(object)
    captures = gpd.GeoDataFrame(
        {
            "capture_id": ids,
            "point_id": np.arange(n, dtype=np.int64) // 4,
            "image_path": np.char.add("images/", ids.astype(str)).astype(object),
            "status": "ok",
        },
        geometry=shapely.points(
            385_000 + rng.uniform(0, 30_000, n), 6_670_000 + rng.uniform(0, 30_000, n)
        ),
        crs=CRS,
    )
    pyogrio.write_dataframe(captures, study.gpkg, layer="captures", driver="GPKG", use_arrow=True)
    del captures
    folder = model_folder(study, MODEL)
    write_meta(folder, {"model": MODEL, "dim": dim})
    scale = np.linspace(3.0, 0.5, dim).astype(np.float32)
    for seq, start in enumerate(range(0, n, part_rows)):
        block = ids[start : start + part_rows]
        vectors = rng.standard_normal((len(block), dim), dtype=np.float32) * scale + 1.0
        write_part(folder, 0, seq, list(block), vectors)
    return root


def child(root: Path) -> None:
    """In a fresh process: what ``embed`` runs besides the model, with its memory and time."""
    from urbanvis._imagefiles import ImageFiles
    from urbanvis.study import open_study
    from urbanvis.vectors import finalise, model_folder, pending_captures

    study = open_study(root, create=False)
    start = status_kb("VmRSS")
    # a fresh run's start: no vector yet (a model folder not written), every capture pending
    ids, paths, total, _ = pending_captures(study, model_folder(study, "fresh@000000000000"))
    files = ImageFiles.of(ids, paths).shard(0, 1)
    del ids, paths
    held = status_kb("VmRSS")
    assert len(files) == total
    del files  # as embed_captures does before finalise
    before = status_kb("VmHWM")
    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
        fh.write("5")
    t0 = time.perf_counter()
    finalise(study, model_folder(study, MODEL), MODEL)
    seconds = time.perf_counter() - t0
    print(json.dumps({"start_kb": start, "held_kb": held, "before_kb": before,
                      "peak_kb": status_kb("VmHWM"), "seconds": seconds}))  # fmt: skip


def status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def run_child(root: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(root)], capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def check(root: Path, n: int, dim: int, part_rows: int) -> dict:
    """``finalise`` against the in-memory path on ``n`` vectors."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from urbanvis.study import open_study
    from urbanvis.vectors import (
        finalise,
        model_folder,
        principal_components,
        read_embedding_rows,
    )

    build(root, n, dim, part_rows, seed=1)
    study = open_study(root, create=False)
    folder = model_folder(study, MODEL)
    parts = sorted((folder / "parts").glob("part-*.parquet"))
    frame = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    ids = frame["capture_id"].to_numpy()
    matrix = np.stack(frame["vector"].to_numpy()).astype(np.float32)
    del frame
    reference = principal_components(matrix)
    finalise(study, folder, MODEL, chunk_rows=4096)
    merged = pq.read_table(folder / "vectors.parquet")
    same_vectors = merged.column("capture_id").to_pylist() == list(ids) and np.array_equal(
        np.stack(merged.column("vector").to_numpy(False)), matrix
    )
    rows = read_embedding_rows(study)
    ours = rows[["pc1", "pc2", "pc3"]].to_numpy()
    assert rows["capture_id"].tolist() == list(ids)
    sign = np.sign((ours * reference).sum(axis=0))
    worst = float(np.abs(ours - sign * reference).max())
    relative = worst / float(np.abs(reference).max())
    shutil.rmtree(root)
    return {"n": n, "same_vectors": same_vectors, "signs": sign.tolist(), "max_abs": worst,
            "max_rel": relative}  # fmt: skip


def machine() -> str:
    import numpy
    import pyarrow
    import pyogrio

    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return (
        f"{platform.platform()}, {os.cpu_count()} logical cores, {mem:.1f} GiB; Python "
        f"{platform.python_version()}, numpy {numpy.__version__}, pyarrow {pyarrow.__version__}, "
        f"pyogrio {pyogrio.__version__} (GDAL {pyogrio.__gdal_version_string__})"
    )


def main(args: argparse.Namespace) -> int:
    if args.child is not None:
        child(args.child)
        return 0
    print(machine(), flush=True)
    args.root.mkdir(parents=True, exist_ok=True)
    try:
        if args.check:
            result = check(args.root / "check", args.check, args.dim, args.part_rows)
            print(f"check at {result['n']:,} x {args.dim}: {json.dumps(result)}", flush=True)
        for n in args.n:
            where = args.root / f"n{n}"
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            build(where, n, args.dim, args.part_rows)
            setup = time.perf_counter() - t0
            got = run_child(where)
            gb = 1024**2
            whole = max(got["before_kb"], got["peak_kb"])
            print(
                f"n={n:,} dim={args.dim}: vectors {n * args.dim * 4 / 1e9:.2f} GB; setup "
                f"{setup:.0f} s; finalise {got['seconds']:.0f} s; RSS at start "
                f"{got['start_kb'] / gb:.3f} GiB, holding the image files "
                f"{got['held_kb'] / gb:.3f} GiB, peak before finalise "
                f"{got['before_kb'] / gb:.3f} GiB, peak in finalise {got['peak_kb'] / gb:.3f} "
                f"GiB; whole-process peak {whole / gb:.3f} GiB; load average "
                f"{load:.2f} -> {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            shutil.rmtree(where)
    finally:
        shutil.rmtree(args.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
