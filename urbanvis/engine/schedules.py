"""Per-iteration schedules of MoCo v3: learning rate and momentum (closed forms)."""

from __future__ import annotations

import math


def learning_rate(epoch: float, *, lr: float, warmup_epochs: float, epochs: float) -> float:
    """Linear warmup to ``lr`` over ``warmup_epochs``, then half-cosine to 0 at ``epochs``.

    ``epoch`` is fractional (``epoch + i / iterations_per_epoch``); ``lr`` is the absolute
    rate, i.e. base lr x batch / 256.
    """
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    span = max(epochs - warmup_epochs, 1e-12)
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / span))


def momentum(epoch: float, *, base: float = 0.99, epochs: float) -> float:
    """Momentum of the target encoder: ``1 - 0.5 (1 + cos(pi epoch / E)) (1 - base)``."""
    return 1.0 - 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)) * (1.0 - base)


def absolute_lr(base_lr: float, batch_size: int) -> float:
    """The linear scaling rule: base lr x global batch / 256."""
    return base_lr * batch_size / 256
