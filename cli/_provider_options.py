"""The providers' options as click options, made from the provider registry.

:func:`provider_options` adds one option per :class:`urbanvis.providers.OptionSpec`, in
the registry's order, with the spec's help text and default. The command receives each
under its Python keyword, ready for :func:`urbanvis.providers.create_provider`:
``headings`` as a tuple of degrees, ``source`` as ``"outdoor"`` or ``"default"``::

    @click.command()
    @click.option("--provider", default="simulator")
    @provider_options
    def harvest(provider, limit, **options):
        source = create_provider(provider, **options)

:func:`split_provider_options` separates them from a command's other keywords.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from urbanvis.providers import OptionSpec, option_specs

F = TypeVar("F", bound=Callable[..., Any])

SWITCHES: dict[str, tuple[str, dict[bool, str]]] = {
    # options whose command line is an on/off pair rather than --name VALUE
    "source": ("--outdoor-only/--any-imagery", {True: "outdoor", False: "default"}),
}
"""Keyword -> (click declaration, value of each switch position); :func:`cli.main.flag_name`
names these the same way in error messages."""


def flag(spec: OptionSpec) -> str:
    """The option's command-line declaration (``--max-requests``)."""
    if spec.name in SWITCHES:
        return SWITCHES[spec.name][0]
    return "--" + spec.name.replace("_", "-")


def parse_degrees(value: str | tuple[float, ...]) -> tuple[float, ...]:
    """``"0,90,180,270"`` -> ``(0.0, 90.0, 180.0, 270.0)``; a usage error when not numbers."""
    if isinstance(value, tuple):
        return value
    from urbanvis._errors import InputError
    from urbanvis.stages import parse_headings  # the library's parser; here worded by click

    try:
        return parse_headings(value)
    except InputError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of degrees, e.g. 0,90,180,270"
        ) from None


def click_option(spec: OptionSpec) -> Callable[[F], F]:
    """The click option decorator for one spec."""
    if spec.name in SWITCHES:
        declaration, values = SWITCHES[spec.name]
        on = next(on for on, value in values.items() if value == spec.default)
        return click.option(
            declaration,
            spec.name,
            default=on,
            show_default=spec.show_default,
            help=spec.help,
            callback=lambda ctx, param, value: values[bool(value)],
        )
    if spec.type is bool:
        return click.option(flag(spec), spec.name, is_flag=True, help=spec.help)
    if spec.type is tuple:
        default = None
        if spec.default is not None:
            default = ",".join(f"{v:g}" for v in spec.default)
        return click.option(
            flag(spec),
            spec.name,
            default=default,
            show_default=spec.show_default,
            help=spec.help,
            callback=lambda ctx, param, value: None if value is None else parse_degrees(value),
        )
    return click.option(
        flag(spec),
        spec.name,
        type=spec.type,
        default=spec.default,
        show_default=spec.show_default,
        help=spec.help,
    )


def provider_options(command: F) -> F:
    """Add every registered provider option to a click command (see the module docstring)."""
    for spec in reversed(option_specs()):  # click lists the last decorator applied first
        command = click_option(spec)(command)
    return command


def split_provider_options(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(provider options, the rest)`` of a command's keyword arguments."""
    names = {spec.name for spec in option_specs()}
    mine = {k: v for k, v in params.items() if k in names}
    return mine, {k: v for k, v in params.items() if k not in names}
