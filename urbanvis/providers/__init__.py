"""Street-view providers, one per module, behind one small interface (:mod:`.base`)."""

from __future__ import annotations

PROVIDERS = ("simulator",)
"""Providers this urbanvis can harvest from. The web providers (gsv, gsv-historical,
mapillary) and folder come with the harvest issue."""


def provider_from_name(name: str, **settings):
    """A provider instance by name; an unknown name gets the list of known ones."""
    import difflib

    from .._errors import InputError

    if name == "simulator":
        from .simulator import SimulatorProvider

        return SimulatorProvider(**settings)
    close = difflib.get_close_matches(name, PROVIDERS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise InputError(f"unknown provider {name!r}; {hint}choose one of {', '.join(PROVIDERS)}")
