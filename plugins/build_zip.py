"""Build the zip QGIS installs (Plugins > Manage and Install Plugins > Install from ZIP).

    python plugins/build_zip.py [--out dist/]

The zip holds the folder qgis_urbanvis/ (tests left out) with metadata.txt's version set
to the urbanvis package's. The library itself is not in the zip: install it into QGIS's
Python or a venv the plugin points at (see plugins/README.md).
"""

from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "qgis_urbanvis"


def package_version() -> str:
    text = (HERE.parent / "urbanvis" / "_version.py").read_text()
    found = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    if found:
        return found.group(1)
    from urbanvis import __version__

    return __version__


def build(out: Path) -> Path:
    version = package_version()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"qgis_urbanvis-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(PLUGIN.rglob("*")):
            rel = path.relative_to(PLUGIN)
            if path.is_dir() or rel.parts[0] == "test" or "__pycache__" in rel.parts:
                continue
            name = f"qgis_urbanvis/{rel.as_posix()}"
            if rel.as_posix() == "metadata.txt":
                text = re.sub(r"(?m)^version=.*$", f"version={version}", path.read_text())
                zf.writestr(name, text)
            else:
                zf.write(path, name)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "dist")
    print(build(parser.parse_args().out))


if __name__ == "__main__":
    main()
