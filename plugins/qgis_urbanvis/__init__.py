"""QGIS Processing plugin of urbanvis: the pipeline's stages as Processing algorithms.

Each algorithm converts its parameters and calls one function of :mod:`urbanvis.stages`
(torch stages through the ``urbanvis`` command when QGIS's Python has no torch).

urbanvis may be installed in QGIS's own Python, or in a virtual environment made with
``python3 -m venv --system-site-packages`` on the Python QGIS uses: point the plugin at
it with the ``URBANVIS_VENV`` environment variable or the ``urbanvis/venv`` setting
(``QgsSettings().setValue("urbanvis/venv", "/path/to/venv")``); its site-packages are
put first on ``sys.path`` when the plugin loads.
"""

import glob
import os
import site
import sys


def venv_path() -> str:
    """The venv holding urbanvis (URBANVIS_VENV, else the urbanvis/venv setting), or ''."""
    path = os.environ.get("URBANVIS_VENV", "")
    if not path:
        try:
            from qgis.core import QgsSettings

            path = QgsSettings().value("urbanvis/venv", "") or ""
        except Exception:  # outside QGIS
            path = ""
    return path


def add_venv() -> None:
    """Put the configured venv's site-packages first on sys.path (its .pth files too)."""
    path = venv_path()
    if not path:
        return
    before = list(sys.path)
    for found in glob.glob(os.path.join(path, "lib", "python3*", "site-packages")):
        site.addsitedir(found)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + [p for p in sys.path if p not in added]


add_venv()


def classFactory(iface):  # noqa: N802 - QGIS's name
    from .plugin import UrbanvisPlugin

    return UrbanvisPlugin(iface)
