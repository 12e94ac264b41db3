"""Batched on-device views (run here on CPU tensors): each operation against a reference."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from torchvision.transforms import functional as TF

from urbanvis.engine.gpu_views import (
    BatchViews,
    _gaussian_blur,
    _shift_hue,
    decode_batch,
    view_pair,
)


def test_hue_shift_matches_colorsys():
    x = torch.rand(3, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    shift = torch.tensor([0.05, -0.1, 0.5]).view(3, 1, 1)
    y = _shift_hue(x, shift)
    for b in range(3):
        for i, j in [(0, 0), (2, 3), (4, 1)]:
            h, s, v = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
            want = colorsys.hsv_to_rgb((h + float(shift[b])) % 1.0, s, v)
            assert np.allclose(y[b, :, i, j].numpy(), want, atol=1e-5)


def test_blur_matches_torchvision_per_sample_sigma():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.7, 1.8])
    got = _gaussian_blur(x, sigma, 7)
    for b in range(2):
        want = TF.gaussian_blur(x[b], [7, 7], [float(sigma[b])] * 2)
        assert torch.allclose(got[b], want, atol=1e-5)


def test_views_are_seeded_sized_and_normalised():
    x = torch.rand(8, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    v1, v2 = view_pair(32)
    a = v1(x, torch.Generator().manual_seed(0))
    b = v1(x, torch.Generator().manual_seed(0))
    c = v1(x, torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert v2(x, torch.Generator().manual_seed(0)).shape == (8, 3, 32, 32)
    assert abs(float(a.mean())) < 1.5


def test_identity_crop_without_colour_ops_is_a_resize():
    views = BatchViews(24, blur_p=0.0, solarize_p=0.0)
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    draws = iter([1.0, 0.5, 0.0, 0.0])  # scale 1, ratio 1, no offset: the whole image
    full = views._crop(x, lambda *s: torch.full(s, next(draws)))
    assert torch.allclose(full, x, atol=1e-5)


def test_decode_batch_reads_jpeg_and_png_of_any_size(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    data = [
        torch.frombuffer(bytearray((tmp_path / n).read_bytes()), dtype=torch.uint8)
        for n in ("a.jpg", "b.png")
    ]
    batch = decode_batch(data, torch.device("cpu"))
    assert batch.shape == (2, 3, 20, 30) and float(batch.min()) >= 0 and float(batch.max()) <= 1


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_solarize_probability(p):
    views = BatchViews(16, blur_p=0.0, solarize_p=p)
    x = torch.full((4, 3, 16, 16), 0.9)
    out = views(x, torch.Generator().manual_seed(0)) * views.std + views.mean
    # solarized pixels of 0.9 (after jitter, roughly) flip below 0.5 somewhere only when p=1
    assert (out < 0.5).any() == (p == 1.0) or p == 0.0


# ----------------------------------------------------------------- the prefetch thread
def jpeg_batches(n_batches: int, batch: int) -> list:
    """``(bytes_a, bytes_b)`` batches of distinct random JPEGs, as the byte loader yields."""
    import io

    from PIL import Image

    rng = np.random.default_rng(5)

    def jpeg() -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
        return buf.getvalue()

    return [
        ([jpeg() for _ in range(batch)], [jpeg() for _ in range(batch)]) for _ in range(n_batches)
    ]


def test_prefetch_thread_gives_the_serial_views_in_order():
    from urbanvis.engine.gpu_views import DeviceViews

    batches = jpeg_batches(5, 3)
    cpu = torch.device("cpu")
    serial = list(DeviceViews(batches, 16, cpu, lambda k: 100 + k, prefetch=0))
    threaded = list(DeviceViews(batches, 16, cpu, lambda k: 100 + k, prefetch=2))
    assert len(serial) == len(threaded) == 5
    for (a1, a2), (b1, b2) in zip(serial, threaded, strict=True):
        assert a1.shape == (3, 3, 16, 16) and torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(serial[0][0], serial[1][0])  # each batch its own seed and images


def test_prefetch_thread_raises_a_bad_batch_in_the_caller():
    from urbanvis._errors import InputFileError
    from urbanvis.engine.gpu_views import DeviceViews

    batches = jpeg_batches(3, 2)
    batches[1] = (batches[1][0], [b"not an image", batches[1][1][1]])
    views = iter(DeviceViews(batches, 16, torch.device("cpu"), lambda k: k, prefetch=2))
    next(views)  # batch 0 is fine
    with pytest.raises(InputFileError, match="cannot be decoded"):
        next(views)


def test_prefetch_thread_ends_when_the_caller_stops_early():
    import threading

    from urbanvis.engine.gpu_views import DeviceViews

    read = []

    def loader():  # a generator, to see how far the thread read
        for k, batch in enumerate(jpeg_batches(20, 2)):
            read.append(k)
            yield batch

    before = threading.active_count()
    views = DeviceViews(loader(), 16, torch.device("cpu"), lambda k: k, prefetch=2)
    for k, _ in enumerate(views):
        if k == 1:
            break
    assert threading.active_count() == before  # the thread was joined
    # two batches used, at most two waiting, one in preparation: it stopped reading
    assert len(read) <= 5, read


def test_photometric_zero_leaves_colours_alone():
    # one flat colour per image: crops and flips keep it, colour jitter or grey would not
    colours = torch.rand(16, 3, 1, 1, generator=torch.Generator().manual_seed(5))
    x = colours.expand(16, 3, 24, 24).clone()
    for view in view_pair(24, photometric=0.0):
        out = view(x, torch.Generator().manual_seed(0)) * view.std + view.mean
        assert torch.allclose(out, x, atol=1e-5)
    full = view_pair(24)[0]  # MoCo v3's: jitter with p 0.8 changes most of the 16
    out = full(x, torch.Generator().manual_seed(0)) * full.std + full.mean
    changed = (out - x).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert int(changed.sum()) >= 8


def test_crop_min_bounds_the_crop_area(monkeypatch):
    views = BatchViews(24, blur_p=0.0, solarize_p=0.0, crop_min=0.5)
    x = torch.rand(1, 3, 48, 48)
    seen = []

    def roi(images, boxes, **kw):
        seen.append(boxes)
        return images[:, :, :24, :24]

    import torchvision.ops

    monkeypatch.setattr(torchvision.ops, "roi_align", roi)
    draws = iter([0.0, 0.5, 0.0, 0.0])  # the smallest area allowed, square
    views._crop(x, lambda *s: torch.full(s, next(draws)))
    _, x0, y0, x1, y1 = seen[0][0].tolist()
    assert (x1 - x0) * (y1 - y0) == pytest.approx(0.5 * 48 * 48, rel=1e-5)
