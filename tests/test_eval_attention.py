"""urbanvis eval attention: mean attention distance, Fourier profile, attention maps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from urbanvis import stages as uv
from urbanvis._errors import InputError
from urbanvis.evaluate.attention import (
    attention_maps,
    log_amplitude_profile,
    mean_attention_distance,
    relative_log_amplitude,
)

from .conftest import invoke


# --------------------------------------------------------------------- mean distance
def _attention_to(grid, targets, cls_share=0.0):
    """(heads, 1 + P, 1 + P) attention; head h sends each query to targets[h](query)."""
    h, w = grid
    n = 1 + h * w
    out = np.zeros((len(targets), n, n))
    for head, target in enumerate(targets):
        for q in range(h * w):
            weights = target(q)  # (P,) summing to 1
            out[head, 1 + q, 0] = cls_share
            out[head, 1 + q, 1:] = (1 - cls_share) * weights
        out[head, 0, :] = 1.0 / n
    return out


def test_mean_distance_of_attention_to_one_patch_and_uniform():
    grid, patch = (3, 3), 16
    to_corner = np.eye(9)[0]  # every query attends to patch (0, 0)
    attn = _attention_to(grid, [lambda q: to_corner, lambda q: np.full(9, 1 / 9)], 0.4)
    got = mean_attention_distance(attn[None], grid, patch)
    cells = [(r, c) for r in range(3) for c in range(3)]
    corner = np.mean([patch * math.hypot(r, c) for r, c in cells])
    pairwise = np.mean(
        [patch * math.hypot(a[0] - b[0], a[1] - b[1]) for a, b in itertools.product(cells, cells)]
    )
    # the 40% on [CLS] is dropped and the patch rows renormalised: it changes nothing
    np.testing.assert_allclose(got, [corner, pairwise])
    assert corner == pytest.approx(16 * (0 + 1 + 2 + 1 + math.sqrt(2) + math.sqrt(5) + 2
                                         + math.sqrt(5) + math.sqrt(8)) / 9)  # fmt: skip


def test_mean_distance_of_attention_to_self_is_zero_and_to_neighbour_is_a_patch():
    grid = (2, 2)
    attn = _attention_to(grid, [lambda q: np.eye(4)[q], lambda q: np.eye(4)[q ^ 1]])
    np.testing.assert_allclose(mean_attention_distance(attn[None], grid, 8), [0.0, 8.0])


def test_attention_maps_are_the_query_rows_on_the_grid():
    grid = (2, 2)
    attn = _attention_to(grid, [lambda q: np.eye(4)[3 - q]] * 2, cls_share=0.5)
    maps = attention_maps(attn, grid, [(0, 0), (1, 0)])
    np.testing.assert_allclose(maps[0], [[0, 0], [0, 1]])
    np.testing.assert_allclose(maps[1], [[0, 1], [0, 0]])


# ------------------------------------------------------------------------ Fourier
def _tokens(maps):
    """(B, h, w, C) maps -> (B, 1 + h*w, C) tokens with a [CLS] of zeros first."""
    b, h, w, c = maps.shape
    return np.concatenate([np.zeros((b, 1, c)), maps.reshape(b, h * w, c)], axis=1)


def test_fourier_profile_equals_a_naive_dft():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(2, 4, 4, 3))
    want = []
    for k in range(3):  # diagonal frequencies (k, k) * 2 pi / 4, k = 0, 1, 2 (= pi)
        logs = []
        for b, c in itertools.product(range(2), range(3)):
            f = sum(
                maps[b, y, x, c] * np.exp(-2j * np.pi * k * (y + x) / 4)
                for y in range(4)
                for x in range(4)
            )
            logs.append(np.log(abs(f) + 1e-6))
        want.append(np.mean(logs))
    np.testing.assert_allclose(log_amplitude_profile(_tokens(maps), (4, 4)), want, atol=1e-9)


def test_constant_map_is_low_frequency_and_checkerboard_high():
    h = w = 4
    constant = np.full((1, h, w, 8), 5.0)
    assert relative_log_amplitude(_tokens(constant), (h, w)) < -10
    signs = (-1.0) ** np.add.outer(np.arange(h), np.arange(w))
    checker = np.repeat(signs[None, :, :, None], 8, axis=3)
    assert relative_log_amplitude(_tokens(checker), (h, w)) > 10


# ----------------------------------------------------------------------- the hooks
@pytest.mark.parametrize("fused", [True, False])
def test_hooks_record_the_softmax_the_block_uses(fused):
    torch = pytest.importorskip("torch")
    from urbanvis.engine.attention import AttentionRecorder
    from urbanvis.engine.inference import build_model

    net, _ = build_model(model="vit_test_patch8", checkpoint=None, random_init=True, seed=1,
                         image_size=None)  # fmt: skip
    net.eval()
    block = net.blocks[1].attn
    block.fused_attn = fused  # the recorder must not depend on timm's choice
    seen = {}
    handle = block.register_forward_hook(
        lambda m, args, out: seen.update(x=args[0].detach(), out=out.detach())
    )
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), AttentionRecorder(net) as rec:
        net.forward_features(x)
    handle.remove()
    attn = rec.attentions[1]
    assert attn.shape == (2, 2, 17, 17)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, 17))
    # a manual recomputation from the block's weights, head by head
    tokens = seen["x"]
    weight, bias = block.qkv.weight, block.qkv.bias
    dim, heads = 32, 2
    width = dim // heads
    for b, head in itertools.product(range(2), range(heads)):
        q = tokens[b] @ weight[head * width : (head + 1) * width].T
        q = q + bias[head * width : (head + 1) * width]
        k = tokens[b] @ weight[dim + head * width : dim + (head + 1) * width].T
        k = k + bias[dim + head * width : dim + (head + 1) * width]
        logits = q @ k.T / math.sqrt(width)
        want = torch.exp(logits - logits.max(-1, keepdim=True).values)
        want = want / want.sum(-1, keepdim=True)
        torch.testing.assert_close(attn[b, head], want, rtol=1e-5, atol=1e-6)
    # and these probabilities, applied to v, give the module's own output
    v = (tokens @ weight[2 * dim :].T + bias[2 * dim :]).reshape(2, 17, heads, width)
    mixed = (attn @ v.transpose(1, 2)).transpose(1, 2).reshape(2, 17, dim)
    torch.testing.assert_close(block.proj(mixed), seen["out"], rtol=1e-5, atol=1e-5)
    assert torch.equal(rec.tokens[-1], net.blocks[-1](net.blocks[0](_embedded(net, x))))


def _embedded(net, x):
    return net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))


# ------------------------------------------------------------------------- the CLI
@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, shape in enumerate([(48, 64), (64, 48), (40, 40)]):
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _colours(path):
    with Image.open(path) as im:
        return len(im.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def test_cli_writes_tables_and_pictures(image_folder, tmp_path):
    out = tmp_path / "reports" / "attention.csv"
    result = invoke("eval", "attention", "--images", str(image_folder), "--model",
                    "vit_test_patch8", "--random-init", "--query-patch", "0,0", "--query-patch",
                    "3,2", "--workers", "0", "--device", "cpu", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["model", "layer", "head", "mean_distance_px"]
    assert len(table) == 2 * 2  # 2 layers x 2 heads
    # a 4x4 grid of 8 px patches: distances between 0 and the diagonal, 8 * sqrt(18)
    assert table["mean_distance_px"].between(0, 8 * math.sqrt(18)).all()
    fourier = pd.read_csv(tmp_path / "reports" / "attention_fourier.csv")
    assert list(fourier["layer"]) == [1, 2]
    assert fourier["relative_log_amplitude"].notna().all()
    pngs = sorted((tmp_path / "reports").glob("*.png"))
    assert [p.name for p in pngs] == [
        "attention_distance.png",
        "attention_fourier.png",
        "attention_maps_vit_test_patch8_random_init.png",
    ]
    for png in pngs:
        assert png.stat().st_size > 0 and _colours(png) > 1
    with Image.open(pngs[-1]) as im:  # 2 layers x 2 query patches, 128 px cells
        assert im.width > 2 * 128 and im.height > 2 * 128
    assert (tmp_path / "reports" / "attention.md").is_file()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "vit_test_patch8", "--random-init"], "holds no image files"),
        (["--model", "vit_test_patch8", "--random-init", "--thumbnail"], "no attention"),
        (["--thumbnail"], "no attention"),
        (["--model", "vit_test_patch8", "--random-init", "--query-patch", "4,0"], "outside"),
        (["--model", "vit_test_patch8", "--random-init", "--query-patch", "1"], "ROW,COL"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, image_folder, args, words):
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = empty if words == "holds no image files" else image_folder
    out = tmp_path / "out" / "attention.csv"
    result = invoke("eval", "attention", "--images", str(folder), "--device", "cpu",
                    "--workers", "0", "--out", str(out), *args)  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], lines
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- the stage
@pytest.mark.slow  # the simulated study takes ~10 s to build on a shared CPU
def test_stage_samples_a_study_and_records_the_run(simulated_study):
    result = uv.eval_attention(simulated_study, models=["vit_test_patch8"], random_init=True,
                               max_images=4, device="cpu")  # fmt: skip
    table = simulated_study / "reports" / "attention" / "attention.csv"
    assert result.files["table"] == table and table.is_file()
    assert result.outputs["images"] == 4
    assert "eval attention" in (simulated_study / "study.toml").read_text()


def test_stage_stops_without_writing(image_folder, tmp_path):
    out = tmp_path / "att" / "attention.csv"
    result = uv.eval_attention(images=image_folder, models=["vit_test_patch8"],
                               random_init=True, device="cpu", out=out,
                               should_stop=lambda: True)  # fmt: skip
    assert result.stopped and not out.parent.exists()


def test_stage_needs_somewhere_to_write(image_folder):
    with pytest.raises(InputError, match="give out"):
        uv.eval_attention(images=image_folder, models=["vit_test_patch8"], random_init=True)


def test_two_encoders_side_by_side(image_folder, tmp_path):
    torch = pytest.importorskip("torch")
    from urbanvis.engine.encoders import create_encoder

    torch.manual_seed(5)
    checkpoint = tmp_path / "run" / "trained.pth"
    checkpoint.parent.mkdir()
    torch.save({"arch": "vit_test_patch8", "model": create_encoder("vit_test_patch8").state_dict()},
               checkpoint)  # fmt: skip
    out = tmp_path / "att" / "attention.csv"
    result = uv.eval_attention(images=image_folder, checkpoints=[checkpoint],
                               models=["vit_test_patch8"], random_init=True, device="cpu",
                               out=out, max_images=2)  # fmt: skip
    table = pd.read_csv(out)
    assert sorted(table["model"].unique()) == ["run/trained", "vit_test_patch8 (random init)"]
    assert result.outputs["images"] == 2
    assert len(list(out.parent.glob("attention_maps_*.png"))) == 2
    # different weights, different attention
    by_model = table.groupby("model")["mean_distance_px"].apply(list)
    assert by_model["run/trained"] != by_model["vit_test_patch8 (random init)"]
