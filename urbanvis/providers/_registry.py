"""The provider registry: each provider's name, the module that makes it, and its options.

Registration is lazy, as in timm's model registry but without importing anything: a
provider is registered by name with the dotted path of its factory (``module:function``)
and the options it takes are declared as :class:`OptionSpec` records, so that listing
providers and their options (for ``--help``, a GUI form, a check) imports no provider.
:func:`create_provider` imports the factory's module only when that provider is made.

Every option is one keyword for every provider it applies to; a front end reads the specs
to offer them (the CLI's :func:`urbanvis_cli._provider_options.provider_options`).
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .._errors import InputError

if TYPE_CHECKING:
    from .base import Provider


@dataclass(frozen=True)
class OptionSpec:
    """One provider option, as every front end offers it.

    Parameters
    ----------
    name
        The Python keyword (``max_requests``); the CLI's flag is ``--max-requests``.
    type
        ``str``, ``int``, ``float`` or ``bool`` (an on/off flag); ``tuple``: a list of
        numbers (degrees), written ``0,90,180,270`` on a command line.
    default
        The value a front end passes when the user gives none. None means "the provider's
        own default" (see ``provider_defaults``).
    help
        One line for ``--help`` and tooltips, with the providers' own defaults in brackets.
    providers
        The providers the option applies to; the others ignore it.
    choices
        The values allowed, when only a few are.
    range
        Inclusive ``(low, high)`` bounds of a number, either None when open. Providers may
        narrow it (the simulator renders images up to 2048 pixels, Street View up to 640).
    provider_defaults
        ``(provider, value)`` pairs: what each provider uses when the option is None.
    show_default
        Whether ``--help`` shows ``default``.
    """

    name: str
    type: type
    default: Any = None
    help: str = ""
    providers: tuple[str, ...] = ()
    choices: tuple[Any, ...] | None = None
    range: tuple[float | None, float | None] | None = None
    provider_defaults: tuple[tuple[str, Any], ...] = ()
    show_default: bool = False

    def applies_to(self, provider: str) -> bool:
        """Whether ``provider`` takes this option."""
        return provider in self.providers

    def default_for(self, provider: str) -> Any:
        """The value ``provider`` uses when the option is not given."""
        if self.default is not None:
            return self.default
        return dict(self.provider_defaults).get(provider)


@dataclass(frozen=True)
class ProviderEntry:
    """A registered provider: its name, its factory's ``module:function`` path, a summary."""

    name: str
    factory: str
    summary: str = ""

    def load(self) -> Callable[..., Provider]:
        """The factory, its module imported now."""
        module, _, function = self.factory.partition(":")
        return getattr(importlib.import_module(module), function)


_PROVIDERS: dict[str, ProviderEntry] = {}
_OPTIONS: dict[str, OptionSpec] = {}


def register_option(spec: OptionSpec) -> OptionSpec:
    """Declare an option (or, under a name already declared, extend its ``providers``)."""
    known = _OPTIONS.get(spec.name)
    if known is not None and known != spec:
        if (known.type, known.default) != (spec.type, spec.default):
            raise ValueError(f"option {spec.name!r} is declared already with another type")
        merged = tuple(dict.fromkeys(known.providers + spec.providers))
        defaults = tuple(dict(known.provider_defaults + spec.provider_defaults).items())
        spec = replace(known, providers=merged, provider_defaults=defaults)
    _OPTIONS[spec.name] = spec
    return spec


def register_provider(
    name: str, factory: str, *, summary: str = "", options: Iterable[OptionSpec] = ()
) -> ProviderEntry:
    """Register a provider by name, lazily: nothing is imported until it is created.

    Parameters
    ----------
    name
        What ``--provider`` takes and the ``provider`` column holds.
    factory
        ``"package.module:function"``: called with the provider's options (keywords, None
        meaning "the default") and returning a :class:`~urbanvis.providers.base.Provider`.
    summary
        A few words for listings.
    options
        Options of this provider not declared yet (``providers`` naming it); options
        shared with other providers are declared once, with :func:`register_option`.
    """
    if ":" not in factory:
        raise ValueError(f"factory {factory!r} must be 'module:function'")
    if name in _PROVIDERS and _PROVIDERS[name].factory != factory:
        raise ValueError(f"provider {name!r} is registered already ({_PROVIDERS[name].factory})")
    for spec in options:
        register_option(spec)
    entry = ProviderEntry(name, factory, summary)
    _PROVIDERS[name] = entry
    return entry


def list_providers() -> tuple[str, ...]:
    """The registered providers' names, in registration order."""
    return tuple(_PROVIDERS)


def provider_entry(name: str) -> ProviderEntry:
    """The registration of ``name``; an unknown name gets the known ones (and a guess)."""
    entry = _PROVIDERS.get(name)
    if entry is None:
        names = list_providers()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise InputError(f"unknown provider {name!r}; {hint}choose one of {', '.join(names)}")
    return entry


def option_specs(provider: str | None = None) -> tuple[OptionSpec, ...]:
    """Every declared option in declaration order, or those ``provider`` takes."""
    specs = tuple(_OPTIONS.values())
    if provider is None:
        return specs
    provider_entry(provider)  # an unknown name is refused
    return tuple(s for s in specs if s.applies_to(provider))


def create_provider(name: str, **options: Any) -> Provider:
    """A provider instance by name, from its options (None means "the default").

    A front end may pass all of its options to any provider: those other providers take
    are dropped while they hold their default (or None), and refused otherwise, since the
    user asked for something this provider would not do (see :func:`check_options`); a
    keyword no provider takes is refused. An unknown name gets the list of known ones (and
    a guess).
    """
    entry = provider_entry(name)
    unknown = [k for k in options if k not in _OPTIONS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(_OPTIONS), n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise InputError(
            f"{unknown[0]!r} is not an option of any provider; {hint}the {name} provider "
            f"takes {', '.join(s.name for s in option_specs(name))}"
        )
    check_options(name, options)
    mine = {k: v for k, v in options.items() if _OPTIONS[k].applies_to(name)}
    return entry.load()(**mine)


def check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse, before a provider is made, an option it would ignore or a value out of range.

    An option given for a provider that does not take it (``since`` for gsv, which returns
    only the newest panorama) would be dropped without a word, so it is refused unless it
    is the option's default (front ends pass those for every provider). Numbers must lie in
    the spec's ``range``; headings are compass degrees in [0, 360).
    """
    for key, value in options.items():
        spec = _OPTIONS[key]
        if value is None:
            continue
        if not spec.applies_to(name):
            if _same(value, spec.default):
                continue
            takers = [p for p in list_providers() if spec.applies_to(p)]
            raise InputError(
                f"`{key}` does not apply to the {name} provider (only to {', '.join(takers)}); "
                f"drop it, or choose one of those providers"
            )
        if spec.type is tuple:
            check_headings(value, param=key)
        elif spec.range is not None and spec.type in (int, float):
            _check_range(key, value, spec.range)


def check_headings(values: Any, *, param: str = "headings") -> tuple[float, ...]:
    """Headings as a tuple of finite degrees in [0, 360), at least one."""
    try:
        headings = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"`{param}` must be degrees, e.g. 0,90,180,270; got {values!r}") from None
    bad = [h for h in headings if not (math.isfinite(h) and 0 <= h < 360)]
    if not headings or bad:
        got = f"{bad[0]:g}" if bad else "none"
        raise InputError(
            f"`{param}` must be degrees from 0 up to (not including) 360, e.g. 0,90,180,270; "
            f"got {got}"
        )
    return headings


def _check_range(key: str, value: Any, bounds: tuple[float | None, float | None]) -> None:
    low, high = bounds
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"`{key}` must be a number, got {value!r}") from None
    inside = math.isfinite(number) and (low is None or number >= low)
    inside = inside and (high is None or number <= high)
    if not inside:
        if high is None:
            want = f"at least {low:g}"
        elif low is None:
            want = f"at most {high:g}"
        else:
            want = f"within {low:g}..{high:g}"
        raise InputError(f"`{key}` must be {want}, got {value!r}")


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        try:
            return tuple(float(v) for v in value) == tuple(float(v) for v in default)
        except (TypeError, ValueError):
            return False
    return bool(value == default)


def pick(options: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The ``names`` of ``options`` that are given (not None), for a factory."""
    return {k: options[k] for k in names if options.get(k) is not None}
