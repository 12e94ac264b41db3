"""``torch.compile`` for pretraining and embedding: the ``compile`` setting and its timing.

``compile`` is ``auto`` (on for CUDA, off on a CPU), ``on`` or ``off``. On an H200 the
compiled MoCo v3 ViT-B/16 step at batch 256 in bf16 ran 1.27x faster than eager (1,331 vs
1,048 pairs/s, ``bench/pretrain.py --compile``); on a CPU compiling costs minutes of a
short run and C++ toolchain trouble for little gain, hence ``auto``.

Modules are compiled in place with :meth:`torch.nn.Module.compile`, which keeps the
module object and its ``state_dict`` keys: a checkpoint of a compiled run has the eager
run's layout (no ``_orig_mod.`` prefix), and either kind of run resumes from the other.

The environment variable ``URBANVIS_COMPILE_BACKEND`` names another ``torch.compile``
backend (default ``inductor``); the tests set ``aot_eager``, which traces forward and
backward graphs like inductor but generates no code, to run in seconds on a small CPU.
"""

from __future__ import annotations

import os

import torch

from .._errors import InputError

CHOICES = ("auto", "on", "off")
BACKEND_VARIABLE = "URBANVIS_COMPILE_BACKEND"


def check_compile(value: object) -> None:
    """Refuse a ``compile`` value other than auto, on or off."""
    if value not in CHOICES:
        raise InputError(f"`compile` must be auto, on or off, not {value!r}")


def wants_compile(value: str, device: torch.device) -> bool:
    """Whether ``compile`` (auto, on or off) compiles on ``device``: auto means CUDA only."""
    check_compile(value)
    return value == "on" or (value == "auto" and device.type == "cuda")


def compile_in_place(module: torch.nn.Module) -> torch.nn.Module:
    """Compile ``module``'s forward in place (same object, same ``state_dict`` keys)."""
    module.compile(backend=os.environ.get(BACKEND_VARIABLE) or "inductor")
    return module


def compile_seconds(first: float, second: float) -> float:
    """The time the first call spent compiling: its duration beyond the second call's."""
    return max(first - second, 0.0)
