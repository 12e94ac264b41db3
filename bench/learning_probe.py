"""Does CPU pretraining learn places? A diagnostic, not a benchmark of speed.

Builds a small synthetic study (train: a Helsinki bbox, 4 dates x 2 headings per point at
64 px; test: another bbox, 2 dates, 1 heading), then measures place recognition on the
test places (database = first date, queries = second date; positives within 25 m and,
stricter, the same point) for the colour-thumbnail and random-init baselines, or for one
pretraining run. Every figure of the investigation in the session notes came from it:

    python bench/learning_probe.py setup
    python bench/learning_probe.py baselines
    python bench/learning_probe.py run --name B --strategy temporal --lr 4e-3 --warmup 1
    python bench/learning_probe.py run --name M --strategy mixed --lr 4e-3 --warmup 1
    python bench/learning_probe.py sanity --lr 1e-3 --noise 0.5

``vit_cpu`` (64 px, patch 8, width 128, depth 4) is registered here only; ``--min-scale``
replaces the crop scale of both views; ``--pool avg`` pools patch tokens instead of [CLS]
(training and evaluation); ``mixed`` trains on the self and temporal tables together.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path("/tmp/urbanvis-learning-probe")
TRAIN_BBOX = "24.925,60.160,24.945,60.170"
TEST_BBOX = "24.950,60.170,24.960,60.175"


def register_cpu_arch() -> None:
    from urbanvis.engine import encoders

    encoders._ARCHS["cnn_cpu"] = encoders.EncoderInfo(
        "cnn_cpu", 128, 1, 4, patch_size=16, input_size=64
    )  # a name for the config's checks; the model is small_cnn(), swapped in by run()

    encoders._ARCHS["vit_cpu"] = encoders.EncoderInfo(
        "vit_cpu", 128, 4, 4, patch_size=8, input_size=64
    )
    # 16 tokens instead of 64: about 4x the steps for the same CPU time
    encoders._ARCHS["vit_cpu16"] = encoders.EncoderInfo(
        "vit_cpu16", 128, 4, 4, patch_size=16, input_size=64
    )


def small_cnn(width: int = 128):
    """``cnn_cpu``: four stride-2 conv blocks and a global average pool (a probe of the
    architecture's part: a CNN's locality prior against a ViT's, at the same budget)."""
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [3, width // 4, width // 2, width, width]
            self.features = nn.Sequential(*[
                nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False),
                              nn.BatchNorm2d(b), nn.ReLU(inplace=True))
                for a, b in zip(chans[:-1], chans[1:], strict=True)
            ])  # fmt: skip
            self.embed_dim = width
            self.head = nn.Identity()

        def forward(self, x):
            return self.head(self.features(x).mean(dim=(2, 3)))

    return SmallCNN()


def cnn_features(checkpoint, files, size):
    """[pooled] features of a ``cnn_cpu`` checkpoint (its base encoder, head removed)."""
    import numpy as np
    import torch
    from PIL import Image

    from urbanvis.engine.transforms import eval_transform

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    net = small_cnn()
    prefix = "module.base_encoder."  # as the checkpoint stores it (the reference's keys)
    net.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                         if k.startswith(prefix) and not k.startswith(prefix + "head.")},
                        strict=True)  # fmt: skip
    net.eval()
    tf = eval_transform(size)
    out = []
    with torch.no_grad():
        for i in range(0, len(files), 128):
            batch = torch.stack([tf(Image.open(f).convert("RGB")) for f in files[i : i + 128]])
            out.append(net(batch).numpy())
    return np.concatenate(out)


def setup() -> None:
    from urbanvis import stages as uv

    uv.sample(ROOT / "train", osm=uv.helsinki_pbf(), bbox=TRAIN_BBOX)
    uv.harvest(ROOT / "train", provider="simulator", captures_per_point=4,
               headings=(0.0, 180.0), size=64, seed=0)  # fmt: skip
    uv.sample(ROOT / "test", osm=uv.helsinki_pbf(), bbox=TEST_BBOX)
    uv.harvest(ROOT / "test", provider="simulator", captures_per_point=2, headings=(0.0,),
               size=64, seed=0)  # fmt: skip


def test_set():
    from urbanvis import stages as uv

    st = uv.open_study(ROOT / "test")
    captures = st.read_layer("captures").sort_values(["point_id", "captured_at"])
    points = st.read_layer("points").set_index("point_id").to_crs(32635)
    first = captures.groupby("point_id").nth(0)
    second = captures.groupby("point_id").nth(1)
    database = [st.root / p for p in first["image_path"]]
    queries = [st.root / p for p in second["image_path"]]
    where = points.loc[first["point_id"]].geometry
    return database, queries, np.c_[where.x, where.y]


def recall(fdb: np.ndarray, fq: np.ndarray, xy: np.ndarray) -> dict[str, float]:
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    order = np.argsort(-(unit(fq) @ unit(fdb).T), axis=1, kind="stable")
    near = np.linalg.norm(xy[:, None] - xy[None], axis=2) <= 25  # query i is at point i
    out = {}
    for k in (1, 5, 10):
        out[f"R@{k}"] = 100 * float(np.mean([near[i, order[i, :k]].any() for i in range(len(fq))]))
        out[f"same@{k}"] = 100 * float(np.mean([(order[i, :k] == i).any() for i in range(len(fq))]))
    return {k: round(v, 1) for k, v in out.items()}


def features(spec, files, size):
    from urbanvis.evaluate.encoders import features_from_files

    return features_from_files(files, spec, image_size=size, device="cpu", workers=0)[0]


def baselines(args) -> None:
    from urbanvis.evaluate.encoders import encoder_specs, thumbnail_features

    database, queries, xy = test_set()
    print("thumbnail", recall(thumbnail_features(database), thumbnail_features(queries), xy))
    for seed in (0, 1):
        [spec] = encoder_specs(models=[args.arch], random_init=True, seed=seed)
        fdb, fq = features(spec, database, args.size), features(spec, queries, args.size)
        print("random init", seed, recall(fdb, fq, xy))


def patch_pipeline(args) -> None:
    """The CNN and the pooling, replaced in the engine for this process only (the crop
    scale, photometric strength and patch learning are the engine's own settings)."""
    import urbanvis.engine.inference as inference
    import urbanvis.engine.pretrain as pretrain
    from urbanvis.engine import encoders

    if args.arch == "cnn_cpu":

        def cnn(*a, **kw):
            return small_cnn()

        pretrain.create_encoder = cnn
    if args.pool == "avg":
        original = encoders.create_encoder

        def avg_pooled(*a, **kw):
            model = original(*a, **kw)
            model.global_pool = "avg"
            return model

        encoders.create_encoder = avg_pooled
        pretrain.create_encoder = avg_pooled
        inference.create_encoder = avg_pooled


def run(args) -> None:
    import pandas as pd

    from urbanvis import stages as uv
    from urbanvis.evaluate.encoders import encoder_specs

    patch_pipeline(args)
    train = ROOT / "train"
    started = time.time()
    if args.strategy == "mixed":
        tables = []
        for strategy in ("self", "temporal"):
            uv.pairs(train, strategy=strategy, max_pairs=args.max_pairs, seed=0)
            tables.append(pd.read_parquet(train / "pairs" / f"{strategy}.parquet"))
        pd.concat(tables, ignore_index=True).to_parquet(train / "pairs" / "mixed.parquet")
        n = sum(len(t) for t in tables)
    else:
        n = uv.pairs(train, strategy=args.strategy, max_pairs=args.max_pairs, seed=0).outputs[
            "pairs"
        ]
    result = uv.pretrain(
        train, pairs=args.strategy, name=args.name, arch=args.arch, image_size=args.size,
        epochs=args.epochs, batch_size=args.batch, base_lr=args.lr, warmup_epochs=args.warmup,
        mlp_dim=args.mlp, dim=args.dim, workers=2, device="cpu", augment="cpu",
        momentum=args.momentum, crop_min=args.min_scale, photometric=args.photometric,
        learn_patch=args.learn_patch,
        save_every=args.save_every or args.epochs,
    )  # fmt: skip
    losses = result.details.epoch_losses
    if args.arch == "cnn_cpu":  # not an urbanvis encoder: evaluated here
        database, queries, xy = test_set()
        for ckpt in sorted(result.files["checkpoint"].parent.glob("checkpoint_*.pth.tar")):
            got = recall(cnn_features(ckpt, database, args.size),
                         cnn_features(ckpt, queries, args.size), xy)  # fmt: skip
            print(json.dumps({"name": args.name, "checkpoint": ckpt.name, **got}), flush=True)
        print(json.dumps({"name": args.name, "loss0": round(losses[0], 3),
                          "lossN": round(losses[-1], 3)}), flush=True)  # fmt: skip
        return
    if args.save_every:  # R@1 after each saved epoch: does place recognition rise with steps?
        database, queries, xy = test_set()
        for ckpt in sorted(result.files["checkpoint"].parent.glob("checkpoint_*.pth.tar")):
            [spec] = encoder_specs([ckpt])
            fdb = features(spec, database, args.size)
            got = recall(fdb, features(spec, queries, args.size), xy)
            print(json.dumps({"name": args.name, "checkpoint": ckpt.name, **got}), flush=True)
    [spec] = encoder_specs([result.files["checkpoint"]])
    database, queries, xy = test_set()
    scores = recall(features(spec, database, args.size), features(spec, queries, args.size), xy)
    print(json.dumps({
        "name": args.name, "pairs": n, "steps": args.epochs * (n // args.batch),
        "secs": round(time.time() - started), "loss0": round(losses[0], 3),
        "lossN": round(losses[-1], 3), **scores,
    }), flush=True)  # fmt: skip


def sanity(args) -> None:
    """MoCo on fixed random images with additive-noise views: does the loss fall at all?"""
    import torch

    from urbanvis.engine.encoders import create_encoder
    from urbanvis.engine.moco import MoCo

    torch.manual_seed(0)
    model = MoCo(create_encoder(args.arch), dim=args.dim, mlp_dim=args.mlp, temperature=0.2)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    data = torch.randn(640, 3, args.size, args.size)
    model.train()
    for step in range(150):
        x = data[torch.randint(0, 640, (64,))]
        loss = model(x + args.noise * torch.randn_like(x), x + args.noise * torch.randn_like(x),
                     0.99)  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == 149:
            print(step, round(loss.item(), 3), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["setup", "baselines", "run", "sanity"])
    parser.add_argument("--name", default="probe")
    parser.add_argument("--strategy", default="temporal")
    parser.add_argument("--arch", default="vit_cpu")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-3, help="base lr (per 256 pairs)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--min-scale", type=float, default=0.08)
    parser.add_argument(
        "--photometric",
        type=float,
        default=1.0,
        help="scales the colour/grey/blur/solarize probabilities (0 = off)",
    )
    parser.add_argument(
        "--save-every",
        type=int,
        default=0,
        help="also evaluate a checkpoint saved every this many epochs",
    )
    parser.add_argument("--max-pairs", type=int, default=1_000_000)
    parser.add_argument("--mlp", type=int, default=512)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--pool", choices=["cls", "avg"], default="cls")
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--momentum", type=float, default=0.99, help="MoCo's base momentum")
    parser.add_argument(
        "--learn-patch",
        action="store_true",
        help="train the patch projection instead of MoCo v3's frozen one",
    )
    args = parser.parse_args()
    register_cpu_arch()
    {"setup": lambda a: setup(), "baselines": baselines, "run": run, "sanity": sanity}[args.what](
        args
    )


if __name__ == "__main__":
    sys.exit(main())
