"""QGIS Processing plugin of urbanvis: the pipeline's stages as Processing algorithms.

Each algorithm converts its parameters and calls one function of :mod:`urbanvis.stages`
(torch stages through the ``urbanvis`` command when QGIS's Python has no torch).
"""


def classFactory(iface):  # noqa: N802 - QGIS's name
    from .plugin import UrbanvisPlugin

    return UrbanvisPlugin(iface)
