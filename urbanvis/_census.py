"""What the Census Bureau modules share: levels, GEOIDs, the download cache and its error.

:mod:`urbanvis.tiger` (zone polygons) and :mod:`urbanvis.acs` (indicators) both import
from here; :class:`CensusServiceError`, :data:`LEVELS` and :func:`cache_root` are public
through them.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from ._errors import InputError, OfflineError

CACHE_ENV = "URBANVIS_CACHE"
LEVELS: tuple[str, ...] = ("blockgroup", "tract")
GEOID_DIGITS = {"blockgroup": 12, "tract": 11}
"""Digits of a GEOID: state (2) + county (3) + tract (6) [+ block group (1)]."""


class CensusServiceError(OfflineError, InputError):
    """A Census Bureau server could not be reached or gave an unusable answer.

    Both an :class:`~urbanvis._errors.OfflineError` (a service is down or unreachable) and
    an :class:`~urbanvis._errors.InputError` (pass local files or a mirror instead).
    """


def cache_root() -> Path:
    """urbanvis's download cache: ``$URBANVIS_CACHE`` or ``~/.cache/urbanvis``."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/urbanvis").expanduser()


def service_url(given: str | None, env: str, default: str, param: str) -> str:
    """The server's base URL: ``given``, else ``$env``, else ``default``; ``param`` names the
    stage keyword that sets it, for the error message."""
    url = (given or os.environ.get(env) or default).strip().rstrip("/")
    if urlsplit(url).scheme not in ("http", "https", "file"):
        raise InputError(f"`{param}` / {env} must be an http(s):// or file:// URL")
    return url


def check_year(year: int, param: str) -> int:
    """``year`` as an int between 2000 and 2100; ``param`` names it in the error message."""
    try:
        value = int(year)
    except (TypeError, ValueError):
        raise InputError(f"`{param}` must be a year such as 2022, got {year!r}") from None
    if not 2000 <= value <= 2100:
        raise InputError(f"`{param}` must be a year such as 2022, got {year!r}")
    return value


def make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"cannot create the download cache {path} ({exc.strerror or exc}); set "
            f"{CACHE_ENV} to a writable folder"
        ) from exc
