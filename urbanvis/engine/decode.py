"""Decoding encoded images on the device: one decoder for inference and training.

JPEGs are decoded in one ``torchvision.io.decode_jpeg`` call (nvJPEG on CUDA,
libjpeg-turbo on a CPU); every other format, and the JPEGs of a call that failed, go
through PIL one at a time, the reference decoder (torchvision's PNG decoder can crash the
process on a broken file). An image that cannot be decoded is reported, not raised, so a
caller can skip it. Inputs may be plain ``bytes``: DataLoader workers hand bytes over
rather than a tensor per image, which would cost one shared-memory file descriptor each.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from .._errors import first_line

_JPEG_START = [0xFF, 0xD8, 0xFF]


def decode_images(data: list, device) -> tuple[list, list[str | None]]:
    """Decode encoded images (``bytes`` or 1-D uint8 CPU tensors) to uint8 RGB ``(3, H, W)``.

    JPEGs are decoded in one ``torchvision.io.decode_jpeg`` call on ``device`` (nvJPEG on
    CUDA, libjpeg-turbo on a CPU); other formats, and the JPEGs of a call that failed, one
    at a time with PIL on the CPU, then moved to ``device``.

    Returns
    -------
    (list, list)
        Per input, the image or None, and None or why it could not be decoded.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    rgb = ImageReadMode.RGB
    data = [
        torch.frombuffer(bytearray(d), dtype=torch.uint8) if isinstance(d, bytes | bytearray)
        else d
        for d in data
    ]  # fmt: skip
    images: list = [None] * len(data)
    errors: list[str | None] = [None] * len(data)
    jpegs = [i for i, d in enumerate(data) if d[:3].tolist() == _JPEG_START]
    if jpegs:
        try:
            decoded = decode_jpeg([data[i] for i in jpegs], mode=rgb, device=device)
        except RuntimeError:  # one bad file fails the call: every file is retried below
            decoded = [None] * len(jpegs)
        for i, image in zip(jpegs, decoded, strict=True):
            images[i] = image
    for i, d in enumerate(data):
        if images[i] is None:  # PIL, the reference decoder (torchvision's can crash on bad PNGs)
            try:
                images[i] = _pil_decode(bytes(d.numpy())).to(device)
            except Exception as exc:  # PIL raises more than OSError on a broken file
                errors[i] = first_line(exc) or "undecodable"
    return images, errors


def _pil_decode(data: bytes) -> torch.Tensor:
    """uint8 RGB ``(3, H, W)`` tensor of an encoded image, decoded by PIL."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        array = np.asarray(im.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
