"""The MoCo v3 engine, piece by piece, against naive references (design section 6).

Each test builds tiny tensors or the tiny test ViT; nothing here trains for more than one
step. Training, resume, DDP and the CLI's errors are in ``test_engine_training.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from torch import nn  # noqa: E402

from urbanvis._errors import InputError, InputFileError  # noqa: E402
from urbanvis.engine import create_encoder, encoder_info, list_encoders, load_encoder  # noqa: E402
from urbanvis.engine.data import check_images, epoch_order, read_pair_table  # noqa: E402
from urbanvis.engine.encoders import (  # noqa: E402
    backbone_state,
    read_checkpoint,
    sincos_position_embedding,
)
from urbanvis.engine.heads import mlp, predictor, projector  # noqa: E402
from urbanvis.engine.loss import ContrastiveLoss  # noqa: E402
from urbanvis.engine.moco import MoCo  # noqa: E402
from urbanvis.engine.pretrain import PretrainConfig, save_checkpoint  # noqa: E402
from urbanvis.engine.schedules import absolute_lr, learning_rate, momentum  # noqa: E402

TINY = "vit_test_patch8"


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def tiny_moco(*, dim: int = 16, mlp_dim: int = 32) -> MoCo:
    return MoCo(create_encoder(TINY), dim=dim, mlp_dim=mlp_dim)


def images(n: int = 8, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size)


# ------------------------------------------------------------------------------ loss
def naive_ctr(q: list[list[float]], k: list[list[float]], temperature: float) -> float:
    """InfoNCE of query i against all keys, label i: loop by loop, explicit log-sum-exp."""

    def unit(v):
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    qs, ks = [unit(v) for v in q], [unit(v) for v in k]
    total = 0.0
    for i, qi in enumerate(qs):
        logits = [sum(a * b for a, b in zip(qi, kj, strict=True)) / temperature for kj in ks]
        top = max(logits)
        log_sum_exp = top + math.log(sum(math.exp(z - top) for z in logits))
        total += log_sum_exp - logits[i]  # -log softmax of the positive
    return total / len(qs) * 2 * temperature


@pytest.mark.parametrize(
    ("n", "d", "temperature"), [(4, 3, 0.2), (16, 8, 0.2), (7, 32, 0.1), (32, 16, 1.0)]
)
def test_loss_equals_naive_formula(n, d, temperature):
    q1, q2, k1, k2 = (torch.randn(n, d) * 3 for _ in range(4))
    got = ContrastiveLoss(temperature)(q1, q2, k1, k2)
    want = naive_ctr(q1.tolist(), k2.tolist(), temperature) + naive_ctr(
        q2.tolist(), k1.tolist(), temperature
    )
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_loss_is_low_for_matching_keys_and_scale_free():
    q = torch.randn(8, 16)
    loss = ContrastiveLoss(0.2)
    # keys equal to the queries: the positive dominates; rescaling changes nothing (normalised)
    assert loss(q, q, q * 5, q * 0.1).item() < loss(q, q, torch.randn(8, 16), torch.randn(8, 16))
    assert loss(q, q, q, q).item() == pytest.approx(loss(q, q, q * 7, q * 3).item(), rel=1e-6)


def test_loss_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveLoss(0.0)


# ------------------------------------------------------------------------- schedules
def closed_form_lr(t, lr, warmup, epochs):
    if t < warmup:
        return lr * t / warmup
    return lr / 2 * (1 + math.cos(math.pi * (t - warmup) / (epochs - warmup)))


def closed_form_m(t, base, epochs):
    return 1 - (1 + math.cos(math.pi * t / epochs)) / 2 * (1 - base)


@pytest.mark.parametrize(
    "t", [0.0, 0.5, 20.0, 39.999, 40.0, 40.001, 100.0, 170.0, 250.25, 299.9, 300.0]
)
def test_learning_rate_closed_form(t):
    lr = absolute_lr(1.5e-4, 1024)
    got = learning_rate(t, lr=lr, warmup_epochs=40, epochs=300)
    assert got == pytest.approx(closed_form_lr(t, lr, 40, 300), rel=1e-12, abs=1e-18)


def test_learning_rate_landmarks():
    lr = 6e-4
    assert learning_rate(0, lr=lr, warmup_epochs=40, epochs=300) == 0
    assert learning_rate(20, lr=lr, warmup_epochs=40, epochs=300) == pytest.approx(lr / 2)
    assert learning_rate(40, lr=lr, warmup_epochs=40, epochs=300) == pytest.approx(lr)  # peak
    assert learning_rate(170, lr=lr, warmup_epochs=40, epochs=300) == pytest.approx(lr / 2)
    assert learning_rate(300, lr=lr, warmup_epochs=40, epochs=300) == pytest.approx(0, abs=1e-20)
    # no warmup at all
    assert learning_rate(0, lr=lr, warmup_epochs=0, epochs=10) == pytest.approx(lr)


@pytest.mark.parametrize("t", [0.0, 1.0, 75.0, 150.0, 222.5, 299.0, 300.0])
@pytest.mark.parametrize("base", [0.99, 0.996])
def test_momentum_closed_form(t, base):
    assert momentum(t, base=base, epochs=300) == pytest.approx(
        closed_form_m(t, base, 300), rel=1e-12
    )


def test_momentum_landmarks_and_linear_scaling():
    assert momentum(0, base=0.99, epochs=300) == pytest.approx(0.99)
    assert momentum(150, base=0.99, epochs=300) == pytest.approx(0.995)
    assert momentum(300, base=0.99, epochs=300) == pytest.approx(1.0)
    # the paper's "6e-6" typo: base 1.5e-4 at batch 1024 is 6e-4
    assert absolute_lr(1.5e-4, 1024) == pytest.approx(6e-4)
    assert PretrainConfig().warmup == pytest.approx(40)


# ---------------------------------------------------------------------------- heads
def layout(seq: nn.Sequential) -> list[tuple]:
    """(kind, in, out, bias-or-affine) of each layer."""
    out = []
    for layer in seq:
        if isinstance(layer, nn.Linear):
            out.append(("linear", layer.in_features, layer.out_features, layer.bias is not None))
        elif isinstance(layer, nn.BatchNorm1d):
            out.append(("bn", layer.num_features, layer.num_features, layer.affine))
        elif isinstance(layer, nn.ReLU):
            out.append(("relu",))
        else:  # pragma: no cover - a failing layout
            out.append((type(layer).__name__,))
    return out


def reference_projector(d_in, hidden, d_out):
    return [
        ("linear", d_in, hidden, False),
        ("bn", hidden, hidden, True),
        ("relu",),
        ("linear", hidden, hidden, False),
        ("bn", hidden, hidden, True),
        ("relu",),
        ("linear", hidden, d_out, False),
        ("bn", d_out, d_out, False),
    ]


def reference_predictor(dim, hidden):
    return [
        ("linear", dim, hidden, False),
        ("bn", hidden, hidden, True),
        ("relu",),
        ("linear", hidden, dim, False),
        ("bn", dim, dim, False),
    ]


def test_heads_have_the_reference_layout():
    assert layout(projector(32, 64, 16)) == reference_projector(32, 64, 16)
    assert layout(predictor(16, 64)) == reference_predictor(16, 64)
    assert layout(mlp(3, 768, 4096, 256)) == reference_projector(768, 4096, 256)
    assert layout(mlp(2, 256, 4096, 256)) == reference_predictor(256, 4096)


def test_vit_base_moco_widths_on_meta_device():
    with torch.device("meta"):
        model = MoCo(create_encoder("vit_base_patch16_224"))
    assert model.base_encoder.embed_dim == 768
    assert layout(model.base_encoder.head) == reference_projector(768, 4096, 256)
    assert layout(model.momentum_encoder.head) == reference_projector(768, 4096, 256)
    assert layout(model.predictor) == reference_predictor(256, 4096)
    assert model.criterion.temperature == 0.2


# ------------------------------------------------------------------- encoder registry
@pytest.mark.parametrize("name", list_encoders())
def test_registry_builds_every_encoder(name):
    info = encoder_info(name)
    grid = info.input_size // info.patch_size
    with torch.device("meta"):
        model = create_encoder(name)
    assert model.pos_embed.shape == (1, 1 + grid * grid, info.embed_dim)
    assert model.num_classes == 0 and len(model.blocks) == info.depth
    assert not model.patch_embed.proj.weight.requires_grad
    assert not model.pos_embed.requires_grad


@pytest.mark.parametrize("name", list_encoders("vit_*_patch8") + list_encoders("vit_mini*"))
def test_small_encoders_give_cls_features(name):
    info = encoder_info(name)
    model = create_encoder(name).eval()
    x = images(2, info.input_size)
    with torch.no_grad():
        tokens = model.forward_features(x)
        cls = model.forward_head(tokens, pre_logits=True)
        assert torch.equal(cls, tokens[:, 0])  # the [CLS] token after the final LayerNorm
        assert torch.equal(model(x), cls)
    assert cls.shape == (2, info.embed_dim)
    assert not torch.allclose(cls.norm(dim=1), torch.ones(2))  # not normalised


def test_unknown_encoder_suggests_close_names():
    with pytest.raises(InputError, match="vit_base_patch16_224") as info:
        create_encoder("vit_bse_patch16_224")
    assert "list_encoders" in str(info.value)
    assert encoder_info("ViT_Base").name == "vit_base_patch16_224"  # aliases
    assert list_encoders("vit_*_224") == [
        "vit_base_patch16_224",
        "vit_large_patch16_224",
        "vit_small_patch16_224",
        "vit_tiny_patch16_224",
    ]


def test_image_size_must_fit_the_patches():
    with pytest.raises(InputError, match="multiple of the patch size"):
        create_encoder(TINY, img_size=36)


# ------------------------------------------------------------------ position embedding
def reference_sincos(h: int, w: int, dim: int, temperature: float = 1e4) -> list[list[float]]:
    """MoCo v3's build_2d_sincos_position_embedding, loop by loop: tokens run over the
    first grid axis (``w`` there) slowly and the second fast, [CLS] slot zero."""
    quarter = dim // 4
    omega = [1.0 / temperature ** (d / quarter) for d in range(quarter)]
    rows = [[0.0] * dim]
    for i in range(w):
        for j in range(h):
            rows.append(
                [math.sin(i * o) for o in omega]
                + [math.cos(i * o) for o in omega]
                + [math.sin(j * o) for o in omega]
                + [math.cos(j * o) for o in omega]
            )
    return rows


@pytest.mark.parametrize(("grid", "dim"), [((2, 2), 4), ((4, 4), 32), ((3, 5), 8), ((7, 7), 12)])
def test_sincos_equals_reference(grid, dim):
    got = sincos_position_embedding(grid, dim)
    want = torch.tensor(reference_sincos(*grid, dim))
    assert got.shape == (1, 1 + grid[0] * grid[1], dim)
    torch.testing.assert_close(got[0], want, rtol=1e-5, atol=1e-6)


def test_sincos_width_must_divide_by_four():
    with pytest.raises(InputError, match="divisible by 4"):
        sincos_position_embedding((2, 2), 6)


def test_backbone_position_embedding_is_fixed_sincos():
    model = create_encoder(TINY)  # 32 px / 8 px patches: a 4 x 4 grid, width 32
    want = torch.tensor(reference_sincos(4, 4, 32))
    torch.testing.assert_close(model.pos_embed.detach()[0], want, rtol=1e-5, atol=1e-6)
    assert not model.pos_embed.requires_grad


# ---------------------------------------------------------------------- the MoCo model
def test_backward_leaves_patch_projection_pos_embed_and_momentum_encoder_without_grad():
    model = tiny_moco().train()
    loss = model(images(), images(), 0.99)
    loss.backward()
    base = model.base_encoder
    for p in (base.patch_embed.proj.weight, base.patch_embed.proj.bias, base.pos_embed):
        assert p.grad is None and not p.requires_grad
    assert all(p.grad is None and not p.requires_grad for p in model.momentum_encoder.parameters())
    # everything else in the online branch learns
    learns = [n for n, p in model.named_parameters() if p.requires_grad]
    assert learns and all(model.get_parameter(n).grad is not None for n in learns)
    assert any(n.startswith("predictor.") for n in learns)
    assert any(n.startswith("base_encoder.head.") for n in learns)
    assert any(n.startswith("base_encoder.blocks.") for n in learns)


@pytest.mark.parametrize("m", [0.0, 0.5, 0.99, 1.0])
def test_momentum_update_comes_before_the_keys(m):
    model = tiny_moco().train()
    # make the two encoders differ, as they do after some training
    with torch.no_grad():
        for p in model.base_encoder.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    online = [p.detach().clone() for p in model.base_encoder.parameters()]
    old = [p.detach().clone() for p in model.momentum_encoder.parameters()]
    seen = []  # the momentum weights when the keys are computed
    model.momentum_encoder.register_forward_pre_hook(
        lambda mod, args: seen.append([p.detach().clone() for p in mod.parameters()])
    )
    x1, x2 = images(), images()
    loss = model(x1, x2, m)
    want = [m * o + (1 - m) * q for o, q in zip(old, online, strict=True)]
    after = list(model.momentum_encoder.parameters())
    for got, expected in zip(after, want, strict=True):
        torch.testing.assert_close(got.detach(), expected, rtol=1e-6, atol=1e-7)
    assert len(seen) == 2  # keys of both views, both with the updated weights
    for snapshot in seen:
        for got, expected in zip(snapshot, want, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    # forward does not move the online encoder
    for p, before in zip(model.base_encoder.parameters(), online, strict=True):
        assert torch.equal(p.detach(), before)
    assert torch.isfinite(loss)


def test_forward_is_the_symmetric_loss_of_predicted_queries_and_momentum_keys():
    model = tiny_moco()
    model.eval()  # BN from running statistics, so calling twice gives the same numbers
    x1, x2 = images(), images()
    with torch.no_grad():
        got = model(x1, x2, 1.0)  # m = 1: the momentum encoder does not move
        q1 = model.predictor(model.base_encoder(x1))
        q2 = model.predictor(model.base_encoder(x2))
        k1, k2 = model.momentum_encoder(x1), model.momentum_encoder(x2)
    want = naive_ctr(q1.tolist(), k2.tolist(), 0.2) + naive_ctr(q2.tolist(), k1.tolist(), 0.2)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_momentum_encoder_starts_as_a_copy():
    model = tiny_moco()
    online = model.base_encoder.state_dict()
    for key, value in model.momentum_encoder.state_dict().items():
        assert torch.equal(value, online[key])
        assert value.data_ptr() != online[key].data_ptr()


# -------------------------------------------------------------------------- checkpoints
def write_checkpoint(tmp_path: Path, model: MoCo) -> Path:
    config = PretrainConfig(arch=TINY, epochs=1, batch_size=8, dim=16, mlp_dim=32)
    optimizer = torch.optim.AdamW(model.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return save_checkpoint(
        tmp_path,
        model,
        optimizer,
        scaler,
        config,
        1,
        [2.5],
        pairs=tmp_path / "pairs.parquet",
        image_size=32,
    )


def test_checkpoint_has_the_reference_format(tmp_path):
    model = tiny_moco()
    path = write_checkpoint(tmp_path, model)
    assert path.name == "checkpoint_0001.pth.tar"
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically
    ckpt = read_checkpoint(path)
    assert {"epoch", "arch", "state_dict", "optimizer", "scaler"} <= set(ckpt)
    assert ckpt["epoch"] == 1 and ckpt["arch"] == TINY
    keys = list(ckpt["state_dict"])
    prefixes = ("module.base_encoder.", "module.momentum_encoder.", "module.predictor.")
    assert all(k.startswith(prefixes) for k in keys), [
        k for k in keys if not k.startswith(prefixes)
    ]
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in keys)
    assert "module.base_encoder.head.0.weight" in keys  # the projector sits at .head
    assert "module.momentum_encoder.head.0.weight" in keys
    assert len(keys) == len(model.state_dict())
    assert ckpt["urbanvis"]["image_size"] == 32 and ckpt["urbanvis"]["losses"] == [2.5]


def cls_features(model, x):
    model.eval()
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


def test_load_encoder_reads_urbanvis_and_timm_files_alike(tmp_path):
    model = tiny_moco()
    with torch.no_grad():  # weights unlike a fresh encoder's, so a wrong load is visible
        for p in model.base_encoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    urbanvis_path = write_checkpoint(tmp_path, model)

    backbone = create_encoder(TINY)
    state = {k: v for k, v in model.base_encoder.state_dict().items() if not k.startswith("head.")}
    backbone.load_state_dict(state)
    timm_path = tmp_path / "deit_style.pth"
    torch.save({"model": backbone.state_dict()}, timm_path)
    plain_path = tmp_path / "plain.pth"
    torch.save(backbone.state_dict(), plain_path)

    x = images(4)
    want = cls_features(backbone, x)
    fresh = cls_features(create_encoder(TINY), x)
    assert not torch.allclose(want, fresh)
    for path in (urbanvis_path, timm_path, plain_path):
        loaded = load_encoder(path)
        assert isinstance(loaded.head, nn.Identity)  # the projector is dropped
        assert torch.equal(cls_features(loaded, x), want), path.name
        assert not loaded.patch_embed.proj.weight.requires_grad
    assert load_encoder(urbanvis_path).urbanvis_source.startswith("moco-v3:checkpoint_0001")
    assert load_encoder(timm_path).urbanvis_source.startswith("timm:deit_style.pth")


def test_backbone_state_kinds():
    sd = {
        "module.base_encoder.blocks.0.w": 1,
        "module.base_encoder.head.0.weight": 2,
        "module.momentum_encoder.blocks.0.w": 3,
        "module.predictor.0.weight": 4,
    }
    assert backbone_state({"state_dict": sd}) == ({"blocks.0.w": 1}, "moco-v3")
    assert backbone_state({"model": {"blocks.0.w": 1, "head.weight": 2}}) == (
        {"blocks.0.w": 1},
        "timm",
    )
    with pytest.raises(InputError, match="no ViT backbone"):
        backbone_state({"model": {"fc.weight": 1}})
    with pytest.raises(InputError, match="no weights"):
        backbone_state({"state_dict": {}})
    with pytest.raises(InputError, match="not a dict"):
        backbone_state([1, 2])


@pytest.mark.parametrize("content", ["truncated", "text", "empty", "missing", "list"])
def test_load_encoder_refuses_broken_and_foreign_files(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content == "truncated":
        write_checkpoint(tmp_path, tiny_moco()).rename(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "text":
        path.write_text("these are not the weights you are looking for\n")
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "list":
        torch.save([1, 2, 3], path)
    expected = {
        "truncated": "truncated or not a PyTorch checkpoint",
        "text": "truncated or not a PyTorch checkpoint|cannot be read",
        "empty": "is empty",
        "missing": "does not exist",
        "list": "not a dict",
    }
    with pytest.raises((InputError, InputFileError), match=expected[content]):
        load_encoder(path)


def test_load_encoder_with_the_wrong_arch(tmp_path):
    path = write_checkpoint(tmp_path, tiny_moco())
    with pytest.raises(InputError, match="another shape than vit_mini_patch16"):
        load_encoder(path, arch="vit_mini_patch16")


# -------------------------------------------------------------------------------- data
def test_epoch_order_depends_on_seed_and_epoch_only():
    a = epoch_order(100, seed=3, epoch=5)
    assert sorted(a) == list(range(100))
    assert (a == epoch_order(100, seed=3, epoch=5)).all()
    assert not (a == epoch_order(100, seed=3, epoch=6)).all()
    assert not (a == epoch_order(100, seed=4, epoch=5)).all()


def test_pair_table_and_missing_images(tmp_path):
    import pandas as pd

    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    table = pd.DataFrame(
        {"image_a": ["a.jpg", "a.jpg", "c.jpg"], "image_b": ["b.jpg", "d.jpg", "b.jpg"]}
    )
    table.to_parquet(tmp_path / "pairs.parquet")
    assert len(read_pair_table(tmp_path / "pairs.parquet")) == 3
    kept = check_images(tmp_path, table, on_missing="skip")
    assert kept.to_dict("list") == {"image_a": ["a.jpg"], "image_b": ["b.jpg"]}
    with pytest.raises(InputFileError, match="2 images .* missing .*2 pairs"):
        check_images(tmp_path, table, on_missing="stop")
    table.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(InputError, match="empty"):
        read_pair_table(tmp_path / "empty.parquet")
    table[["image_a"]].to_parquet(tmp_path / "half.parquet")
    with pytest.raises(InputError, match="lacks image_b"):
        read_pair_table(tmp_path / "half.parquet")


def test_create_encoder_accepts_a_checkpoint_path(tmp_path):
    from urbanvis.engine.encoders import create_encoder

    model = create_encoder("vit_test_patch8")
    path = tmp_path / "plain.pth"
    torch.save({"model": model.state_dict()}, path)
    again = create_encoder(str(path))
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    again.eval()
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), again.forward_features(x))
    with pytest.raises(InputFileError):
        create_encoder(str(tmp_path / "missing.pth"))


# ----------------------------------------------------------- device and process group
def test_pick_device_names(monkeypatch):
    from urbanvis.engine.distributed import init_distributed, pick_device

    assert pick_device("cpu", 3) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto", 0) == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(InputError, match="no CUDA GPU") as info:
            pick_device(name, 0)
        assert info.value.param == "device"
    for name in ("gpu", "cuda:", "cuda:x", "mps0"):
        with pytest.raises(InputError, match="device must be auto, cpu, cuda or cuda:N"):
            pick_device(name, 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed(torch.device("cpu")) == (0, 1, False)


def test_cuda_is_the_local_rank_and_cuda_n_is_honoured(monkeypatch):
    """Under torchrun ``cuda`` is GPU LOCAL_RANK; an explicit ``cuda:N`` is GPU N."""
    from urbanvis.engine.distributed import pick_device

    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    assert pick_device("cuda", 2) == torch.device("cuda", 2)
    assert pick_device("auto", 1) == torch.device("cuda", 1)
    assert pick_device("cuda:3", 2) == torch.device("cuda", 3)
    assert current == [2, 1, 3]
    with pytest.raises(InputError, match="cuda:7"):
        pick_device("cuda:7", 0)


def test_pretrain_and_inference_share_the_helpers():
    from urbanvis.engine import distributed, gpu_views, inference, pretrain
    from urbanvis.engine.decode import decode_images

    for module in (pretrain, inference):
        assert module.pick_device is distributed.pick_device
        assert module.init_distributed is distributed.init_distributed
    assert gpu_views.decode_images is decode_images is inference.decode_images


def test_decode_batch_refuses_an_undecodable_image_and_reads_bytes(tmp_path):
    import io

    from PIL import Image

    from urbanvis.engine.data import PairBytesDataset
    from urbanvis.engine.gpu_views import decode_batch

    buf = io.BytesIO()
    Image.new("RGB", (12, 8), (200, 10, 10)).save(buf, "PNG")
    png = buf.getvalue()
    batch = decode_batch([png, bytearray(png)], torch.device("cpu"))
    assert batch.shape == (2, 3, 8, 12) and abs(float(batch[0, 0].mean()) - 200 / 255) < 1e-6
    with pytest.raises(InputFileError, match="1 image.* cannot be decoded"):
        decode_batch([png, b"not an image"], torch.device("cpu"))
    # workers hand over plain bytes, not a shared-memory tensor per image
    import pandas as pd

    (tmp_path / "a.png").write_bytes(png)
    item = PairBytesDataset(tmp_path, pd.DataFrame({"image_a": ["a.png"], "image_b": ["a.png"]}))[0]
    assert all(isinstance(x, bytes) for x in item) and item[0] is item[1]
