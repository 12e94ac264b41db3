"""The package as installed: console script, no top-level `cli`, a light `import urbanvis`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "urbanvis").rglob("__init__.py")
    }
    assert found <= listed, found - listed
    assert "urbanvis_cli" in listed


@pytest.mark.slow
def test_wheel_installs_urbanvis_cli_not_a_top_level_cli(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("urbanvis-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "cli" not in tops
    assert {"urbanvis", "urbanvis_cli"} <= tops
    assert "urbanvis/py.typed" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "urbanvis = urbanvis_cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_import_urbanvis_is_light():
    code = (
        "import sys, urbanvis; heavy = [m for m in ('torch', 'timm', 'qgis', 'geopandas', "
        "'osmnx', 'pyrosm') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_submodules_load_on_first_use():
    code = "import urbanvis; print(urbanvis.sampling.__name__, sorted(dir(urbanvis))[:2])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("urbanvis.sampling")
