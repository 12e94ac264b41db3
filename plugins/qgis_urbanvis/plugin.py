"""The plugin object QGIS loads: registers the urbanvis Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication


class UrbanvisPlugin:
    def __init__(self, iface=None) -> None:
        self.iface = iface
        self.provider = None

    def initProcessing(self) -> None:  # noqa: N802 - called by qgis_process
        from .provider import UrbanvisProvider

        self.provider = UrbanvisProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
