"""The asymmetric MoCo v3 view pair computed for a whole batch on the device.

Decoding JPEGs and augmenting them one by one in DataLoader workers feeds a ViT-B/16 on an
H100 at a tenth of the rate it trains. Here the workers only read file bytes; the batch is
decoded with nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``) and augmented with
batched tensor operations, per-sample random parameters drawn from a seeded generator:

- random resized crop (scale 0.08-1, ratio 3/4-4/3) and resize, in one ``roi_align``;
- horizontal flip (p 0.5);
- colour jitter (p 0.8): brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1, applied in
  this fixed order (torchvision shuffles the order per image);
- greyscale (p 0.2);
- Gaussian blur, sigma 0.1-2.0, kernel about 10% of the image (p 1.0 view 1, 0.1 view 2);
- solarize at 0.5 (p 0 view 1, 0.2 view 2);
- ImageNet normalisation.

On the CPU the same code runs on CPU tensors (decoding with libjpeg-turbo). Decoding is
:func:`.decode.decode_images`, the decoder inference uses too: PNGs and broken JPEGs go
through PIL.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading

import torch
from torch.nn import functional as F

from .._errors import InputFileError
from .decode import decode_images
from .encoders import IMAGENET_MEAN, IMAGENET_STD


def decode_batch(data: list, device: torch.device, size: int | None = None):
    """Decode JPEG/PNG bytes (or byte tensors) to a float batch in [0, 1], (B, 3, H, W), on
    ``device``, with :func:`.decode.decode_images`.

    Images of different sizes are resized to the first one's (or ``size``). A training
    batch cannot drop an image, so one that does not decode is an :class:`InputFileError`.
    """
    images, errors = decode_images(data, device)
    bad = [e for e in errors if e is not None]
    if bad:
        raise InputFileError(
            f"{len(bad)} image(s) of a batch cannot be decoded ({bad[0]}); rerun the harvest"
        )
    h, w = (size, size) if size else images[0].shape[-2:]
    out = [
        img
        if img.shape[-2:] == (h, w)
        else F.interpolate(img[None].float(), size=(h, w), mode="bilinear", antialias=True)[0]
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        for img in images
    ]
    return torch.stack(out).float().div_(255.0)


class BatchViews:
    """One MoCo v3 view (view 1: ``blur_p=1, solarize_p=0``; view 2: ``0.1, 0.2``).

    ``crop_min`` and ``photometric`` as in :func:`.transforms.view_transforms`.
    """

    def __init__(
        self,
        size: int,
        *,
        blur_p: float,
        solarize_p: float,
        crop_min: float = 0.08,
        photometric: float = 1.0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ) -> None:
        self.size = size
        self.crop_min = crop_min
        self.photometric = photometric
        self.blur_p = blur_p * photometric
        self.solarize_p = solarize_p * photometric
        self.kernel = max(3, (size // 10) | 1)
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Augment a float batch in [0, 1] (B, 3, H, W); ``g`` lives on ``x``'s device."""
        b = x.shape[0]
        dev = x.device

        def u(*shape):
            return torch.rand(*shape, generator=g, device=dev)

        x = self._crop(x, u)
        flip = u(b) < 0.5
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
        jitter = (u(b) < 0.8 * self.photometric).view(b, 1, 1, 1)
        x = torch.where(jitter, _colour_jitter(x, u), x)
        grey = (u(b) < 0.2 * self.photometric).view(b, 1, 1, 1)
        x = torch.where(grey, _grey(x).expand_as(x), x)
        if self.blur_p > 0:
            blur = (u(b) < self.blur_p).view(b, 1, 1, 1)
            x = torch.where(blur, _gaussian_blur(x, 0.1 + 1.9 * u(b), self.kernel), x)
        if self.solarize_p > 0:
            solar = (u(b) < self.solarize_p).view(b, 1, 1, 1)
            x = torch.where(solar & (x >= 0.5), 1.0 - x, x)
        return (x - self.mean.to(dev)) / self.std.to(dev)

    def _crop(self, x, u):
        from torchvision.ops import roi_align

        b, _, h, w = x.shape
        area = h * w * (self.crop_min + (1.0 - self.crop_min) * u(b))
        log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u(b)
        ratio = torch.exp(log_ratio)
        cw = torch.sqrt(area * ratio).clamp(max=w)
        ch = torch.sqrt(area / ratio).clamp(max=h)
        x0 = u(b) * (w - cw)
        y0 = u(b) * (h - ch)
        boxes = torch.stack(
            [torch.arange(b, device=x.device, dtype=x.dtype), x0, y0, x0 + cw, y0 + ch], dim=1
        )
        return roi_align(
            x,
            boxes,
            output_size=(self.size, self.size),
            spatial_scale=1.0,
            sampling_ratio=1,
            aligned=True,
        )


def view_pair(size: int, *, crop_min: float = 0.08, photometric: float = 1.0):
    """The two batch view functions of MoCo v3."""
    ease = {"crop_min": crop_min, "photometric": photometric}
    return (
        BatchViews(size, blur_p=1.0, solarize_p=0.0, **ease),
        BatchViews(size, blur_p=0.1, solarize_p=0.2, **ease),
    )


# ------------------------------------------------------------------------ operations
def _grey(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _colour_jitter(x: torch.Tensor, u) -> torch.Tensor:
    b = x.shape[0]

    def factor(spread):
        return (1 - spread + 2 * spread * u(b)).view(b, 1, 1, 1)

    x = (x * factor(0.4)).clamp(0, 1)  # brightness
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * factor(0.4) + mean).clamp(0, 1)  # contrast
    grey = _grey(x)
    x = ((x - grey) * factor(0.2) + grey).clamp(0, 1)  # saturation
    return _shift_hue(x, (0.2 * u(b) - 0.1).view(b, 1, 1))


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    v = maxc
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-8), torch.zeros_like(maxc))
    safe = delta.clamp(min=1e-8)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    h = (h + shift) % 1.0
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    channels = [
        torch.stack([v, q, p, p, t, v], dim=1),
        torch.stack([t, v, v, q, p, p], dim=1),
        torch.stack([p, p, t, v, v, q], dim=1),
    ]
    idx = i.unsqueeze(1)
    return torch.cat([c.gather(1, idx) for c in channels], dim=1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    b, c, h, w = x.shape
    half = kernel // 2
    pos = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    weights = torch.exp(-0.5 * (pos[None, :] / sigma[:, None]) ** 2)
    weights = weights / weights.sum(dim=1, keepdim=True)  # (b, k)
    weights = weights.repeat_interleave(c, dim=0)  # (b*c, k)
    flat = x.reshape(1, b * c, h, w)
    flat = F.pad(flat, (half, half, half, half), mode="reflect")
    flat = F.conv2d(flat, weights.view(b * c, 1, 1, kernel), groups=b * c)
    flat = F.conv2d(flat, weights.view(b * c, 1, kernel, 1), groups=b * c)
    return flat.view(b, c, h, w)


class DeviceViews:
    """Decode and augment batches ahead of the step, on a side CUDA stream in a thread.

    Iterate over it with a loader of ``(bytes_a, bytes_b)`` batches; each item is
    ``(view1, view2)`` ready on the current stream. ``seed_of(k)`` gives batch ``k``'s
    augmentation seed, so the views do not depend on the timing.

    With ``prefetch`` > 0 (the default on CUDA: 2) a thread reads the loader and prepares
    batches on a side stream while the caller trains, keeping up to ``prefetch`` prepared
    batches waiting. A thread is needed, not only a stream: ``torchvision``'s CUDA
    ``decode_jpeg`` blocks its calling thread until the batch is decoded, and the training
    step waits for its loss every iteration, so decoding in the caller's thread leaves the
    GPU idle for the whole decode. Each batch carries an event recorded after its last
    kernel: the caller's stream waits for that batch alone, not for the side stream's later
    work. The encoded bytes are not pinned: nvJPEG stages them itself, and the decoded
    pixels are made on the device. With ``prefetch=0`` (the default on a CPU) batches are
    prepared in the caller's thread, one at a time; both give the same tensors.
    """

    def __init__(
        self,
        loader,
        size: int,
        device: torch.device,
        seed_of,
        *,
        prefetch: int | None = None,
        crop_min: float = 0.08,
        photometric: float = 1.0,
    ) -> None:
        self.loader = loader
        self.device = device
        self.seed_of = seed_of
        self.view1, self.view2 = view_pair(size, crop_min=crop_min, photometric=photometric)
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.prefetch = (2 if device.type == "cuda" else 0) if prefetch is None else prefetch

    def _prepare(self, k: int, batch):
        a, b = batch
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed_of(k))
        if self.stream is None:
            x1 = self.view1(decode_batch(a, self.device), g)
            return x1, self.view2(decode_batch(b, self.device), g), None
        with torch.cuda.stream(self.stream):
            x1 = self.view1(decode_batch(a, self.device), g)
            x2 = self.view2(decode_batch(b, self.device), g)
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return x1, x2, ready

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.prefetch < 1:
            for k, batch in enumerate(self.loader):
                yield self._handover(self._prepare(k, batch))
            return
        waiting: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        worker = threading.Thread(
            target=self._produce, args=(waiting, stop), name="urbanvis-views", daemon=True
        )
        worker.start()
        try:
            while True:
                item = waiting.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield self._handover(item)
        finally:  # also when the caller stops early: release the thread, then wait for it
            stop.set()
            while worker.is_alive():
                with contextlib.suppress(queue.Empty):
                    waiting.get(timeout=0.05)
            worker.join()

    def _produce(self, waiting: queue.Queue, stop: threading.Event) -> None:
        """The thread: prepare every batch of the loader, then put ``_DONE``."""

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    waiting.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        on_device = (
            torch.cuda.device(self.device) if self.stream is not None else contextlib.nullcontext()
        )
        try:
            with on_device:
                for k, batch in enumerate(self.loader):
                    if stop.is_set() or not put(self._prepare(k, batch)):
                        return
        except BaseException as exc:  # handed to the caller's thread, raised there
            put(_Failed(exc))
            return
        put(_DONE)

    def _handover(self, item):
        """Make the side stream's results safe to use on the current stream."""
        x1, x2, ready = item
        if ready is None:
            return x1, x2
        current = torch.cuda.current_stream(self.device)
        current.wait_event(ready)
        for t in (x1, x2):
            t.record_stream(current)
        return x1, x2


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()
