"""GeoParquet export at scale: time and peak memory of ``urbanvis export`` beside reading all.

Builds a study whose ``embeddings`` layer and ``vectors.parquet`` hold ``--rows`` random
``--dim``-d float32 vectors (no images: the export reads only the layers and the vectors),
then, each in a fresh process, (a) exports it with :func:`urbanvis.export.export_embeddings`
and (b) loads it all with :func:`urbanvis.vectors.read_embeddings`, the reference that holds
every vector at once. Prints wall time, the process's peak RSS above its start (after the
imports, from /proc/self/status VmHWM) and pyarrow's peak allocation, plus the machine.

    .venv/bin/python bench/export.py [--rows 200000] [--dim 768] [--chunk-rows 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import geopandas, pyarrow as pa, pyarrow.parquet, pyogrio, shapely  # before `start`: imports
from urbanvis.study import open_study
from urbanvis.export import export_embeddings
from urbanvis.vectors import read_embeddings
def hwm():  # peak RSS (KiB) of this process image: unlike ru_maxrss, exec resets it
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
study, what, chunk = open_study(sys.argv[1], create=False), sys.argv[2], int(sys.argv[3])
start = hwm()
t0 = time.perf_counter()
if what == "export":
    done = export_embeddings(study, path=sys.argv[4], chunk_rows=chunk)
    rows = done["rows"]
else:
    layer, matrix = read_embeddings(study)
    rows = len(matrix)
seconds = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"what": what, "rows": rows, "seconds": seconds,
                  "rss_start_mib": start / 1024, "rss_growth_mib": (peak - start) / 1024,
                  "arrow_peak_mib": pa.default_memory_pool().max_memory() / 2**20}))
"""


def make_study(root: Path, rows: int, dim: int) -> Path:
    import geopandas as gpd
    import numpy as np

    from urbanvis.study import open_study
    from urbanvis.vectors import LAYER, _write_parquet, model_folder, write_meta

    st = open_study(root / "study")
    rng = np.random.default_rng(0)
    ids = [f"c{i}" for i in range(rows)]
    model = "random-init:vit_base_patch16_224:0"
    frame = gpd.GeoDataFrame(
        {
            "capture_id": ids,
            "point_id": np.arange(rows) // 4,
            "model": model,
            "pc1": rng.normal(size=rows),
            "pc2": rng.normal(size=rows),
            "pc3": rng.normal(size=rows),
        },
        geometry=gpd.points_from_xy(24.85 + rng.random(rows) * 0.2, 60.14 + rng.random(rows) * 0.1),
        crs=4326,
    )
    st.write_layer(LAYER, frame)
    folder = model_folder(st, model)
    write_meta(folder, {"model": model, "dim": dim})
    matrix = rng.standard_normal((rows, dim), dtype=np.float32)
    _write_parquet(folder / "vectors.parquet", ids, matrix)
    return st.root


def child(study: Path, what: str, chunk: int, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(study), what, str(chunk), str(out)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--chunk-rows", type=int, default=8192)
    args = parser.parse_args()
    import geopandas
    import pyarrow

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        study = make_study(Path(tmp), args.rows, args.dim)
        print(
            f"built a study of {args.rows:,} x {args.dim} vectors "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        out = Path(tmp) / "e.parquet"
        results = [child(study, "export", args.chunk_rows, out), child(study, "read_all", 0, out)]
        size = out.stat().st_size
    vectors_mib = args.rows * args.dim * 4 / 2**20
    print(f"vectors: {vectors_mib:,.0f} MiB of float32; GeoParquet file {size / 2**20:,.0f} MiB")
    for r in results:
        print(
            f"{r['what']:>9}: {r['seconds']:6.2f} s, {r['rows'] / r['seconds']:>9,.0f} rows/s, "
            f"peak RSS +{r['rss_growth_mib']:,.0f} MiB (start {r['rss_start_mib']:,.0f} MiB), "
            f"pyarrow peak {r['arrow_peak_mib']:,.0f} MiB"
        )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} logical cores, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; Python "
        f"{platform.python_version()}, pyarrow {pyarrow.__version__}, "
        f"geopandas {geopandas.__version__}"
    )


if __name__ == "__main__":
    main()
