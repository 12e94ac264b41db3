"""Harvesting with the simulator provider: schema, images, determinism, resume after kill -9."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from PIL import Image

from urbanvis.providers.base import CAPTURE_COLUMNS

from .conftest import invoke, run_cli
from .test_cli import assert_one_line_error


@pytest.fixture
def town_study(tmp_path, town_osm) -> Path:
    study = tmp_path / "town"
    result = run_cli("sample", "--study", str(study), "--osm", str(town_osm))
    assert result.returncode == 0, result.stderr
    return study


def harvest(study: Path, *extra: str):
    return run_cli(
        "harvest",
        "--study",
        str(study),
        "--captures-per-point",
        "2",
        "--headings",
        "0,180",
        "--size",
        "64",
        *extra,
    )


def read_captures(study: Path):
    return pyogrio.read_dataframe(study / "study.gpkg", layer="captures")


def image_files(study: Path) -> set[str]:
    root = study / "images" / "simulator"
    return {p.relative_to(study).as_posix() for p in root.rglob("*") if p.is_file()}


def test_harvest_writes_the_captures_schema_and_valid_images(town_study):
    result = harvest(town_study)
    assert result.returncode == 0, result.stderr
    caps = read_captures(town_study)
    assert caps.crs.to_epsg() == 4326
    assert list(caps.columns[: len(CAPTURE_COLUMNS)]) == CAPTURE_COLUMNS
    assert len(caps) == 50 * 2 * 2
    assert caps["capture_id"].is_unique
    assert set(caps["status"]) == {"ok"} and set(caps["provider"]) == {"simulator"}
    assert (caps["width"] == 64).all() and (caps["height"] == 64).all()
    assert image_files(town_study) == set(caps["image_path"])
    for row in caps.iloc[::17].itertuples():
        data = (town_study / row.image_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        with Image.open(town_study / row.image_path) as im:
            assert im.size == (64, 64)
    # headings are offsets from the road bearing of the point
    points = pyogrio.read_dataframe(town_study / "study.gpkg", layer="points")
    merged = caps.merge(points[["point_id", "bearing"]], on="point_id")
    offset = (merged["heading"] - merged["bearing"]) % 360
    assert set(np.round(offset, 2)) <= {0.0, 180.0}
    # temporal pairs: each (point, heading) seen at two different dates
    dates = caps.groupby(["point_id", "heading"])["captured_at"].nunique()
    assert (dates == 2).all()


def test_rerun_fetches_nothing_and_same_seed_same_bytes(town_study, tmp_path, town_osm):
    assert harvest(town_study).returncode == 0
    before = read_captures(town_study)
    stamps = {p: (town_study / p).stat().st_mtime_ns for p in before["image_path"]}
    again = harvest(town_study)
    assert again.returncode == 0 and "0 points harvested" in again.stdout
    after = read_captures(town_study)
    assert len(after) == len(before)
    assert stamps == {p: (town_study / p).stat().st_mtime_ns for p in after["image_path"]}
    # another study of the same place with the same seed: byte-identical images
    other = tmp_path / "other"
    assert run_cli("sample", "--study", str(other), "--osm", str(town_osm)).returncode == 0
    assert harvest(other).returncode == 0
    assert dict(zip(before.capture_id, before.sha256, strict=True)) == dict(
        zip(read_captures(other).capture_id, read_captures(other).sha256, strict=True)
    )
    # another seed: another city
    third = tmp_path / "third"
    assert run_cli("sample", "--study", str(third), "--osm", str(town_osm)).returncode == 0
    assert harvest(third, "--seed", "1").returncode == 0
    assert not set(before.sha256) & set(read_captures(third).sha256)


@pytest.mark.slow
def test_resume_after_sigkill_at_random_moments(town_study):
    exe = Path(sys.executable).with_name("urbanvis")
    args = [
        str(exe),
        "-q",
        "harvest",
        "--study",
        str(town_study),
        "--captures-per-point",
        "3",
        "--headings",
        "0,90,180,270",
        "--size",
        "224",
        "--batch-size",
        "2",
    ]
    rng = np.random.default_rng(11)
    folder = town_study / "images" / "simulator"

    def written() -> int:
        return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0

    kills = 0
    for _ in range(20):
        before = written()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait until this run has written images (however slow the start-up), then kill it
        # at a random moment a little later: mid-batch, mid-commit or between batches
        deadline = time.monotonic() + 120
        while proc.poll() is None and written() <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if kills >= 5:
            break
    assert kills >= 5
    final = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    caps = read_captures(town_study)
    assert len(caps) == 50 * 3 * 4  # every capture exactly once
    assert caps["capture_id"].is_unique
    assert image_files(town_study) == set(caps["image_path"])  # no orphans, none missing
    for row in caps.itertuples():
        assert hashlib.sha256((town_study / row.image_path).read_bytes()).hexdigest() == row.sha256
    leftovers = [p for p in (town_study / "images").rglob(".*.tmp")]
    assert leftovers == []


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--captures-per-point", "0"], ["at least 1", "--captures-per-point"]),
        (["--since", "2024", "--until", "2015"], ["--since 2024 is after --until 2015"]),
        (["--provider", "simulater"], ["unknown provider", "simulator"]),
        (["--headings", "north"], ["degrees"]),
    ],
)
def test_bad_harvest_input(town_study, args, needles):
    before = image_files(town_study) if (town_study / "images" / "simulator").exists() else set()
    result = invoke("harvest", "--study", str(town_study), *args)
    assert_one_line_error(result, *needles)
    assert not (town_study / "images" / "simulator").exists() or image_files(town_study) == before
    assert "captures" not in {r[0] for r in pyogrio.list_layers(town_study / "study.gpkg")}


def test_unknown_option_is_a_usage_error(town_study):
    result = invoke("harvest", "--study", str(town_study), "--colour", "red")
    assert result.returncode == 2 and "No such option" in result.stderr


def test_harvest_needs_a_study_with_points(tmp_path):
    result = invoke("harvest", "--study", str(tmp_path / "empty"))
    assert_one_line_error(result, "not a study", "urbanvis sample")


def test_changed_settings_are_refused_not_mixed(town_study):
    assert harvest(town_study, "--limit", "5").returncode == 0
    result = run_cli(
        "harvest",
        "--study",
        str(town_study),
        "--captures-per-point",
        "3",
        "--headings",
        "0,180",
        "--size",
        "64",
    )
    assert_one_line_error(result, "captures_per_point=2", "another --study")
    assert len(read_captures(town_study)) == 5 * 2 * 2
    assert harvest(town_study, "--limit", "5").returncode == 0  # same settings: resumes
    assert len(read_captures(town_study)) == 10 * 2 * 2
