"""Street-view providers, one per module, behind one small interface (:mod:`.base`).

- ``simulator``: the offline synthetic city (:mod:`.simulator`).
- ``folder``: your own geotagged images or a manifest (:mod:`.folder`).
- ``gsv``: Google's Street View Static API, newest panorama per point (:mod:`.gsv`).
- ``gsv-historical``: every dated panorama near each point, via ``streetlevel``
  (:mod:`.historical`).
- ``mapillary``: Mapillary's Graph API v4 (:mod:`.mapillary`).

The web providers share one async engine (:mod:`._web`): concurrency, rate limit, retries,
request budget, endpoint override and secret redaction.
"""

from __future__ import annotations

from typing import Any

PROVIDERS = ("simulator", "folder", "gsv", "gsv-historical", "mapillary")
"""Providers this urbanvis can harvest from."""

WEB_OPTIONS = ("concurrency", "rate", "retries", "timeout", "max_requests", "endpoint")


def _pick(options: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: options[k] for k in names if options.get(k) is not None}


def _web_settings(options: dict[str, Any]):
    from ._webhttp import WebSettings

    return WebSettings(**_pick(options, WEB_OPTIONS))


def _years(value: Any, default: int, option: str) -> int:
    from .._errors import InputError

    if value is None:
        return default
    text = str(value).strip()
    if not (text.isdigit() and len(text) == 4):
        raise InputError(f"{option} for the simulator is a year like 2015, got {value!r}")
    return int(text)


def provider_from_name(name: str, **options: Any):
    """A provider instance by name, from CLI-style options (None means "the default").

    An unknown name gets the list of known ones (and a guess).
    """
    import difflib

    from .._errors import InputError

    if name == "simulator":
        from .simulator import SimulatorProvider

        picked = _pick(
            options, ("seed", "captures_per_point", "headings", "absolute_headings", "size",
                      "workers"),
        )  # fmt: skip
        picked["since"] = _years(options.get("since"), 2015, "--since")
        picked["until"] = _years(options.get("until"), 2024, "--until")
        return SimulatorProvider(**picked)
    if name == "folder":
        from .folder import FolderProvider

        source = options.get("images")
        if not source:
            raise InputError(
                "the folder provider needs --images PATH: a folder of geotagged images or a "
                "CSV/GeoPackage manifest with path, lon, lat"
            )
        return FolderProvider(source, **_pick(options, ("radius", "since", "until")))
    if name == "gsv":
        from .gsv import GsvConfig, GsvProvider

        config = GsvConfig(
            **_pick(options, ("headings", "absolute_headings", "size", "fov", "pitch",
                              "radius", "source")),
        )  # fmt: skip
        return GsvProvider(
            config,
            _web_settings(options),
            key_file=options.get("key_file"),
            secret_file=options.get("secret_file"),
            metadata_only=bool(options.get("metadata_only")),
        )
    if name == "gsv-historical":
        from .historical import HistoricalConfig, HistoricalProvider

        config = HistoricalConfig(
            **_pick(options, ("headings", "absolute_headings", "size", "fov", "pitch",
                              "radius", "since", "until")),
        )  # fmt: skip
        return HistoricalProvider(
            config,
            _web_settings(options),
            key_file=options.get("key_file"),
            secret_file=options.get("secret_file"),
            metadata_only=bool(options.get("metadata_only")),
        )
    if name == "mapillary":
        from .mapillary import MapillaryConfig, MapillaryProvider

        config = MapillaryConfig(
            **_pick(options, ("headings", "absolute_headings", "radius", "since", "until",
                              "captures_per_point")),
        )  # fmt: skip
        return MapillaryProvider(
            config,
            _web_settings(options),
            token_file=options.get("key_file"),
            metadata_only=bool(options.get("metadata_only")),
        )
    close = difflib.get_close_matches(name, PROVIDERS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise InputError(f"unknown provider {name!r}; {hint}choose one of {', '.join(PROVIDERS)}")
