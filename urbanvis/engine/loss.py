"""The MoCo v3 contrastive loss: InfoNCE over in-batch keys, symmetrised, scaled by 2T."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F


class ContrastiveLoss(nn.Module):
    """``ctr(q1, k2) + ctr(q2, k1)`` with ``ctr(q, k) = CE(norm(q) norm(k)^T / T, y) * 2T``.

    Keys are gathered from every rank under DDP (without gradient); the label of query
    ``i`` on rank ``r`` is ``i + r * N``. ``temperature`` is 0.2 for ViTs.
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def ctr(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(gather(k).float(), dim=1)
        logits = q @ k.T / self.temperature
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
        return F.cross_entropy(logits, labels) * (2 * self.temperature)

    def forward(self, q1, q2, k1, k2) -> torch.Tensor:
        return self.ctr(q1, k2) + self.ctr(q2, k1)


@torch.no_grad()
def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor from all ranks (no gradient); the tensor itself when not DDP."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
