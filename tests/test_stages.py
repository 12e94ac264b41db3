"""The stage layer: the notebook walk-through, provenance, cancellation, worded errors."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest

import urbanvis
from urbanvis import stages as uv
from urbanvis._errors import InputError, UrbanvisError
from urbanvis.demo import helsinki_pbf

from .conftest import HELSINKI_BBOX as BBOX

TINY = dict(arch="vit_test_patch8", dim=16, mlp_dim=64, workers=0, device="cpu")


def _commands(study: Path) -> list[str]:
    return [run["command"] for run in uv.open_study(study, create=False).runs()]


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """The README's notebook walk-through, one call per stage, on a tiny study."""
    study = tmp_path_factory.mktemp("walk") / "hel"
    results = {}
    results["sample"] = uv.sample(study, osm=helsinki_pbf(), bbox=BBOX)
    results["harvest"] = uv.harvest(
        study, provider="simulator", captures_per_point=3, headings="0,180", seed=0, size=64
    )
    results["truth"] = uv.simulate(study, truth=True, points_per_zone=20)
    results["pairs"] = uv.pairs(study, strategy="temporal", max_pairs=160)
    results["pretrain"] = uv.pretrain(
        study, pairs="temporal", epochs=1, batch_size=32, image_size=32, save_every=1, **TINY
    )
    results["embed"] = uv.embed(
        study, checkpoint=uv.latest_checkpoint(study), image_size=32, workers=0, device="cpu"
    )
    results["predict"] = uv.predict(
        study,
        zones=study / "study.gpkg",
        zones_layer="zones_sim",
        id_field="zone_id",
        indicators=study / "truth" / "indicators.csv",
        protocol="holdout",
    )
    results["map"] = uv.map(study, layer="predictions_blockgroup", column="median_income",
                            tiles="none")  # fmt: skip
    return study, results


def test_the_walk_through_runs_and_each_stage_records_its_run(walked):
    study, results = walked
    assert all(isinstance(r, uv.StageResult) for r in results.values())
    assert not any(r.stopped for r in results.values())
    assert _commands(study) == [
        "sample", "harvest", "simulate --truth", "pairs", "pretrain", "embed", "predict", "map",
    ]  # fmt: skip
    layers = {name for name, _ in pyogrio.list_layers(study / "study.gpkg")}
    assert {"points", "captures", "embeddings", "zones_blockgroup",
            "predictions_blockgroup"} <= layers  # fmt: skip
    n_points = results["sample"].outputs["points"]
    assert n_points == pyogrio.read_info(study / "study.gpkg", layer="points")["features"] > 20
    ok = results["harvest"].outputs["ok"]
    assert ok == n_points * 3 * 2
    assert results["pairs"].files["table"].is_file()
    assert results["pretrain"].files["checkpoint"].is_file()
    assert results["embed"].outputs["embedded"] == ok
    assert results["map"].files["html"].is_file()
    assert "R²" in results["predict"].message or "R2" in results["predict"].message


def test_the_readme_walk_through_is_one_import_and_one_call_per_stage():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    tree = ast.parse(block)
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert len(imports) == 1
    calls = [
        n.value.func.attr
        for n in tree.body
        if isinstance(n, ast.Expr | ast.Assign)
        and isinstance(n.value, ast.Call)
        and isinstance(n.value.func, ast.Attribute)
    ]
    for stage in ("sample", "harvest", "pairs", "pretrain", "embed", "predict", "map"):
        assert calls.count(stage) == 1, stage


def test_stopping_a_harvest_keeps_its_finished_batches(points_study):
    study = points_study
    seen = []

    def progress(done, total, counts):
        seen.append(done)

    stop_after_first = lambda: len(seen) > 1  # noqa: E731 - the first call is the start point
    result = uv.harvest(
        study, provider="simulator", headings=(0,), captures_per_point=1, batch_size=8,
        progress=progress, should_stop=stop_after_first,
    )  # fmt: skip
    assert result.stopped
    kept = pyogrio.read_info(study / "study.gpkg", layer="captures")["features"]
    assert 0 < kept < result.details.points_total
    assert uv.open_study(study).runs()[-1]["outputs"]["stopped"] is True
    again = uv.harvest(study, provider="simulator", headings=(0,), captures_per_point=1)
    assert not again.stopped
    assert again.details.points_done_before == kept


def test_stopping_sample_writes_no_points(tmp_path):
    study = tmp_path / "s"
    result = uv.sample(study, osm=helsinki_pbf(), bbox=BBOX, should_stop=lambda: True)
    assert result.stopped
    layers = {n for n, _ in pyogrio.list_layers(study / "study.gpkg")}
    assert "points" not in layers
    assert uv.open_study(study).runs()[-1]["outputs"] == {"stopped": True}


def test_stopping_pairs_writes_no_table(simulated_study):
    stopped = uv.pairs(simulated_study, strategy="temporal", should_stop=lambda: True)
    assert stopped.stopped and not (simulated_study / "pairs" / "temporal.parquet").exists()
    made = uv.pairs(simulated_study, strategy="temporal")
    assert not made.stopped and made.files["table"].is_file() and made.outputs["pairs"] > 0


def test_stopping_pretrain_and_embed_keeps_their_work(walked, tmp_path):
    study, _ = walked
    calls = []

    def stop_after(n):
        def should_stop():
            calls.append(1)
            return len(calls) >= n

        return should_stop

    result = uv.pretrain(
        study, pairs="temporal", name="stopped", epochs=3, batch_size=16, image_size=32,
        save_every=3, should_stop=stop_after(2), **TINY,
    )  # fmt: skip
    assert result.stopped
    checkpoint = result.files["checkpoint"]
    assert checkpoint.name == "checkpoint_0000.pth.tar"
    resumed = uv.pretrain(
        study, pairs="temporal", name="stopped", epochs=3, batch_size=16, image_size=32,
        save_every=3, resume=True, **TINY,
    )  # fmt: skip
    assert not resumed.stopped and resumed.files["checkpoint"].name == "checkpoint_0003.pth.tar"

    calls.clear()
    first = uv.embed(study, model="vit_test_patch8", random_init=True, image_size=32,
                     batch_size=8, workers=0, device="cpu", should_stop=stop_after(2))  # fmt: skip
    assert first.stopped and 0 < first.details.embedded < first.details.captures_total
    rest = uv.embed(study, model="vit_test_patch8", random_init=True, image_size=32,
                    batch_size=8, workers=0, device="cpu")  # fmt: skip
    assert not rest.stopped
    assert rest.details.done_before + rest.details.embedded == rest.details.captures_total


def test_errors_name_parameters_by_keyword_and_each_front_end_words_them(tmp_path):
    with pytest.raises(InputError) as caught:
        uv.sample(tmp_path / "s", osm=helsinki_pbf(), spacing=-1)
    error = caught.value
    assert error.param == "spacing"
    assert "--" not in str(error) and "spacing" in str(error)
    from urbanvis_cli._options import flag_name

    assert "--spacing" in error.worded(flag_name)
    assert "Spacing (m)" in error.worded(lambda p: {"spacing": "Spacing (m)"}.get(p, p))
    assert not (tmp_path / "s").exists()


def test_no_library_error_names_a_command_line_flag():
    """Library messages name parameters in backticks; only front ends write --flags."""
    root = Path(urbanvis.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
            if not name.endswith("Error"):
                continue
            text = " ".join(
                str(part.value)
                for arg in node.exc.args
                for part in ast.walk(arg)
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            )
            # 'urbanvis CMD --study X' quoted as a command to run is a front-end hint allowed
            for flag in re.findall(
                r"(?<![\w'])--[a-z][a-z-]+", re.sub(r"'urbanvis [^']*'", "", text)
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}: {flag}")
    assert not offenders, "\n".join(offenders)


def test_stage_errors_are_urbanvis_errors_before_any_write(tmp_path):
    with pytest.raises(UrbanvisError):
        uv.harvest(tmp_path / "nostudy", provider="simulator")
    assert not (tmp_path / "nostudy").exists()
    with pytest.raises(UrbanvisError, match="provider"):
        uv.harvest(tmp_path / "nostudy", provider="simulatr")


def test_import_urbanvis_and_the_stages_load_no_torch():
    code = "import sys, urbanvis; from urbanvis import stages; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _imports_at_module_level(name: str) -> set[str]:
    """The urbanvis modules a module imports when it is imported (not inside functions,
    not under ``if TYPE_CHECKING``)."""
    spec = importlib.util.find_spec(name)
    is_package = spec.submodule_search_locations is not None
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for stmt in ast.parse(Path(spec.origin).read_text()).body:
        if isinstance(stmt, ast.Import):
            found |= {a.name for a in stmt.names if a.name.startswith("urbanvis")}
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                parts = package.split(".")
                parts = parts[: len(parts) - stmt.level + 1]
                target = ".".join(parts + ([stmt.module] if stmt.module else []))
            else:
                target = stmt.module or ""
            if not target.startswith("urbanvis"):
                continue
            found.add(target)
            for alias in stmt.names:  # `from . import x` imports the submodule x
                sub = f"{target}.{alias.name}"
                if importlib.util.find_spec(target).submodule_search_locations and (
                    importlib.util.find_spec(sub) is not None
                ):
                    found.add(sub)
    return found


def test_no_module_level_import_cycle():
    names = ["urbanvis"] + [m.name for m in pkgutil.walk_packages(urbanvis.__path__, "urbanvis.")]
    graph = {}
    for name in names:
        ancestors = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        # a parent package is always imported before its children: no cycle through it
        graph[name] = {t for t in _imports_at_module_level(name) if t in names} - ancestors
        graph[name].discard(name)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in names:
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_stopping_predict_writes_nothing_and_map_can_stop(walked):
    study, results = walked
    before = (study / "reports" / "predict_blockgroup.csv").read_bytes()
    layers_before = pyogrio.list_layers(study / "study.gpkg").tolist()
    fits = []

    def progress(done, total, counts):
        fits.append(done)

    result = uv.predict(
        study, zones=study / "study.gpkg", zones_layer="zones_sim", id_field="zone_id",
        indicators=study / "truth" / "indicators.csv", protocol="kfold5",
        model=results["embed"].outputs["model_id"],
        progress=progress, should_stop=lambda: len(fits) >= 2,
    )  # fmt: skip
    assert result.stopped and fits == [0, 1]
    assert (study / "reports" / "predict_blockgroup.csv").read_bytes() == before
    assert pyogrio.list_layers(study / "study.gpkg").tolist() == layers_before
    assert uv.open_study(study).runs()[-1]["outputs"] == {"stopped": True}
    out = study / "reports" / "stopped.html"
    stopped = uv.map(study, layer="points", out=out, tiles="none", should_stop=lambda: True)
    assert stopped.stopped and not out.exists()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about a minute alone; much more on a busy 2-core machine
def test_the_readme_walk_through_runs_as_written(tmp_path, monkeypatch):
    """The README's notebook block, executed verbatim in an empty folder."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    result = namespace["result"]
    assert isinstance(result, uv.StageResult) and not result.stopped
    assert _commands(tmp_path / "hel") == [
        "sample", "harvest", "simulate --truth", "pairs", "pretrain", "embed", "predict", "map",
    ]  # fmt: skip
    assert (tmp_path / "hel" / "reports" / "map_predictions_blockgroup.html").is_file()


def test_every_lazily_exported_module_imports():
    for name in urbanvis.__all__:
        assert getattr(urbanvis, name) is not None, name
    assert sorted(urbanvis._SUBMODULES) == list(urbanvis._SUBMODULES)
