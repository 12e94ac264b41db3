from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from urbanvis.demo import helsinki_pbf

from .data import osm


@pytest.fixture(scope="session")
def helsinki_edges():
    from urbanvis.network import edges_from_osm_file

    return edges_from_osm_file(helsinki_pbf(), network="drive")


@pytest.fixture(scope="session")
def helsinki_points(helsinki_edges):
    from urbanvis.sampling import points_from_network

    return points_from_network(helsinki_edges, spacing=15.0)


@pytest.fixture
def town_osm(tmp_path: Path) -> Path:
    return osm.town(tmp_path / "town.osm")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``urbanvis`` command as a user would."""
    exe = Path(sys.executable).with_name("urbanvis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANVIS_")}
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )
