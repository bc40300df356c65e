"""Backbones and projection heads.

Backbones return pooled features (``.out_dim`` wide). ResNets are torchvision's (parameter names
``conv1``, ``bn1``, ``layer1..4``, no ``fc``), so checkpoints convert to other ecosystems by name;
``cifar_stem`` swaps the 7x7/2 conv + max-pool for a 3x3/1 conv as for 32x32 inputs (SimCLR's
CIFAR setting). ``convnet4`` is the small CNN that makes 2-core CPU runs feasible (the ``mini`` profile).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18, resnet50

BACKBONES = ("resnet50", "resnet18", "convnet4")
PROJECTION_DIM = 128  # Sec. 4.1: 128-D features z


class ConvNet4(nn.Module):
    """Four conv-BN-ReLU blocks (32-64-128-256 channels), max-pool between, global average pool."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers, in_ch = [], 3
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.out_dim = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def build_backbone(arch: str, cifar_stem: bool = False) -> nn.Module:
    """A backbone by name; ResNets without their classifier."""
    if arch == "convnet4":
        return ConvNet4()
    if arch not in BACKBONES:
        raise ValueError(f"unknown backbone {arch!r}: choose one of {', '.join(BACKBONES)}")
    net = {"resnet18": resnet18, "resnet50": resnet50}[arch](weights=None)
    net.out_dim = net.fc.in_features
    net.fc = nn.Identity()
    if cifar_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net


def projection_head(in_dim: int, hidden_dim: int | None = None, out_dim: int = PROJECTION_DIM) -> nn.Sequential:
    """The 3-layer MLP head of Sec. 4.1 (Linear-BN-ReLU, Linear-BN-ReLU, Linear) to 128-D."""
    hidden_dim = hidden_dim or in_dim
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


class Encoder(nn.Module):
    """``z = g(f(x))``: backbone ``f`` and projection head ``g`` (paper Sec. 3.1)."""

    def __init__(self, arch: str, cifar_stem: bool = False):
        super().__init__()
        self.backbone = build_backbone(arch, cifar_stem)
        self.head = projection_head(self.backbone.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
