"""Web maps at scale: a 200,000-point layer as HTML, opened in headless Chromium.

Prints the HTML size, the time to build and write it, and the time Chromium takes from
navigation until all points are on the map (the page records it), plus the machine.
Target: HTML < 50 MB, opens in < 10 s. Needs /usr/bin/chromium (Debian's chromium).

    .venv/bin/python bench/maps.py [--points 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np

from urbanvis import maps

CHROMIUM = "/usr/bin/chromium"


def layer(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    """n captures over a Helsinki-sized area, with dates, headings and pc1..pc3."""
    rng = np.random.default_rng(seed)
    years = rng.integers(2008, 2025, n)
    months = rng.integers(1, 13, n)
    return gpd.GeoDataFrame(
        {
            "capture_id": [f"c{i}" for i in range(n)],
            "point_id": np.arange(n) // 4,
            "captured_at": [f"{y}-{m:02d}" for y, m in zip(years, months, strict=True)],
            "heading": rng.uniform(0, 360, n).round(1),
            "pc1": rng.normal(size=n),
            "pc2": rng.normal(size=n),
            "pc3": rng.normal(size=n),
        },
        geometry=gpd.points_from_xy(24.85 + rng.random(n) * 0.2, 60.14 + rng.random(n) * 0.1),
        crs=4326,
    )


def open_time(html: Path, work: Path) -> tuple[float, float, dict]:
    """(page-reported ms until drawn, wall seconds of the whole browser run, counts)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--disable-sync", f"--user-data-dir={work / 'profile'}", "--window-size=1200,800",
            "--dump-dom", html.as_uri(),
        ],  # fmt: skip
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    wall = time.perf_counter() - t0
    match = re.search(r'data-counts="([^"]*)" data-ms="(\d+)"', out)
    if not match:
        raise SystemExit("the page did not report drawing its layers")
    counts = json.loads(match.group(1).replace("&quot;", '"'))
    return int(match.group(2)) / 1000, wall, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    args = parser.parse_args()
    frame = layer(args.points)
    with tempfile.TemporaryDirectory(prefix="urbanvis-bench-maps-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        m = maps.map_from_layer(frame, tiles="none", thumbnails="none")
        html = maps.write_map(m, work / "big.html")
        build = time.perf_counter() - t0
        size = html.stat().st_size / 1e6
        drawn, wall, counts = open_time(html, work)
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout
    cpu = platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = names[0] if names else cpu
    print(f"machine: {cpu}, {os.cpu_count()} cores")
    print(f"browser: {version.strip()}")
    print(f"points: {args.points:,}; layers drawn: {counts}")
    print(f"HTML: {size:.1f} MB (target < 50 MB), built and written in {build:.1f} s")
    print(f"browser: all points on the map {drawn:.1f} s after navigation (target < 10 s)")
    print(f"whole headless run (start, load, draw, dump, exit): {wall:.1f} s")


if __name__ == "__main__":
    main()
