"""Attention probabilities and token outputs of every block of a ViT, for the attention report.

timm's ``Attention`` runs ``scaled_dot_product_attention`` when fused attention is on, so the
probabilities never exist as a tensor. :class:`AttentionRecorder` therefore hooks each
block's ``attn`` module and recomputes them from the module's own input with its public
parts: ``softmax(q_norm(q) k_norm(k)^T * scale)`` with ``q, k`` from ``attn.qkv`` split
into ``attn.num_heads`` heads. It never reads or sets ``fused_attn``; a test checks that
``probabilities @ v`` through ``attn.proj`` gives the module's own output. A hook on each
block keeps its output tokens ``(B, 1 + h*w, C)``.

:func:`attention_batches` runs the eval transform of :mod:`.features` (the same resize,
crop and normalisation as the embed stage) over image files and yields each batch's
images and per-layer arrays, as numpy, for :mod:`urbanvis.evaluate.attention`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .._errors import InputError
from .distributed import pick_device
from .features import file_batches
from .inference import build_model

__all__ = ["AttentionRecorder", "attention_batches", "attention_probabilities"]

_PARTS = ("qkv", "num_heads", "head_dim", "scale")


def attention_probabilities(attn: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The softmax attention ``(B, heads, N, N)`` of a timm ``Attention`` module on input ``x``.

    Raises
    ------
    InputError
        The module is not a timm-style attention (no ``qkv``, ``num_heads``...).
    """
    missing = [name for name in _PARTS if not hasattr(attn, name)]
    if missing:
        raise InputError(
            f"attention module {type(attn).__name__} has no {', '.join(missing)}; "
            f"the attention report needs a timm VisionTransformer"
        )
    b, n, _ = x.shape
    heads, width = int(attn.num_heads), int(attn.head_dim)  # type: ignore[arg-type]
    qkv = attn.qkv(x).reshape(b, n, 3, heads, width).permute(2, 0, 3, 1, 4)  # type: ignore[operator]
    q, k = qkv[0], qkv[1]
    q_norm = getattr(attn, "q_norm", None)
    k_norm = getattr(attn, "k_norm", None)
    if q_norm is not None:
        q = q_norm(q)
    if k_norm is not None:
        k = k_norm(k)
    logits = (q.float() * float(attn.scale)) @ k.float().transpose(-2, -1)  # type: ignore[arg-type]
    return logits.softmax(dim=-1)


class AttentionRecorder:
    """Forward hooks that keep each block's attention probabilities and output tokens.

    Use as a context manager around forward passes; after each pass ``attentions[i]`` is
    ``(B, heads, N, N)`` and ``tokens[i]`` is ``(B, N, C)`` of block ``i`` (float32,
    detached). The hooks are removed on exit.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        blocks = getattr(net, "blocks", None)
        if blocks is None or len(blocks) == 0:
            raise InputError(
                f"{type(net).__name__} has no transformer blocks; the attention report needs a ViT"
            )
        self.blocks = list(blocks)
        self.attentions: list[torch.Tensor | None] = [None] * len(self.blocks)
        self.tokens: list[torch.Tensor | None] = [None] * len(self.blocks)
        self._handles: list[Any] = []

    def __enter__(self) -> AttentionRecorder:
        for i, block in enumerate(self.blocks):
            self._handles.append(block.attn.register_forward_hook(self._attention_hook(i)))
            self._handles.append(block.register_forward_hook(self._token_hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _attention_hook(self, i: int):
        def hook(module, args, output):
            self.attentions[i] = attention_probabilities(module, args[0]).detach()

        return hook

    def _token_hook(self, i: int):
        def hook(module, args, output):
            self.tokens[i] = output.detach().float()

        return hook


def attention_batches(
    paths: Sequence[str | os.PathLike[str]],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    model: str | None = None,
    random_init: bool = False,
    seed: int = 0,
    image_size: int | None = None,
    batch_size: int = 8,
    workers: int = 0,
    device: str = "auto",
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, Any], Iterator[tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]]]:
    """The model's metadata and an iterator over batches of ``(images, attentions, tokens)``.

    ``images`` are the model's inputs as float RGB in [0, 1], ``(B, size, size, 3)``;
    ``attentions`` one ``(B, heads, N, N)`` array per block and ``tokens`` one
    ``(B, N, C)`` array per block (``N = 1 + h*w``, the [CLS] token first). The forward
    pass runs in fp32 (softmax probabilities compared across encoders). The metadata adds
    ``patch_size``, ``grid``, ``depth``, ``heads`` and ``prefix`` (tokens before the
    patches) to :func:`.inference.build_model`'s.
    """
    if batch_size < 1:
        raise InputError(f"`batch_size` must be at least 1, got {batch_size}")
    net, meta = build_model(
        model=model, checkpoint=checkpoint, random_init=random_init, seed=seed,
        image_size=image_size,
    )  # fmt: skip
    meta = {
        **meta,
        "patch_size": int(net.patch_embed.patch_size[0]),
        "grid": tuple(int(g) for g in net.patch_embed.grid_size),
        "depth": len(net.blocks),
        "heads": int(net.blocks[0].attn.num_heads),
        "prefix": int(getattr(net, "num_prefix_tokens", 1)),  # [CLS] (and register tokens)
    }
    return meta, _batches(net, meta, paths, batch_size, workers, device, should_stop)


def _batches(net, meta, paths, batch_size, workers, device, should_stop):
    dev = pick_device(device)
    net = net.to(dev).eval()
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)
    batches = file_batches(
        paths, meta, batch_size=batch_size, workers=workers, should_stop=should_stop,
        doing="computing attention",
    )  # fmt: skip
    with torch.inference_mode(), AttentionRecorder(net) as rec:
        for _ids, images in batches:
            net.forward_features(images.to(dev))
            shown = (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
            yield (
                shown,
                [a.cpu().numpy() for a in rec.attentions if a is not None],
                [t.cpu().numpy() for t in rec.tokens if t is not None],
            )
