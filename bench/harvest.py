"""Benchmark the web harvest engine against the local Street View stand-in.

The stand-in (tests/fakes/streetview.py) runs as its own process with random transient faults
(429/500/503, OVER_QUERY_LIMIT, slow answers, truncated bodies, dropped connections); the
harvest runs in this process through the real engine and the real GeoPackage commits.
Reported: requests/s (wall), CPU seconds of this process per 1,000 requests (all its
threads), and a check that no capture was lost or duplicated.

    python bench/harvest.py                     # 2,000 points x 4 headings, 64 in flight
    python bench/harvest.py --rate 600              # what one core buys at a set rate
    python bench/harvest.py --points 500 --fault-rate 0
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from urbanvis.harvest import harvest  # noqa: E402
from urbanvis.providers._web import WebSettings  # noqa: E402
from urbanvis.providers.gsv import GsvConfig, GsvProvider  # noqa: E402
from urbanvis.study import open_study  # noqa: E402

KEY = "bench-key"


def start_server(fault_rate: float, seed: int, size: int) -> tuple[subprocess.Popen, str]:
    args = [sys.executable, str(ROOT / "tests" / "fakes" / "streetview.py"), "--port", "0",
            "--fault-rate", str(fault_rate), "--seed", str(seed), "--keys", KEY,
            "--slow-seconds", "0.5"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"the stand-in did not start: {url!r}")
    return proc, url


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times() -> tuple[float, float]:
    """(all, steal) jiffies of the machine since boot, from the first line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return float(sum(fields[:8])), float(fields[7]) if len(fields) > 7 else 0.0


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (longest mount point of /proc/mounts)."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fstype = line.split()[:3]
        inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
        if inside and len(mount) > len(best):
            best, kind = mount, fstype
    return f"{kind} ({best})"


def machine_line() -> str:
    """What the figures depend on: CPU model, Python build, the HTTP stack and its C parts."""
    import importlib.metadata as md
    import platform

    import aiohttp.http_parser as parser

    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown",
    )  # fmt: skip
    names = ("aiohttp", "multidict", "yarl", "numpy", "pyogrio", "geopandas", "pillow")
    versions = ", ".join(f"{n} {md.version(n)}" for n in names)
    c_parser = parser.HttpResponseParser.__module__.endswith("_http_parser")
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), python {sys.version.split()[0]} "
        f"({sys.executable}), {versions}, pyogrio GDAL {pyogrio.__gdal_version_string__}, "
        f"aiohttp C parser {'yes' if c_parser else 'no'}"
    )


def make_points(study, n: int, step: float) -> None:
    # rows of points 7 m apart in the covered part of the fake world around Helsinki
    lat0, lon0 = 60.17, 24.94
    per_row = 200
    rows = math.ceil(n / per_row)
    i = np.arange(n)
    lat = lat0 + (i // per_row) * (40.0 / 111_320.0)
    lon = lon0 + (i % per_row) * step / (111_320.0 * math.cos(math.radians(lat0)))
    del rows
    points = gpd.GeoDataFrame(
        {"point_id": i.astype(np.int64), "bearing": np.full(n, 90.0)},
        geometry=gpd.points_from_xy(lon, lat),
        crs="EPSG:4326",
    )
    study.write_layer("points", points)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--headings", default="0,90,180,270")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--fault-rate", type=float, default=0.05)
    ap.add_argument("--size", type=int, default=64, help="image side the stand-in serves")
    ap.add_argument("--step", type=float, default=15.0, help="metres between points")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rate", type=float, default=0, help="requests/s cap, 0: none")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None,
                    help="where the study goes (default: the temp folder); the filesystem "
                         "matters: each image is written, fsynced and journaled")  # fmt: skip
    args = ap.parse_args()
    headings = tuple(float(h) for h in args.headings.split(","))

    proc, url = start_server(args.fault_rate, args.seed, args.size)
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            where = filesystem(Path(tmp).resolve())
            study = open_study(Path(tmp) / "bench")
            make_points(study, args.points, args.step)
            provider = GsvProvider(
                GsvConfig(size=args.size, headings=headings),
                WebSettings(
                    endpoint=url,
                    concurrency=args.concurrency,
                    rate=args.rate,
                    retries=6,
                    timeout=10,
                    backoff=0.05,
                ),  # fmt: skip
                key=KEY,
            )
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            server0 = process_cpu(proc.pid)
            machine0, load0 = cpu_times(), os.getloadavg()[0]
            t0 = time.perf_counter()
            summary = harvest(study, provider, batch_size=args.batch_size)
            wall = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            server = process_cpu(proc.pid) - server0
            machine1, load1 = cpu_times(), os.getloadavg()[0]
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            requests = summary.stats["requests"]
            caps = pyogrio.read_dataframe(study.gpkg, layer="captures")
            expected = args.points * len(headings)
            lost = expected - caps["capture_id"].nunique()
            dup = len(caps) - caps["capture_id"].nunique()
            ok = caps[caps["status"] == "ok"].drop_duplicates("image_path")
            bad = sum(
                hashlib.sha256((study.root / p).read_bytes()).hexdigest() != s
                for p, s in zip(ok["image_path"], ok["sha256"], strict=True)
            )
            files = sum(1 for p in (study.root / "images").rglob("*") if p.is_file())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        f"{args.points:,} points x {len(headings)} headings, concurrency {args.concurrency}, "
        f"rate cap {args.rate or 'none'}, "
        f"{args.fault_rate:.0%} faults: {requests:,} requests in {wall:.2f} s = "
        f"{requests / wall:,.0f} requests/s; CPU {cpu:.2f} s = {cpu / wall:.2f} cores, "
        f"{1000 * cpu / requests:.2f} CPU s per 1,000 requests; retries "
        f"{summary.stats['retries']:,}; server CPU {server / wall:.2f} cores; "
        f"counts {summary.counts}; lost {lost}, duplicated "
        f"{dup}, bad sha256 {bad}, files {files:,} for {len(ok):,} images"
    )
    total, steal = (b - a for a, b in zip(machine0, machine1, strict=True))
    print(
        f"during the run: load average {load0:.2f} -> {load1:.2f}, steal "
        f"{100 * steal / max(total, 1):.1f}% of the machine's CPU time; study on {where}"
    )
    print(machine_line())


if __name__ == "__main__":
    main()
