"""The MoCo v3 model: base encoder + projector, momentum copy, predictor."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .heads import predictor, projector
from .loss import ContrastiveLoss


class MoCo(nn.Module):
    """MoCo v3 around a backbone whose forward returns one vector per image.

    The attribute names (``base_encoder``, ``momentum_encoder``, ``predictor``) and the
    projector living at ``base_encoder.head`` give checkpoints the reference's keys.
    """

    def __init__(
        self, backbone: nn.Module, *, dim: int = 256, mlp_dim: int = 4096, temperature: float = 0.2
    ) -> None:
        super().__init__()
        width = int(backbone.embed_dim)  # type: ignore[arg-type]
        backbone.head = projector(width, mlp_dim, dim)
        self.base_encoder = backbone
        self.momentum_encoder = copy.deepcopy(backbone)
        for p in self.momentum_encoder.parameters():
            p.requires_grad = False
        self.predictor = predictor(dim, mlp_dim)
        self.criterion = ContrastiveLoss(temperature)

    @torch.no_grad()
    def update_momentum_encoder(self, m: float) -> None:
        """``target = m * target + (1 - m) * online``, over every parameter."""
        online: list[torch.Tensor] = list(self.base_encoder.parameters())
        target: list[torch.Tensor] = list(self.momentum_encoder.parameters())
        torch._foreach_mul_(target, m)
        torch._foreach_add_(target, online, alpha=1.0 - m)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, m: float) -> torch.Tensor:
        """The symmetric loss for two views; the momentum update comes before the keys."""
        q1 = self.predictor(self.base_encoder(x1))
        q2 = self.predictor(self.base_encoder(x2))
        with torch.no_grad():
            self.update_momentum_encoder(m)
            k1 = self.momentum_encoder(x1)
            k2 = self.momentum_encoder(x2)
        return self.criterion(q1, q2, k1, k2)
