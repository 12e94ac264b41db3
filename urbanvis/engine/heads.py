"""Projector and predictor MLPs, laid out as in the MoCo v3 reference."""

from __future__ import annotations

from torch import nn


def mlp(num_layers: int, in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear (no bias) layers with BatchNorm + ReLU between, and a final BatchNorm without
    affine parameters (the SimCLR/MoCo v3 design)."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        d_in = in_dim if i == 0 else hidden_dim
        d_out = out_dim if i == num_layers - 1 else hidden_dim
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        else:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


def projector(in_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> nn.Sequential:
    """The 3-layer projector (in -> 4096 -> 4096 -> 256 for ViT)."""
    return mlp(3, in_dim, hidden_dim, out_dim)


def predictor(dim: int = 256, hidden_dim: int = 4096) -> nn.Sequential:
    """The 2-layer predictor (256 -> 4096 -> 256)."""
    return mlp(2, dim, hidden_dim, dim)
