"""The provider registry, its CLI options, the provider interface and the dates grammar."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from datetime import UTC, datetime

import click
import pytest
from click.testing import CliRunner
from urbanvis_cli._provider_options import (
    SWITCHES,
    flag,
    provider_options,
    split_provider_options,
)

from urbanvis._dates import bounds, period
from urbanvis._errors import InputError
from urbanvis.providers import (
    PROVIDERS,
    OptionSpec,
    create_provider,
    list_providers,
    option_specs,
    provider_entry,
    provider_from_name,
)
from urbanvis.providers.base import Provider

BUILTIN = ("simulator", "folder", "gsv", "gsv-historical", "mapillary")


# ------------------------------------------------------------------------ registry
def test_the_builtin_providers_are_registered_in_order():
    assert list_providers()[:5] == BUILTIN == PROVIDERS
    assert provider_from_name is create_provider
    for name in BUILTIN:
        factory = provider_entry(name).load()
        assert callable(factory) and "options" in inspect.signature(factory).parameters


def test_an_unknown_provider_or_option_gets_close_matches():
    with pytest.raises(InputError, match=r"unknown provider 'simulater'; did you mean 'simul"):
        create_provider("simulater")
    with pytest.raises(InputError, match="choose one of simulator, folder, gsv"):
        create_provider("nothing-like-it")
    with pytest.raises(InputError, match="'sede' is not an option of any provider; did you"):
        create_provider("simulator", sede=3)


def test_options_of_other_providers_are_refused_unless_they_are_the_default():
    # a front end passes every option's default to every provider: those are fine
    provider = create_provider("simulator", seed=2, source="outdoor", metadata_only=False)
    assert provider.name == "simulator" and provider.parameters()["seed"] == 2
    # a value the provider would drop without a word is refused (gsv has no dates to filter)
    for name, options in (
        ("simulator", {"radius": 10.0}),
        ("simulator", {"key_file": "nope"}),
        ("gsv", {"since": "2020-13"}),
        ("folder", {"headings": (0.0, 180.0), "images": "x"}),
    ):
        with pytest.raises(InputError, match=r"does not apply to the .* provider \(only to"):
            create_provider(name, **options)


@pytest.mark.parametrize("headings", [(400.0,), (-10.0,), (0.0, 360.0), (float("nan"),), ()])
def test_headings_are_degrees_from_0_to_360(headings):
    with pytest.raises(InputError, match="^headings must be degrees from 0 up to"):
        create_provider("simulator", headings=headings)


def test_importing_the_providers_imports_no_provider_module():
    code = (
        "import sys, urbanvis.providers as p; p.option_specs(); p.list_providers(); "
        "print(','.join(m for m in ('aiohttp', 'torch', 'streetlevel', 'pandas', "
        "'urbanvis.providers.gsv', 'urbanvis.providers.simulator') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_option_specs_are_frozen_and_name_their_providers():
    specs = option_specs()
    assert len({s.name for s in specs}) == len(specs)
    for spec in specs:
        assert isinstance(spec, OptionSpec) and spec.help and spec.providers
        assert set(spec.providers) <= set(BUILTIN), spec
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.default = 1  # type: ignore[misc]
    assert [s.name for s in option_specs("folder")] == ["radius", "since", "until", "images"]
    assert option_specs("simulator")[-2:] == (
        next(s for s in specs if s.name == "seed"),
        next(s for s in specs if s.name == "workers"),
    )


def test_provider_defaults_are_the_providers_own():
    from urbanvis.providers._webhttp import WebSettings
    from urbanvis.providers.folder import FolderProvider
    from urbanvis.providers.gsv import GsvConfig
    from urbanvis.providers.historical import HistoricalConfig
    from urbanvis.providers.mapillary import MapillaryConfig
    from urbanvis.providers.simulator import SimulatorConfig

    own = {
        "simulator": {f.name: f.default for f in dataclasses.fields(SimulatorConfig)},
        "gsv": {f.name: f.default for f in dataclasses.fields(GsvConfig)},
        "gsv-historical": {f.name: f.default for f in dataclasses.fields(HistoricalConfig)},
        "mapillary": {f.name: f.default for f in dataclasses.fields(MapillaryConfig)},
        "folder": {k: p.default for k, p in inspect.signature(FolderProvider).parameters.items()},
    }
    web = {f.name: f.default for f in dataclasses.fields(WebSettings)}
    for name in ("gsv", "gsv-historical", "mapillary"):
        own[name].update(web)
    checked = 0
    for spec in option_specs():
        for provider, value in spec.provider_defaults:
            mine = own[provider][spec.name]
            assert str(mine) == str(value), (spec.name, provider, mine, value)
            checked += 1
        for provider in spec.providers:  # a fixed default is the provider's default too
            if spec.default is not None and spec.name in own[provider]:
                assert own[provider][spec.name] == spec.default, (spec.name, provider)
    assert checked >= 20


# --------------------------------------------------------------------- CLI options
@click.command()
@provider_options
def _command(**options):
    click.echo(repr(sorted(options.items())))


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params if p.name}


def test_generated_options_are_the_registry_specs():
    params = _params(_command)
    assert list(params) == [s.name for s in option_specs()]
    for spec in option_specs():
        param = params[spec.name]
        assert isinstance(param, click.Option)
        assert param.help == spec.help
        assert bool(param.show_default) == spec.show_default
        if spec.name in SWITCHES:
            assert [*param.opts, *param.secondary_opts] == flag(spec).split("/")
        else:
            assert param.opts == ["--" + spec.name.replace("_", "-")]
        if spec.type is bool:
            assert param.is_flag and spec.default is False  # given as False when absent
        elif spec.type is tuple:
            assert tuple(float(v) for v in param.default.split(",")) == spec.default
        elif spec.name not in SWITCHES:
            assert param.default == spec.default
            assert param.type.name == {str: "text", int: "integer", float: "float"}[spec.type]


def test_generated_options_match_todays_harvest_command():
    """Swapping cli/harvest.py's own provider options for the decorator changes nothing."""
    from urbanvis_cli.harvest import harvest

    today = {}
    for param in harvest.params:
        for opt in (*param.opts, *getattr(param, "secondary_opts", [])):
            today[opt] = param
    for param in _command.params:
        old = today[param.opts[0]]
        assert isinstance(old, click.Option) and isinstance(param, click.Option)
        assert param.opts == old.opts and param.secondary_opts == old.secondary_opts
        assert param.help == old.help, param.name
        assert param.default == old.default, param.name
        assert param.type.name == old.type.name, param.name
        assert bool(param.show_default) == bool(old.show_default), param.name
        assert param.is_flag == old.is_flag, param.name


def test_the_command_receives_keywords_ready_for_create_provider():
    runner = CliRunner()
    plain = runner.invoke(_command, [])
    assert plain.exit_code == 0, plain.output
    given = dict(eval(plain.output))  # noqa: S307 (our own repr)
    assert given["headings"] == (0.0, 90.0, 180.0, 270.0) and given["source"] == "outdoor"
    assert given["seed"] == 0 and given["metadata_only"] is False and given["size"] is None
    args = ["--headings", "0,180", "--any-imagery", "--size", "64", "--since", "2016"]
    out = runner.invoke(_command, args)
    given = dict(eval(out.output))  # noqa: S307
    assert given["headings"] == (0.0, 180.0) and given["source"] == "default"
    assert given["size"] == 64
    simulator = {k: v for k, v in given.items() if k != "source"}  # gsv's alone: refused
    provider = create_provider("simulator", **simulator)
    assert provider.parameters()["headings"] == (0.0, 180.0)
    assert provider.parameters()["since"] == 2016
    bad = runner.invoke(_command, ["--headings", "north"])
    assert bad.exit_code == 2 and "degrees" in bad.output
    mine, rest = split_provider_options({**given, "limit": 3})
    assert mine == given and rest == {"limit": 3}


# ----------------------------------------------------------------------- interface
def test_every_provider_is_a_declared_provider():
    from urbanvis.providers._web import WebProvider
    from urbanvis.providers.folder import FolderProvider
    from urbanvis.providers.gsv import GsvProvider
    from urbanvis.providers.historical import HistoricalProvider
    from urbanvis.providers.mapillary import MapillaryProvider
    from urbanvis.providers.simulator import SimulatorProvider

    for cls in (SimulatorProvider, FolderProvider, GsvProvider, HistoricalProvider,
                MapillaryProvider):  # fmt: skip
        assert issubclass(cls, Provider) and cls.name in BUILTIN
        assert cls.supports_metadata_only is issubclass(cls, WebProvider)
    provider = create_provider("simulator")
    assert provider.stats == {} and provider.stopped_reason is None
    assert provider.request_estimate(None) == 0 and provider.metadata_only is False  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Provider()  # type: ignore[abstract]


def test_the_default_stream_batches_capture_points():
    import pandas as pd

    class Counting(Provider):
        name = "counting"

        def parameters(self):
            return {}

        def capture_points(self, points):
            return [len(points)]

    points = pd.DataFrame({"point_id": range(10)})
    assert list(Counting().stream(points, batch_size=4)) == [[4], [4], [2]]
    calls = iter([False, True])
    assert list(Counting().stream(points, batch_size=4, should_stop=lambda: next(calls))) == [[4]]


# --------------------------------------------------------------------------- dates
def test_one_dates_grammar_for_every_provider():
    assert period("2019", "since").end == datetime(2020, 1, 1)
    assert period("2019-12", "until").end == datetime(2020, 1, 1)
    assert period("2019-06-03", "since").iso == "2019-06-03"
    assert period(" 2019-06-03T10:15:30.5Z ", "since").iso == "2019-06-03T10:15:30"
    zoned = period("2019-06-03T10:15+02:00", "since")
    assert zoned.start_utc == datetime(2019, 6, 3, 8, 15, tzinfo=UTC)
    assert period(None, "since") is None and period("", "since") is None
    for bad in ("19", "2019-6", "2019-13", "2019-02-30", "last year", "2019-06-03T25:00"):
        with pytest.raises(InputError, match=r"^since '.*' is not a year like 2010, a month"):
            period(bad, "since")


def test_coarser_providers_refuse_finer_dates_in_the_same_words():
    with pytest.raises(InputError) as caught:
        period("2019-06", "since", finest="year", note="the simulator renders whole years")
    assert str(caught.value) == (
        "since '2019-06' is not a year like 2010; the simulator renders whole years"
    )
    assert caught.value.param == "since"
    with pytest.raises(InputError, match="is not a year like 2010 or a month like 2010-06$"):
        period("2019-06-03", "until", finest="month")


def test_since_after_until_is_refused_in_one_wording():
    assert bounds("2021-06-15", "2021-06")[0].iso == "2021-06-15"  # within June: fine
    for since, until in (("2021", "2019-05"), ("2021-07", "2021-06-30")):
        with pytest.raises(InputError) as caught:
            bounds(since, until)
        assert str(caught.value) == (
            f"since {since} is after until {until}; give the earlier date first"
        )
        assert caught.value.worded(lambda p: "--" + p).startswith(f"--since {since} is after")
    for provider in ("simulator", "gsv-historical", "mapillary"):  # configs check before keys
        survey = {"metadata_only": True} if provider != "simulator" else {}
        with pytest.raises(InputError, match="^since 2021 is after until 2019"):
            create_provider(provider, since="2021", until="2019", key_file=None, **survey)
