"""Benchmark: writing and reading a study's points layer, through Arrow and feature by feature.

The points come from ``bench/sampling.py``'s tiled Helsinki network (``--points`` of them,
sampled every 15 m with ``points_from_network``), so they are real sampled points in
EPSG:4326 with urbanvis's columns. Each round writes the layer into a fresh study with
``Study.write_layer`` and reads it back with ``Study.read_layer``, once with Arrow batches
(what urbanvis does where GDAL is 3.8 or later) and once feature by feature, alternating.
The best of ``--repeat`` rounds is printed for each.

Examples
--------
::

    .venv/bin/python bench/gpkg_io.py                   # 2 million points
    .venv/bin/python bench/gpkg_io.py --points 7000000  # Los Angeles-sized
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=2_000_000, help="points (default 2 M)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds, best kept (default 2)")
    args = parser.parse_args(argv)
    if args.points < 1 or args.repeat < 1:
        parser.error("--points and --repeat must be at least 1")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pyogrio
    from sampling import copies_needed, helsinki_projected, load_average, tile

    from urbanvis import study as study_module
    from urbanvis.sampling import points_from_network

    if not study_module._arrow_io():
        print(f"GDAL {pyogrio.__gdal_version_string__} cannot write Arrow batches (needs 3.8)")
        return 2
    helsinki = helsinki_projected()
    edges = tile(helsinki, copies_needed(helsinki, None, args.points)).to_crs(4326)
    points = points_from_network(edges)
    print(
        f"{len(points):,} points; pyogrio {pyogrio.__version__}, GDAL "
        f"{pyogrio.__gdal_version_string__}; load {load_average()} at the start"
    )
    best = {True: [math.inf, math.inf], False: [math.inf, math.inf]}
    real = study_module._arrow_io
    try:
        for _ in range(args.repeat):
            for arrow in (True, False):
                study_module._arrow_io = lambda arrow=arrow: arrow  # type: ignore[misc]
                with tempfile.TemporaryDirectory() as folder:
                    study = study_module.open_study(folder)
                    start = time.perf_counter()
                    study.write_layer("points", points)
                    wrote = time.perf_counter() - start
                    start = time.perf_counter()
                    back = study.read_layer("points")
                    read = time.perf_counter() - start
                    if len(back) != len(points):
                        raise SystemExit(f"read {len(back):,} rows, wrote {len(points):,}")
                    del back
                best[arrow] = [min(best[arrow][0], wrote), min(best[arrow][1], read)]
    finally:
        study_module._arrow_io = real
    print(f"load {load_average()} at the end\n")
    print("| path | write s | read s |")
    print("|---|---:|---:|")
    for arrow, label in ((True, "Arrow batches"), (False, "feature by feature")):
        print(f"| {label} | {best[arrow][0]:.2f} | {best[arrow][1]:.2f} |")
    print(
        f"\nArrow: writes {best[False][0] / best[True][0]:.2f}x, "
        f"reads {best[False][1] / best[True][1]:.2f}x as fast"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
