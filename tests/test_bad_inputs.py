"""The catalogue of bad input: every command, one line, exit code 2, the study untouched.

Each case is a command line, the kind of study it runs on and a fragment of the one line it
must print. A case passes when the command exits with code 2, prints exactly one line in
all (stdout and stderr together) that starts with ``error:`` and holds the fragment, shows
no traceback, and leaves every file of its workspace (the study and the folder the command
runs in) byte for byte as it was, with no file or folder added or removed.

Study kinds, built once per module:

- ``none``: no study at all (``{study}`` names a folder that does not exist);
- ``points``: a sampled study (the Helsinki corner of :data:`tests.conftest.HELSINKI_BBOX`);
- ``sim``: ``points`` plus simulator captures (2 dates x 2 headings, 64 px);
- ``full``: ``sim`` plus ground truth, temporal pairs, a tiny pretraining run
  (``checkpoints/tiny``), random-init embeddings and saved predict models.

Placeholders in the arguments: ``{study}`` the study folder, ``{data}`` the module's
read-only input files (see :func:`make_data`), ``{pbf}`` the Helsinki extract. Lines are
counted as a terminal shows them (:func:`tests.conftest.visible_lines`): a progress bar
that a failing command clears is not a line.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from urbanvis.demo import helsinki_pbf

from .conftest import invoke, make_points_study, make_simulated_study, visible_lines

TINY = ("--arch", "vit_test_patch8", "--dim", "16", "--mlp-dim", "64", "--workers", "0",
        "--device", "cpu", "--epochs", "1", "--batch-size", "32")  # fmt: skip
ZONES = "--zones {study}/study.gpkg --zones-layer zones_sim --id-field zone_id"
TRUTH = "--indicators {study}/truth/indicators.csv"
RANDOM = "--model vit_test_patch8 --random-init --device cpu --workers 0"
KEY = "--key-file {data}/key.txt"
PP2 = "{data}/pp/votes.csv"


@dataclass(frozen=True)
class Case:
    kind: str
    args: str
    fragment: str

    @property
    def id(self) -> str:
        return f"{self.kind}: {self.args}"


def c(kind: str, args: str, fragment: str) -> Case:
    return Case(kind, args, fragment)


S = "--study {study}"

SAMPLE = [
    c("none", f"sample {S} --osm {{pbf}} --spacing 0", "--spacing must be a positive"),
    c("none", f"sample {S} --osm {{pbf}} --spacing -5", "--spacing must be a positive"),
    c("none", f"sample {S} --osm {{pbf}} --spacing nan", "--spacing must be a positive"),
    c("none", f"sample {S} --osm {{pbf}} --spacing inf", "--spacing must be a positive"),
    c("none", f"sample {S} --osm {{pbf}} --spacing 1e9", "--spacing 1e+09 m is more than"),
    c(
        "none",
        f"sample {S} --bbox 24.935,60.165,24.945,60.17 --method grid --spacing 5000",
        "no grid point falls inside",
    ),
    c("none", f"sample {S} --osm {{pbf}} --merge-distance -1", "--merge-distance must be"),
    c("none", f"sample {S} --osm {{pbf}} --merge-distance 20", "larger than the merge"),
    c("none", f"sample {S} --osm {{pbf}} --bbox 1,2,3", "four numbers"),
    c("none", f"sample {S} --osm {{pbf}} --bbox a,b,c,d", "not four numbers"),
    c("none", f"sample {S} --osm {{pbf}} --bbox 24.95,60.16,24.93,60.17", "west"),
    c("none", f"sample {S} --osm {{pbf}} --bbox 24.93,60.17,24.95,60.16", "south"),
    c("none", f"sample {S} --osm {{pbf}} --bbox 385000,6672000,386000,6673000", "degrees"),
    c("none", f"sample {S} --osm {{pbf}} --area {{data}}/missing.gpkg", "does not exist"),
    c("none", f"sample {S} --osm {{pbf}} --area {{data}}/bowtie.gpkg", "self-intersection"),
    c("none", f"sample {S} --osm {{pbf}} --area {{data}}/metres.gpkg", "crs label is wrong"),
    c("none", f"sample {S} --osm {{pbf}} --area {{data}}/points.gpkg", "no polygons"),
    c("none", f"sample {S} --osm {{pbf}} --area {{data}}/nocrs.gpkg", "has no crs"),
    c("none", f"sample {S} --osm {{pbf}} --area {{data}}/notes.txt", "cannot read area file"),
    c("none", f"sample {S} --osm {{pbf}} --area {{data}}/empty.gpkg", "no features"),
    c("none", f"sample {S} --osm {{data}}/missing.osm.pbf", "does not exist"),
    c("none", f"sample {S} --osm {{data}}/empty.osm.pbf", "is empty"),
    c("none", f"sample {S} --osm {{data}}/notes.txt", ".osm.pbf"),
    c("none", f"sample {S} --osm {{data}}/notes.osm.pbf", "cannot read notes.osm.pbf"),
    c("none", f"sample {S} --osm {{pbf}} --bbox 0.0,0.0,0.01,0.01", "no drive roads"),
    c("none", f"sample {S} --city ''", "say where to sample"),
    c("none", f"sample {S}", "say where to sample"),
    c("none", f"sample {S} --city Helsinki --bbox 24.93,60.16,24.96,60.18", "only one of"),
    c("none", f"sample {S} --osm {{pbf}} --method grid", "needs an area"),
    c("none", f"sample {S} --network bike --osm {{pbf}}", "--network"),
    c("none", "sample --study {data}/notes.txt --osm {pbf}", "is a file"),
    c("none", f"sample {S} --city Helsinki --nominatim-url ftp://x", "--nominatim-url"),
    c("none", f"sample {S} --bbox 24.93,60.16,24.96,60.18 --overpass-url x", "--overpass-url"),
    c("points", f"sample {S} --osm {{pbf}}", "--overwrite"),
    c("sim", f"sample {S} --osm {{pbf}} --overwrite", "refer to"),
]

HARVEST = [
    c("none", f"harvest {S}", "not a study yet"),
    c("points", f"harvest {S} --provider simulatr", "did you mean 'simulator'"),
    c("points", f"harvest {S} --batch-size 0", "--batch-size must be"),
    c("points", f"harvest {S} --limit 0", "--limit must be"),
    c("points", f"harvest {S} --limit -3", "--limit must be"),
    c("points", f"harvest {S} --headings 400", "--headings"),
    c("points", f"harvest {S} --headings -10", "--headings"),
    c("points", f"harvest {S} --headings 0,nan", "--headings"),
    c("points", f"harvest {S} --headings north", "degrees"),
    c("points", f"harvest {S} --size 0", "--size"),
    c("points", f"harvest {S} --size 5000", "--size"),
    c("points", f"harvest {S} --captures-per-point 0", "--captures-per-point"),
    c("points", f"harvest {S} --workers 0", "--workers"),
    c("points", f"harvest {S} --seed -1", "--seed"),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/empty", "is a folder"),
    c("points", f"harvest {S} --since 2020-13", "--since"),
    c("points", f"harvest {S} --since 2020 --until 2018", "--since"),
    c("points", f"harvest {S} --since 1800", "--since"),
    c("points", f"harvest {S} --radius 10", "--radius"),
    c("points", f"harvest {S} --fov 60", "--fov"),
    c("points", f"harvest {S} --images {{data}}", "--images"),
    c("points", f"harvest {S} --metadata-only", "--metadata-only"),
    c("points", f"harvest {S} --key-file {{data}}/notes.txt", "--key-file"),
    c("points", f"harvest {S} --provider gsv --since 2020-13", "--since"),
    c("points", f"harvest {S} --provider gsv --since 2020", "--since"),
    c("points", f"harvest {S} --provider gsv --captures-per-point 3", "--captures-per-point"),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/missing.txt", "--key-file"),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/key.txt --size 0", "--size"),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/key.txt --size 1000", "--size"),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/key.txt --fov 5", "--fov"),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/key.txt --fov 130", "--fov"),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/key.txt --pitch 100", "--pitch"),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/key.txt --radius -5", "--radius"),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/key.txt --radius 0", "--radius"),
    c(
        "points",
        f"harvest {S} --provider gsv --key-file {{data}}/key.txt --concurrency 0",
        "--concurrency",
    ),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/key.txt --rate -1", "--rate"),
    c(
        "points",
        f"harvest {S} --provider gsv --key-file {{data}}/key.txt --retries -1",
        "--retries",
    ),
    c("points", f"harvest {S} --provider gsv --key-file {{data}}/key.txt --timeout 0", "--timeout"),
    c(
        "points",
        f"harvest {S} --provider gsv --key-file {{data}}/key.txt --max-requests 0",
        "--max-requests",
    ),
    c(
        "points",
        f"harvest {S} --provider gsv --key-file {{data}}/key.txt --endpoint ftp://x",
        "--endpoint",
    ),
    c(
        "points",
        f"harvest {S} --provider gsv --key-file {{data}}/key.txt --max-distance -3",
        "--max-distance",
    ),
    c(
        "points",
        f"harvest {S} --provider gsv --key-file {{data}}/key.txt --price-per-1000 -7",
        "--price-per-1000",
    ),
    c(
        "points",
        f"harvest {S} --provider gsv-historical --key-file {{data}}/key.txt --max-cost -1",
        "--max-cost",
    ),
    c("points", f"harvest {S} --provider mapillary --max-cost 5", "--max-cost"),
    c(
        "points",
        f"harvest {S} --provider gsv --key-file {{data}}/key.txt --headings 360",
        "--headings",
    ),
    c(
        "points",
        f"harvest {S} --provider gsv --key-file {{data}}/key.txt --limit 2 "
        "--metadata-only --endpoint http://127.0.0.1:9 --retries 0 --timeout 2",
        "every gsv metadata request failed",
    ),
    c("points", f"harvest {S} --provider gsv-historical --since 2020-13", "--since"),
    c("points", f"harvest {S} --provider mapillary --since 2020-13", "--since"),
    c(
        "points",
        f"harvest {S} --provider mapillary --key-file {{data}}/key.txt --captures-per-point 0",
        "--captures-per-point",
    ),
    c("points", f"harvest {S} --provider folder", "needs --images"),
    c("points", f"harvest {S} --provider folder --images {{data}}/missing", "does not exist"),
    c("points", f"harvest {S} --provider folder --images {{data}}/bad_manifest.csv", "lon"),
    c("points", f"harvest {S} --provider folder --images {{data}}/empty", "holds no"),
    c("points", f"harvest {S} --provider folder --images {{data}}/empty --radius 0", "--radius"),
    c("points", f"harvest {S} --provider folder --images {{data}}/notes.txt", "lacks column"),
    c("points", f"harvest {S} --provider folder --images {{data}}/bowtie.gpkg", "lacks column"),
    c("points", f"harvest {S} --provider gsv {KEY} --secret-file {{data}}/missing", "does not"),
    c("points", f"harvest {S} --provider gsv {KEY} --secret-file {{data}}/notes.txt", "base64"),
    c("points", f"harvest {S} --provider gsv-historical {KEY} --size 0", "--size"),
    c("none", f"harvest {S} --provider folder --images {{data}}/bad_manifest.csv", "lon"),
    c("sim", f"harvest {S} --size 64 --captures-per-point 2 --seed 1", "seed"),
    c("sim", f"harvest {S} --size 64 --captures-per-point 2 --headings 0,90", "headings"),
    c("none", f"harvest {S} --osm {{data}}/empty.osm.pbf", "is empty"),
    c("none", f"harvest {S} --area {{data}}/bowtie.gpkg", "self-intersection"),
    c("none", f"harvest {S} --bbox 1,2", "four numbers"),
]

PAIRS = [
    c("none", f"pairs {S} --strategy temporal", "not a study"),
    c("points", f"pairs {S} --strategy temporal", "no captures"),
    c("sim", f"pairs {S} --strategy tempral", "strategy"),
    c("sim", f"pairs {S} --strategy temporal --max-pairs 0", "--max-pairs"),
    c("sim", f"pairs {S} --strategy temporal --max-distance -1", "--max-distance"),
    c("sim", f"pairs {S} --strategy temporal --max-distance nan", "--max-distance"),
    c("sim", f"pairs {S} --strategy temporal --heading-tol -1", "--heading-tol"),
    c("sim", f"pairs {S} --strategy temporal --heading-tol 200", "--heading-tol"),
    c("sim", f"pairs {S} --strategy spatial --buffer 0", "--buffer"),
    c("sim", f"pairs {S} --strategy spatial --buffer -100", "--buffer"),
    c("sim", f"pairs {S} --strategy self --zones {{data}}/zones.gpkg", "spatial only"),
    c("sim", f"pairs {S} --strategy spatial --zones {{data}}/zones.gpkg --buffer 50", "not both"),
    c("sim", f"pairs {S} --strategy spatial --zone-id GEOID", "needs --zones"),
    c(
        "sim",
        f"pairs {S} --strategy spatial --zones {{data}}/missing.gpkg --zone-id id",
        "does not exist",
    ),
    c("sim", f"pairs {S} --strategy spatial --zones {{data}}/notes.txt --zone-id id", "notes.txt"),
    c(
        "sim",
        f"pairs {S} --strategy spatial --zones {{data}}/zones.gpkg --zone-id absent",
        "absent",
    ),
    c(
        "sim",
        f"pairs {S} --strategy spatial --zones {{data}}/bowtie.gpkg --zone-id id",
        "self-intersection",
    ),
    c("sim", f"pairs {S} --strategy spatial --zones {{data}}/metres.gpkg --zone-id id", "label"),
    c("sim", f"pairs {S} --strategy temporal --shard-size 0", "--shard-size"),
    c("sim", f"pairs {S} --strategy temporal --seed -1", "--seed"),
]

PRETRAIN = [
    c("none", f"pretrain {S} --pairs temporal", "not a study"),
    c("full", f"pretrain {S} --pairs notes.txt", "neither a strategy name nor a .parquet"),
    c("full", f"pretrain {S} --pairs {{data}}/notes.txt", "neither a strategy name nor a .parquet"),
    c("full", f"pretrain {S} --pairs {{data}}/missing.parquet", "does not exist"),
    c("full", f"pretrain {S} --pairs {{data}}/notes.parquet", "notes.parquet"),
    c("full", f"pretrain {S} --pairs spatial", "urbanvis pairs"),
    c("sim", f"pretrain {S} --pairs temporal", "urbanvis pairs"),
    c("full", f"pretrain {S} --temperature 0", "--temperature must be a positive"),
    c("full", f"pretrain {S} --temperature -0.2", "--temperature must be a positive"),
    c("full", f"pretrain {S} --temperature nan", "--temperature must be a positive"),
    c("full", f"pretrain {S} --base-lr 0", "--base-lr must be a positive"),
    c("full", f"pretrain {S} --base-lr -1e-4", "--base-lr must be a positive"),
    c("full", f"pretrain {S} --weight-decay -0.1", "--weight-decay must be"),
    c("full", f"pretrain {S} --momentum 1", "--momentum must be in"),
    c("full", f"pretrain {S} --momentum -0.5", "--momentum must be in"),
    c("full", f"pretrain {S} --photometric 1.5", "--photometric must be in"),
    c("full", f"pretrain {S} --photometric -1", "--photometric must be in"),
    c("full", f"pretrain {S} --crop-min 0", "--crop-min must be in"),
    c("full", f"pretrain {S} --crop-min 1.2", "--crop-min must be in"),
    c("full", f"pretrain {S} --epochs 0", "--epochs must be"),
    c("full", f"pretrain {S} --batch-size 0", "--batch-size must be"),
    c("full", f"pretrain {S} --warmup-epochs -1", "--warmup-epochs must be"),
    c("full", f"pretrain {S} --warmup-epochs 400", "--warmup-epochs must be"),
    c("full", f"pretrain {S} --dim 0", "--dim must be"),
    c("full", f"pretrain {S} --mlp-dim 0", "--mlp-dim must be"),
    c("full", f"pretrain {S} --accumulate 0", "--accumulate must be"),
    c("full", f"pretrain {S} --save-every 0", "--save-every must be"),
    c("full", f"pretrain {S} --workers -1", "--workers must be"),
    c("full", f"pretrain {S} --image-size 0", "--image-size must be"),
    c("full", f"pretrain {S} --arch vit_test_patch8 --image-size 30", "multiple of the 8 px"),
    c("full", f"pretrain {S} --arch vit_test_patch8 --image-size 1032", "at most 1024"),
    c("full", f"pretrain {S} --arch vit_bse_patch16_224", "unknown encoder"),
    c("full", f"pretrain {S} --augment tpu", "--augment"),
    c("full", f"pretrain {S} --compile yes", "--compile"),
    c("full", f"pretrain {S} --on-missing ignore", "--on-missing"),
    c("full", f"pretrain {S} --seed -1", "--seed"),
    c("full", f"pretrain {S} --device gpu", "--device must be"),
    c("full", f"pretrain {S} --precision fp64", "--precision"),
    c("full", f"pretrain {S} --name ../escape", "--name"),
    c("full", f"pretrain {S} --resume --name nosuch", "nothing to resume"),
    c(
        "full",
        "pretrain " + S + " --resume --name tiny " + " ".join(TINY[:-2]) + " --batch-size 16",
        "resume with the same settings",
    ),
    c("full", "pretrain " + S + " " + " ".join(TINY[:-2]) + " --batch-size 999", "larger than"),
    c("full", "pretrain " + S + " " + " ".join(TINY) + " --accumulate 5", "--accumulate"),
]

EMBED = [
    c("none", f"embed {S} {RANDOM}", "not a study"),
    c("points", f"embed {S} {RANDOM}", "captures"),
    c("sim", f"embed {S}", "exactly one of"),
    c("sim", f"embed {S} --checkpoint {{data}}/missing.pth.tar", "does not exist"),
    c("sim", f"embed {S} --checkpoint {{data}}/notes.txt", "cannot be read"),
    c("sim", f"embed {S} --checkpoint {{data}}/empty.pth.tar", "is empty"),
    c("sim", f"embed {S} --checkpoint {{data}}/truncated.pth.tar", "truncated"),
    c("sim", f"embed {S} --checkpoint {{data}}/other_arch.pth.tar", "--checkpoint"),
    c("sim", f"embed {S} --checkpoint {{data}}/no_backbone.pth.tar", "no vit backbone"),
    c("sim", f"embed {S} --model vit_bse_patch16_224 --random-init", "unknown encoder"),
    c("sim", f"embed {S} --model vit_test_patch8", "--random-init"),
    c("sim", f"embed {S} --checkpoint {{data}}/tiny.pth.tar --random-init", "--random-init"),
    c(
        "sim",
        f"embed {S} --checkpoint {{data}}/tiny.pth.tar --model vit_test_patch8",
        "exactly one of",
    ),
    c("sim", f"embed {S} {RANDOM} --batch-size 0", "--batch-size"),
    c("sim", f"embed {S} {RANDOM} --workers -1", "--workers"),
    c("sim", f"embed {S} {RANDOM} --limit 0", "--limit"),
    c("sim", f"embed {S} {RANDOM} --compile yes", "--compile"),
    c("sim", f"embed {S} {RANDOM} --image-size 0", "--image-size"),
    # just over the bound, one image: a regression costs seconds, not the machine's memory
    c("sim", f"embed {S} {RANDOM} --image-size 1032 --batch-size 1 --limit 1", "at most 1024"),
    c("sim", f"embed {S} {RANDOM} --image-size 30", "--image-size"),
    c("sim", f"embed {S} --model vit_test_patch8 --random-init --device tpu", "--device"),
    c("sim", f"embed {S} {RANDOM} --precision fp16", "--precision"),
    c("sim", f"embed {S} {RANDOM} --decode tpu", "--decode"),
    c("sim", f"embed {S} {RANDOM} --seed -1", "--seed"),
]

EXPORT = [
    c("none", f"export {S}", "not a study"),
    c("sim", f"export {S}", "urbanvis embed"),
    c("full", f"export {S} --model nope", "random-init:vit_test_patch8:0"),
    c("full", f"export {S} --format csv", "--format"),
    c("full", f"export {S} --out {{data}}/missing/e.parquet", "does not exist"),
    c("full", f"export {S} --out e.gpkg", ".parquet"),
    c("full", f"export {S} --out {{data}}/empty", "--out"),
]

PREDICT = [
    c("none", f"predict {S} {ZONES} {TRUTH}", "not a study"),
    c("full", f"predict {S} {ZONES}", "give --indicators"),
    c(
        "full",
        f"predict {S} {ZONES} {TRUTH} --apply {{study}}/models/predict_blockgroup.joblib",
        "drop --indicators",
    ),
    c("full", f"predict {S} {ZONES} --apply {{data}}/notes.txt", "--apply"),
    c("full", f"predict {S} {ZONES} --apply {{data}}/notes.joblib", "--apply"),
    c("full", f"predict {S} {ZONES} --apply {{data}}/missing.joblib", "does not exist"),
    c("full", f"predict {S} {ZONES} --indicators {{data}}/missing.csv", "does not exist"),
    c("full", f"predict {S} {ZONES} --indicators {{data}}/notes.txt", "notes.txt"),
    c("full", f"predict {S} {ZONES} --indicators {{data}}/indicators_noid.csv", "--id-field"),
    c("full", f"predict {S} {ZONES} --indicators {{data}}/pp/votes.csv", "left_id"),
    c("full", f"predict {S} {ZONES} {TRUTH} --columns absent", "logcrime"),
    c("full", f"predict {S} {ZONES} {TRUTH} --columns ,", "--columns"),
    c(
        "full",
        f"predict {S} --zones {{study}}/study.gpkg --zones-layer zones_sim --id-field nope {TRUTH}",
        "--id-field",
    ),
    c(
        "full",
        f"predict {S} --zones {{study}}/study.gpkg --zones-layer nope --id-field zone_id {TRUTH}",
        "--zones-layer",
    ),
    c(
        "full",
        f"predict {S} --zones {{data}}/missing.gpkg --id-field zone_id {TRUTH}",
        "does not exist",
    ),
    c("full", f"predict {S} --zones {{data}}/notes.txt --id-field zone_id {TRUTH}", "notes.txt"),
    c(
        "full",
        f"predict {S} --zones {{data}}/bowtie.gpkg --id-field zone_id {TRUTH}",
        "self-intersection",
    ),
    c("full", f"predict {S} --zones {{data}}/empty --id-field zone_id {TRUTH}", "is a folder"),
    c("full", f"predict {S} {ZONES} --indicators {{data}}/empty", "is a folder"),
    c("full", f"predict {S} {ZONES} --apply {{data}}/empty", "is a folder"),
    c("full", f"predict {S} {ZONES} {TRUTH} --topics {{data}}/empty", "is a folder"),
    c("full", f"predict {S} {ZONES} {TRUTH} --tiger-url x", "--tiger-url"),
    c("full", f"predict {S} {ZONES} {TRUTH} --census-url ftp://x", "--census-url"),
    c("full", f"predict {S} {ZONES} {TRUTH} --seed -1", "--seed"),
    c("full", f"predict {S} {ZONES} {TRUTH} --min-images 0", "--min-images"),
    c("full", f"predict {S} --level hex --cell-size 0 {TRUTH}", "--cell-size"),
    c("full", f"predict {S} --level buffer --buffer -1 {TRUTH}", "--buffer"),
    c("full", f"predict {S} {ZONES} {TRUTH} --tiger-year 1800", "--tiger-year"),
    c("full", f"predict {S} {ZONES} {TRUTH} --acs-year 3000", "--acs-year"),
    c("full", f"predict {S} {ZONES} {TRUTH} --topics {{data}}/missing.csv", "does not exist"),
    c("full", f"predict {S} {ZONES} {TRUTH} --topics {{data}}/notes.txt", "--topics"),
    c("full", f"predict {S} {ZONES} {TRUTH} --model nosuch", "--model"),
    c("full", f"predict {S} {ZONES} {TRUTH} --protocol kfold3", "--protocol"),
    c("full", f"predict {S} {ZONES} --indicators acs:", "at least one acs variable"),
    c("full", f"predict {S} {ZONES} --indicators acs:for", "not an acs variable"),
    c("full", f"predict {S} {ZONES} --indicators acs:median_income --columns a", "--columns"),
    c("full", f"predict {S} --level hex --indicators acs:median_income", "census zones"),
    c(
        "sim",
        f"predict {S} --zones {{data}}/zones.gpkg --id-field id "
        "--indicators {data}/indicators_noid.csv",
        "no embeddings",
    ),
]

MAP = [
    c("none", f"map {S}", "not a study"),
    c("full", f"map {S} --layer nope", "no 'nope' layer"),
    c("full", f"map {S} --column nope --tiles none", "nope"),
    c("full", f"map {S} --tiles nosuch", "known"),
    c(
        "full",
        "map --study {study} --tiles 'https://t.example/{{z}}/{{x}}/{{y}}.png'",
        "--attribution",
    ),
    c(
        "full",
        "map --study {study} --tiles 'https://t.example/{{z}}/{{x}}/{{y}}.png?apikey=1' "
        "--attribution me",
        "key",
    ),
    c("full", f"map {S} --tiles none --out {{study}}/reports/map.txt", "--out"),
    c("full", f"map {S} --tiles none --out {{study}}/reports", "--out"),
    c("full", f"map {S} --tiles none --raster out.png --column heading", ".tif"),
    c("full", f"map {S} --tiles none --raster out.tif", "--column"),
    c("full", f"map {S} --tiles none --raster out.tif --column heading --cell 0", "--cell"),
    c("full", f"map {S} --tiles none --raster out.tif --column heading --cell -5", "--cell"),
    c("full", f"map {S} --tiles none --raster out.tif --column heading --cell nan", "--cell"),
    c("full", f"map {S} --tiles none --raster out.tif --column heading --radius -5", "--radius"),
    c("full", f"map {S} --tiles none --raster out.tif --column heading --radius 0", "--radius"),
    c("full", f"map {S} --tiles none --raster out.tif --column status", "numbers"),
    c("full", f"map {S} --tiles none --raster out.tif --column nope", "nope"),
    c("full", f"map {S} --layer embeddings --column nope --tiles none", "pc1"),
    c("full", f"map {S} --layer zones_sim --raster z.tif --column logcrime --cell 0.001", "cells"),
    c("full", f"map {S} --tiles none --zones-layer nope", "--zones-layer"),
    c("full", f"map {S} --tiles none --thumbnails all", "--thumbnails"),
    c("full", f"map {S} --tiles none --method spline", "--method"),
    c("full", f"map {S} --tiles none --radius 100", "--radius"),
    c("full", f"map {S} --tiles none --cell 10", "--cell"),
]

SIMULATE = [
    c("none", "simulate", "say what to make"),
    c("none", f"simulate {S} --truth", "not a study"),
    c("points", f"simulate {S} --truth --points-per-zone 0", "--points-per-zone"),
    c("points", f"simulate {S} --truth --points-per-zone 5000", "--points-per-zone"),
    c("none", "simulate --contact-sheet sheet.txt", ".png"),
    c("none", "simulate --contact-sheet sheet.png --size 0", "--size"),
    c("none", "simulate --contact-sheet sheet.png --size 100000", "--size"),
    c("none", "simulate --contact-sheet sheet.png --seed -1", "--seed"),
    c("none", "simulate --vpr-set vpr --places 0", "--places"),
    c("none", "simulate --vpr-set vpr --queries noon", "--queries"),
    c("none", "simulate --vpr-set vpr --size 2000", "--size"),
    c("points", f"simulate {S} --truth --seed -3", "--seed"),
    c("none", "simulate --vpr-set vpr --size 0", "--size"),
    c("none", "simulate --vpr-set {data}", "not empty"),
    c("none", "simulate --safety-set pp --images 0", "--images"),
    c("none", "simulate --safety-set pp --votes-per-image 0", "--votes-per-image"),
    c("none", "simulate --safety-set pp --truth", "on its own"),
    c("none", "simulate --safety-set {data}", "not empty"),
    c("none", "simulate --safety-set pp --size 0", "--size"),
    c("none", "simulate --vpr-set {data}/notes.txt", "--vpr-set"),
    c("none", "simulate --contact-sheet {data}", "--contact-sheet"),
]

DEMO = [
    c("none", "demo --out demo --limit 0", "--limit"),
    c("none", "demo --out demo --workers 0", "--workers"),
    c("none", "demo --out demo --epochs 0", "--epochs"),
    c("none", "demo --out {data}/notes.txt", "is a file"),
    c("none", "demo --out {data}", "not a study"),
    c("none", "demo --out {data}/pp/images", "not a study"),
]

EVAL = [
    # vpr
    c("none", "eval vpr --dataset {data}/missing --thumbnail", "not a folder"),
    c("none", "eval vpr --dataset {data}/empty --thumbnail", "{data}/empty"),
    c("none", "eval vpr --dataset {data}/notes.txt --thumbnail", "not a folder"),
    c("none", "eval vpr --dataset {data}/vpr", "name at least one encoder"),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --threshold 0", "--threshold"),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --threshold -25", "--threshold"),
    c("none", "eval vpr --dataset {data}/vpr --model vit_test_patch8", "--random-init"),
    c(
        "none",
        "eval vpr --dataset {data}/vpr --checkpoint {data}/missing.pth.tar",
        "does not exist",
    ),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --out t.txt", ".csv"),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --descriptor patches", "--descriptor"),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --batch-size 0", "--batch-size"),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --workers -1", "--workers"),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --image-size 1032", "at most 1024"),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --image-size 4", "--image-size"),
    c(
        "none",
        "eval vpr --dataset {data}/vpr --checkpoint {data}/truncated.pth.tar --device cpu",
        "truncated",
    ),
    c(
        "none",
        "eval vpr --dataset {data}/vpr --checkpoint {data}/other_arch.pth.tar --device cpu",
        "--checkpoint",
    ),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --study {study}", "not a study"),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --seed -1", "--seed"),
    c("none", "eval vpr --dataset {data}/vpr --thumbnail --device gpu", "--device"),
    # safety
    c("none", "eval safety --pp2 {data}/missing.csv --thumbnail --out t.csv", "does not exist"),
    c("none", "eval safety --pp2 {data}/notes.txt --thumbnail --out t.csv", "notes.txt"),
    c(
        "none",
        "eval safety --pp2 {data}/pp/votes.csv --images {data}/missing --thumbnail --out t.csv",
        "does not exist",
    ),
    c(
        "none",
        "eval safety --pp2 {data}/pp/votes.csv --thumbnail --test-size 0 --out t.csv",
        "--test-size",
    ),
    c(
        "none",
        "eval safety --pp2 {data}/pp/votes.csv --thumbnail --test-size 1.5 --out t.csv",
        "--test-size",
    ),
    c(
        "none",
        "eval safety --pp2 {data}/pp/votes.csv --thumbnail --epochs 0 --out t.csv",
        "--epochs",
    ),
    c("none", "eval safety --pp2 {data}/pp/votes.csv --thumbnail --out t.txt", ".csv"),
    c("none", "eval safety --pp2 {data}/pp/votes.csv --thumbnail", "--out"),
    c("none", "eval safety --pp2 {data}/pp/votes.csv --out t.csv", "name at least one"),
    c(
        "none",
        "eval safety --pp2 {data}/pp/votes.csv --thumbnail --category beauty --out t.csv",
        "beauty",
    ),
    c(
        "none",
        "eval safety --pp2 {data}/pp/votes.csv --thumbnail --batch-size 0 --out t.csv",
        "--batch-size",
    ),
    c(
        "none",
        "eval safety --pp2 {data}/pp/votes.csv --thumbnail --out t.csv --study {study}",
        "not a study",
    ),
    c("none", f"eval safety --pp2 {PP2} --thumbnail --out t.csv --seed -1", "--seed"),
    c("none", f"eval safety --pp2 {PP2} --thumbnail --out t.csv --image-size 0", "--image-size"),
    c("none", f"eval safety --pp2 {PP2} --thumbnail --out t.csv --workers -1", "--workers"),
    c("none", f"eval safety --pp2 {PP2} --thumbnail --out t.csv --device gpu", "--device"),
    c(
        "none",
        f"eval safety --pp2 {PP2} --out t.csv --checkpoint {{data}}/missing.pth.tar",
        "does not exist",
    ),
    c("none", f"eval safety --pp2 {PP2} --out t.csv --model vit_test_patch8", "--random-init"),
    # socioeconomic
    c("none", f"eval socioeconomic {S} {ZONES} --indicators x.csv", "not a study"),
    c("sim", f"eval socioeconomic {S} {ZONES} {TRUTH}", "embed"),
    c(
        "full",
        f"eval socioeconomic {S} {ZONES} --indicators {{data}}/missing.csv",
        "does not exist",
    ),
    c("full", f"eval socioeconomic {S} {ZONES} {TRUTH} --seed -1", "--seed"),
    c("full", f"eval socioeconomic {S} --level buffer --buffer 0 {TRUTH}", "--buffer"),
    c("full", f"eval socioeconomic {S} {ZONES} {TRUTH} --min-images 0", "--min-images"),
    c("full", f"eval socioeconomic {S} {ZONES} {TRUTH} --out {{study}}/reports", "directory"),
    c("full", f"eval socioeconomic {S} {ZONES} {TRUTH} --out t.txt", ".csv"),
    c("full", f"eval socioeconomic {S} {ZONES} {TRUTH} --model nosuch", "nosuch"),
    c("full", f"eval socioeconomic {S} {ZONES} {TRUTH} --columns absent", "logcrime"),
    c("full", f"eval socioeconomic {S} {ZONES} {TRUTH} --protocol kfold3", "--protocol"),
    c(
        "full",
        f"eval socioeconomic {S} --zones {{data}}/missing.gpkg --id-field zone_id {TRUTH}",
        "does not exist",
    ),
    c("full", f"eval socioeconomic {S} --level hex --cell-size 0 {TRUTH}", "--cell-size"),
    c("full", f"eval socioeconomic {S} {ZONES} {TRUTH} --topics {{data}}/notes.txt", "--topics"),
    # attention
    c("none", "eval attention --images {data}/pp/images --thumbnail --out a.csv", "no attention"),
    c("none", "eval attention --images {data}/pp/images --out a.csv", "name at least one"),
    c(
        "none",
        "eval attention --images {data}/pp/images --model vit_test_patch8 --random-init",
        "--out",
    ),
    c(
        "none",
        f"eval attention --images {{data}}/pp/images {RANDOM} --out a.csv --max-images 0",
        "--max-images",
    ),
    c(
        "none",
        f"eval attention --images {{data}}/pp/images {RANDOM} --out a.csv --batch-size 0",
        "--batch-size",
    ),
    c(
        "none",
        f"eval attention --images {{data}}/pp/images {RANDOM} --out a.csv --query-patch x",
        "row,col",
    ),
    c(
        "none",
        f"eval attention --images {{data}}/pp/images {RANDOM} --out a.csv --query-patch 100,100",
        "outside",
    ),
    c("none", f"eval attention --images {{data}}/pp/images {RANDOM} --out a.txt", ".csv"),
    c("none", f"eval attention --images {{data}}/missing {RANDOM} --out a.csv", "not a folder"),
    c("none", f"eval attention --images {{data}}/notes.txt {RANDOM} --out a.csv", "not a folder"),
    c("none", f"eval attention --images {{data}}/empty {RANDOM} --out a.csv", "no image files"),
    c(
        "none",
        f"eval attention --images {{data}}/pp/images {RANDOM} --out a.csv --image-size 0",
        "--image-size",
    ),
    c(
        "none",
        f"eval attention --images {{data}}/pp/images {RANDOM} --out a.csv --workers -1",
        "--workers",
    ),
    c(
        "none",
        f"eval attention --images {{data}}/pp/images {RANDOM} --out a.csv --seed -1",
        "--seed",
    ),
    c("none", f"eval attention {S} {RANDOM}", "not a study"),
    c("points", f"eval attention {S} {RANDOM}", "captures"),
    c(
        "none",
        "eval attention --images {data}/pp/images --out a.csv "
        "--checkpoint {data}/truncated.pth.tar --device cpu",
        "truncated",
    ),
]

EXPERIMENT = [
    c("none", f"experiment {S} --epochs 0", "--epochs"),
    c("none", f"experiment {S} --max-pairs -5", "--max-pairs"),
    c("none", f"experiment {S} --batch-size 0", "--batch-size"),
    c("none", f"experiment {S} --base-lr 0", "--base-lr"),
    c("none", f"experiment {S} --base-lr -1e-3", "--base-lr"),
    c("none", f"experiment {S} --device tpu", "--device"),
    c("none", f"experiment {S} --preset gpu", "--preset"),
    c("none", f"experiment {S} --seed -1", "--seed"),
    c("none", f"experiment {S} --baseline {{data}}/missing.pth", "--baseline"),
    c("none", "experiment --study {data}/notes.txt", "--study"),
    c("points", f"experiment {S} --epochs 0", "--epochs"),
]

CASES = (
    SAMPLE
    + HARVEST
    + PAIRS
    + PRETRAIN
    + EMBED
    + EXPORT
    + PREDICT
    + MAP
    + SIMULATE
    + DEMO
    + EVAL
    + EXPERIMENT
)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    """The study kinds of the module docstring, each built once."""
    from urbanvis import stages as uv

    root = tmp_path_factory.mktemp("kinds")
    points = make_points_study(root / "points")
    sim = make_simulated_study(root / "sim")
    full = root / "full"
    shutil.copytree(sim, full)
    uv.simulate(full, truth=True, points_per_zone=20)
    uv.pairs(full, strategy="temporal", max_pairs=200)
    uv.pretrain(full, pairs="temporal", arch="vit_test_patch8", epochs=1, batch_size=32, dim=16,
                mlp_dim=64, workers=0, device="cpu", name="tiny")  # fmt: skip
    uv.embed(full, model="vit_test_patch8", random_init=True, device="cpu", workers=0)
    uv.predict(full, zones=full / "study.gpkg", zones_layer="zones_sim", id_field="zone_id",
               indicators=full / "truth" / "indicators.csv")  # fmt: skip
    kinds = {"points": points, "sim": sim, "full": full}
    BASE_TREES.update({kind: tree(folder) for kind, folder in kinds.items()})
    return kinds


BASE_TREES: dict[str, dict[str, str]] = {}


@pytest.fixture(scope="module")
def data(tmp_path_factory, studies) -> Path:
    """The input files the cases name as ``{data}/...``; never written by any case (see
    :func:`test_no_case_wrote_into_the_inputs`)."""
    folder = make_data(tmp_path_factory.mktemp("data"), studies["full"])
    DATA_TREE.update(tree(folder))
    return folder


DATA_TREE: dict[str, str] = {}


def make_data(folder: Path, full: Path) -> Path:
    import geopandas as gpd
    import torch
    from shapely.geometry import Point, Polygon

    from urbanvis import stages as uv
    from urbanvis.engine.encoders import create_encoder

    (folder / "notes.txt").write_text("hello\n")
    for name in ("notes.osm.pbf", "notes.parquet", "notes.joblib"):
        (folder / name).write_text("hello\n")
    (folder / "key.txt").write_text("not-a-real-key\n")
    (folder / "empty.osm.pbf").touch()
    (folder / "empty.pth.tar").touch()
    (folder / "empty").mkdir()
    (folder / "bad_manifest.csv").write_text("file,x,y\na.jpg,24.94,60.167\n")
    (folder / "indicators_noid.csv").write_text("id,value\n1,2.0\n")
    bowtie = Polygon([(24.935, 60.165), (24.945, 60.170), (24.945, 60.165), (24.935, 60.170)])
    gpd.GeoDataFrame({"id": [1], "zone_id": ["Z1"]}, geometry=[bowtie], crs=4326).to_file(
        folder / "bowtie.gpkg"
    )
    metres = Polygon([(385000, 6672000), (386000, 6672000), (386000, 6673000), (385000, 6673000)])
    gpd.GeoDataFrame({"id": [1]}, geometry=[metres], crs=4326).to_file(folder / "metres.gpkg")
    square = Polygon([(24.935, 60.165), (24.945, 60.165), (24.945, 60.170), (24.935, 60.170)])
    gpd.GeoDataFrame({"id": [1]}, geometry=[square], crs=4326).to_file(folder / "zones.gpkg")
    with warnings.catch_warnings():  # pyogrio warns that the file will have no CRS: the point
        warnings.simplefilter("ignore", UserWarning)
        gpd.GeoDataFrame({"id": [1]}, geometry=[square]).to_file(folder / "nocrs.gpkg")
    gpd.GeoDataFrame({"id": [1]}, geometry=[Point(24.94, 60.167)], crs=4326).to_file(
        folder / "points.gpkg"
    )
    gpd.GeoDataFrame({"id": []}, geometry=[], crs=4326).to_file(folder / "empty.gpkg")
    ckpt = full / "checkpoints" / "tiny" / "checkpoint_0001.pth.tar"
    shutil.copy(ckpt, folder / "tiny.pth.tar")
    (folder / "truncated.pth.tar").write_bytes(ckpt.read_bytes()[:1000])
    wider = create_encoder("vit_mini_patch16").state_dict()  # 128 wide, not 32
    torch.save({"arch": "vit_test_patch8", "model": wider}, folder / "other_arch.pth.tar")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, folder / "no_backbone.pth.tar")
    uv.simulate(vpr_set=folder / "vpr", places=6, size=32)
    uv.simulate(safety_set=folder / "pp", images=30, size=32)
    return folder


def tree(folder: Path) -> dict[str, str]:
    """Every file (sha256) and folder under ``folder``, excluding nothing."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        )
        for p in sorted(folder.rglob("*"))
    }


def workspace(base: Path | None, folder: Path) -> Path:
    """``folder`` holding a copy of the study ``base`` as study/ (images hard-linked: no
    command rewrites an image in place, and a new or removed file shows in the tree)."""
    folder.mkdir()
    if base is not None:

        def link_images(src: str, dst: str) -> None:
            if f"{os.sep}images{os.sep}" in src:
                os.link(src, dst)
            else:
                shutil.copy2(src, dst)

        shutil.copytree(base, folder / "study", copy_function=link_images)
    return folder


def run_case(case: Case, studies: dict[str, Path], data: Path, folder: Path):
    ws = workspace(studies.get(case.kind), folder)
    values = {"study": str(ws / "study"), "data": str(data), "pbf": str(helsinki_pbf())}
    args = [a.format(**values) for a in shlex.split(case.args)]
    before = tree(ws)
    result = invoke(*args, cwd=ws)
    return result, before, tree(ws), values


# ----------------------------------------------------------------------------- the test
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, studies, data, tmp_path):
    result, before, after, values = run_case(case, studies, data, tmp_path / "ws")
    lines = visible_lines(result.stdout) + visible_lines(result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, lines)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    fragment = case.fragment.format(**values)
    assert fragment.lower() in lines[0].lower(), (fragment, lines[0])
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, changed


def test_the_catalogue_covers_every_command():
    commands = {" ".join(case.args.split()[:2]) if case.args.startswith("eval") else
                case.args.split()[0] for case in CASES}  # fmt: skip
    assert commands >= {
        "sample", "harvest", "pairs", "pretrain", "embed", "export", "predict", "map", "simulate",
        "demo",
        "eval vpr", "eval safety", "eval socioeconomic", "eval attention", "experiment",
    }  # fmt: skip
    assert len(CASES) >= 150
    assert len({case.id for case in CASES}) == len(CASES)


def test_no_case_wrote_into_the_inputs(data, studies):
    """Runs after the cases: the shared inputs and base studies are as they were made."""
    assert tree(data) == DATA_TREE
    assert {kind: tree(folder) for kind, folder in studies.items()} == BASE_TREES
