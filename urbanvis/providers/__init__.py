"""Street-view providers, one per module, behind one small interface (:mod:`.base`).

- ``simulator``: the offline synthetic city (:mod:`.simulator`).
- ``folder``: your own geotagged images or a manifest (:mod:`.folder`).
- ``gsv``: Google's Street View Static API, newest panorama per point (:mod:`.gsv`).
- ``gsv-historical``: every dated panorama near each point, via ``streetlevel``
  (:mod:`.historical`).
- ``mapillary``: Mapillary's Graph API v4 (:mod:`.mapillary`).

Providers are registered by name with their options (:mod:`._registry`, the built-in ones
in :mod:`._builtin`) and made with :func:`create_provider`; importing this package imports
no provider module. The web providers share one async engine (:mod:`._web`, over the HTTP
client of :mod:`._webhttp`): concurrency, rate limit, retries, request budget, endpoint
override and secret redaction.
"""

from __future__ import annotations

from ._builtin import register_builtins
from ._registry import (
    OptionSpec,
    ProviderEntry,
    create_provider,
    list_providers,
    option_specs,
    provider_entry,
    register_option,
    register_provider,
)

__all__ = [
    "PROVIDERS",
    "WEB_OPTIONS",
    "OptionSpec",
    "ProviderEntry",
    "create_provider",
    "list_providers",
    "option_specs",
    "provider_entry",
    "provider_from_name",
    "register_option",
    "register_provider",
]

register_builtins()

PROVIDERS = list_providers()
"""The built-in providers (:func:`list_providers` also lists any registered later)."""

WEB_OPTIONS = ("concurrency", "rate", "retries", "timeout", "max_requests", "endpoint")
"""The options of :class:`~urbanvis.providers._webhttp.WebSettings` a web provider takes."""

provider_from_name = create_provider
"""The former name of :func:`create_provider`, kept for callers of earlier versions."""
