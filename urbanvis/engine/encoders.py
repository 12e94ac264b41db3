"""Vision transformer backbones and the encoder registry.

Backbones are timm ``VisionTransformer`` s set up as MoCo v3 trains them: a fixed 2-D
sin-cos position embedding, a frozen random patch projection (``stop_grad_conv1``) and the
reference's weight initialisation. :func:`create_encoder` builds one by name;
:func:`list_encoders` lists the names; :func:`load_encoder` reads urbanvis, MoCo v3 and
timm/DeiT checkpoints from a local file.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import math
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .._errors import InputError, InputFileError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderInfo:
    """What an encoder is: architecture, input and where its weights come from."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    ssl_method: str = "none"
    strategy: str = ""
    source: str = "random init"
    extra: dict = field(default_factory=dict, compare=False)


_ARCHS: dict[str, EncoderInfo] = {
    "vit_base_patch16_224": EncoderInfo("vit_base_patch16_224", 768, 12, 12),
    "vit_small_patch16_224": EncoderInfo("vit_small_patch16_224", 384, 12, 12),
    "vit_tiny_patch16_224": EncoderInfo("vit_tiny_patch16_224", 192, 12, 3),
    "vit_large_patch16_224": EncoderInfo("vit_large_patch16_224", 1024, 24, 16),
    # small sizes for CPUs and tests (not in timm): same recipe, fewer and narrower blocks
    "vit_mini_patch16": EncoderInfo("vit_mini_patch16", 128, 4, 4, input_size=112),
    "vit_test_patch8": EncoderInfo("vit_test_patch8", 32, 2, 2, patch_size=8, input_size=32),
}
ALIASES = {
    "vit_base": "vit_base_patch16_224",
    "vit_small": "vit_small_patch16_224",
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_large": "vit_large_patch16_224",
    "vit-b/16": "vit_base_patch16_224",
}


def list_encoders(pattern: str = "*") -> list[str]:
    """Names of the encoders :func:`create_encoder` builds, filtered by a glob pattern."""
    return sorted(n for n in _ARCHS if fnmatch.fnmatch(n, pattern))


def encoder_info(name: str) -> EncoderInfo:
    """The :class:`EncoderInfo` of a registered name; unknown names get close matches."""
    key = ALIASES.get(name.lower(), name)
    if key not in _ARCHS:
        close = difflib.get_close_matches(key, list(_ARCHS) + list(ALIASES), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise InputError(
            f"unknown encoder {name!r}; {hint}list them with urbanvis.engine.list_encoders()"
        )
    return _ARCHS[key]


def create_encoder(name: str, *, img_size: int | None = None, stop_grad_conv1: bool = True):
    """A MoCo v3-style ViT backbone whose forward gives the [CLS] token after the final norm.

    Parameters
    ----------
    name
        A registered name (:func:`list_encoders`), an alias (``vit_base``), or the path of
        a checkpoint file (urbanvis, MoCo v3 or timm/DeiT; see :func:`load_encoder`).
    img_size
        Input size; defaults to the encoder's (224 for the timm sizes).
    stop_grad_conv1
        Freeze the random patch projection, as MoCo v3 does for stability.
    """
    from timm.models.vision_transformer import VisionTransformer

    if _looks_like_file(name):  # a checkpoint: urbanvis, MoCo v3 or timm/DeiT
        return load_encoder(name)
    info = encoder_info(name)
    size = int(img_size or info.input_size)
    if size % info.patch_size:
        raise InputError(f"image size {size} is not a multiple of the patch size {info.patch_size}")
    model = VisionTransformer(
        img_size=size,
        patch_size=info.patch_size,
        embed_dim=info.embed_dim,
        depth=info.depth,
        num_heads=info.num_heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_classes=0,
        global_pool="token",
    )
    _init_like_moco_v3(model, stop_grad_conv1=stop_grad_conv1)
    setattr(model, "urbanvis_info", info)  # noqa: B010 (a plain attribute on an nn.Module)
    return model


def _looks_like_file(name: str) -> bool:
    return name.endswith((".pth", ".pth.tar", ".pt", ".bin")) or os.sep in name


def sincos_position_embedding(grid: tuple[int, int], dim: int, temperature: float = 1e4):
    """Fixed 2-D sin-cos position embedding with a zero [CLS] slot, shape (1, 1 + h*w, dim)."""
    if dim % 4:
        raise InputError(f"embedding width {dim} must be divisible by 4 for 2-D sin-cos")
    h, w = grid
    gw, gh = torch.meshgrid(
        torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij"
    )
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    ow = gw.flatten()[:, None] * omega[None, :]
    oh = gh.flatten()[:, None] * omega[None, :]
    table = torch.cat([ow.sin(), ow.cos(), oh.sin(), oh.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), table], dim=0)[None]


def _init_like_moco_v3(model, *, stop_grad_conv1: bool) -> None:
    grid = model.patch_embed.grid_size
    model.pos_embed = nn.Parameter(
        sincos_position_embedding(tuple(grid), model.embed_dim), requires_grad=False
    )
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            if "qkv" in name:  # Q, K and V initialised as three separate matrices
                bound = math.sqrt(6.0 / (module.weight.shape[0] // 3 + module.weight.shape[1]))
                nn.init.uniform_(module.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.normal_(model.cls_token, std=1e-6)
    proj = model.patch_embed.proj
    fan = 3 * proj.kernel_size[0] * proj.kernel_size[1] + model.embed_dim
    bound = math.sqrt(6.0 / fan)
    nn.init.uniform_(proj.weight, -bound, bound)
    nn.init.zeros_(proj.bias)
    if stop_grad_conv1:
        proj.weight.requires_grad = False
        proj.bias.requires_grad = False


# ------------------------------------------------------------------------ checkpoints
def read_checkpoint(path: str | os.PathLike[str]) -> dict:
    """Load a checkpoint file on the CPU, with an error that says what is wrong."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"checkpoint {path} does not exist; check the path")
    if path.stat().st_size == 0:
        raise InputFileError(f"checkpoint {path} is empty; it was not written completely")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        # torch's own words run to several sentences about its zip reader: not shown
        raise InputFileError(
            f"checkpoint {path.name} is truncated or not a PyTorch checkpoint "
            f"({type(exc).__name__} reading it); use a complete file (urbanvis writes them "
            f"atomically)"
        ) from exc
    except Exception as exc:  # pickle errors of foreign files
        raise InputFileError(
            f"checkpoint {path.name} cannot be read ({type(exc).__name__}); "
            f"give an urbanvis, MoCo v3 or timm/DeiT checkpoint"
        ) from exc


def backbone_state(checkpoint: dict) -> tuple[dict, str]:
    """The backbone weights of a checkpoint and what kind it was.

    Accepts urbanvis and MoCo v3 checkpoints (``state_dict`` with ``module.base_encoder.*``),
    DeiT/timm files (``{"model": ...}``) and plain state dicts. Projector heads are dropped.
    """
    if not isinstance(checkpoint, dict):
        raise InputError(
            "checkpoint is not a dict of weights; give an urbanvis, MoCo v3 or timm file"
        )
    state = checkpoint.get("state_dict", checkpoint.get("model", checkpoint))
    if not isinstance(state, dict) or not state:
        raise InputError("checkpoint holds no weights; give an urbanvis, MoCo v3 or timm file")
    for prefix, kind in (("module.base_encoder.", "moco-v3"), ("base_encoder.", "moco-v3")):
        if any(k.startswith(prefix) for k in state):
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            return {k: v for k, v in sub.items() if not k.startswith("head.")}, kind
    plain = {k.removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith(("blocks.", "patch_embed.")) for k in plain):
        raise InputError(
            "checkpoint has no ViT backbone weights (no blocks.* or patch_embed.*); "
            "give an urbanvis, MoCo v3 or timm/DeiT ViT checkpoint"
        )
    return {k: v for k, v in plain.items() if not k.startswith("head")}, "timm"


def load_encoder(path: str | os.PathLike[str], *, arch: str | None = None):
    """A backbone with the weights of a checkpoint file (urbanvis, MoCo v3 or timm/DeiT).

    The architecture comes from the checkpoint's ``arch`` when it has one, else ``arch``.
    """
    checkpoint = read_checkpoint(path)
    state, kind = backbone_state(checkpoint)
    entry = checkpoint.get("arch") if isinstance(checkpoint, dict) else None
    if arch:
        name, named = arch, "named by `arch`"
    elif entry:
        name, named = str(entry), "named by its 'arch' entry"
    else:
        name, named = _guess_arch(state), "guessed from its width"
    img_size = None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("urbanvis"), dict):
        img_size = checkpoint["urbanvis"].get("image_size")
    model = create_encoder(name, img_size=img_size)
    # no front end has an arch option for a checkpoint: the fix is another checkpoint
    fix = (
        "give a `checkpoint` of one of the registered encoders "
        "(urbanvis.engine.list_encoders()), written by urbanvis pretrain, MoCo v3 or timm"
    )
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches: weights of another architecture
        lines = str(exc).splitlines()
        detail = next((ln.strip() for ln in lines if "size mismatch" in ln), first_line(exc))
        raise InputError(
            f"checkpoint {Path(path).name} holds weights of another shape than {name} "
            f"({named}): {detail.rstrip('.')}; {fix}"
        ) from exc
    missing = [k for k in missing if k != "pos_embed"]
    if missing or unexpected:
        raise InputError(
            f"checkpoint {Path(path).name} does not fit {name} ({named}): {len(missing)} "
            f"missing and {len(unexpected)} unexpected weights (e.g. "
            f"{(missing + unexpected)[0]}); {fix}"
        )
    model.urbanvis_source = f"{kind}:{Path(path).name}:{file_hash(path)[:12]}"  # type: ignore[attr-defined]
    return model


def _guess_arch(state: dict) -> str:
    width = state["cls_token"].shape[-1] if "cls_token" in state else None
    for info in _ARCHS.values():
        if info.embed_dim == width:
            return info.name
    raise InputError(
        f"cannot tell the checkpoint's architecture: no registered encoder is {width} wide "
        f"and it has no 'arch' entry; give a `checkpoint` of one of the registered encoders "
        f"(urbanvis.engine.list_encoders())"
    )


def file_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of a file (identifies the weights an embedding came from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
