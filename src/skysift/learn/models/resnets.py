"""Residual networks: CMU DeepLens (Lanusse et al. 2018) and ResNet-18 with a small-input stem.

Both end in global average pooling, so any stamp size of at least 16 pixels works, and
both expose ``features(x) -> (n, width)`` and ``head`` separately (the ``d4`` model reuses
the feature extractor).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck unit (He et al. 2016): BN-act-1x1, BN-act-3x3, BN-act-1x1.

    The 3x3 convolution carries the stride; the shortcut is a strided 1x1 convolution of the
    pre-activated input when the shape changes, the identity otherwise.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out; the bottleneck has ``out_channels // 4`` (at least 4).
    stride : int
        1, or 2 to halve the map.
    act : type of nn.Module
        Activation (ELU in DeepLens).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 act: type[nn.Module] = nn.ELU) -> None:
        super().__init__()
        mid = max(out_channels // 4, 4)
        self.pre = nn.Sequential(nn.BatchNorm2d(in_channels), act())
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid), act(),
            nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(mid), act(),
            nn.Conv2d(mid, out_channels, 1, bias=False))
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, in, h, w)`` -> ``(n, out, ceil(h / stride), ceil(w / stride))``."""
        pre = self.pre(x)
        skip = x if self.shortcut is None else self.shortcut(pre)
        return skip + self.body(pre)


class DeepLens(nn.Module):
    """A PyTorch re-implementation of CMU DeepLens (Lanusse et al. 2018, MNRAS 473, 3895).

    7x7 convolution with 32 filters, BN and ELU; five stages of three pre-activation
    bottleneck units with 32, 64, 128, 256 and 512 output filters (the first unit of stages
    2-5 halves the map); BN-ELU, global average pooling and one linear logit.

    Parameters
    ----------
    in_channels : int
        Number of bands.
    widths : sequence of int
        Output filters of each stage.
    units : int
        Bottleneck units per stage.
    """

    def __init__(self, in_channels: int, widths: Sequence[int] = (32, 64, 128, 256, 512),
                 units: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 7, padding=3, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ELU()]
        c_in = widths[0]
        for stage, width in enumerate(widths):
            for unit in range(units):
                stride = 2 if stage > 0 and unit == 0 else 1
                layers.append(PreActBottleneck(c_in, width, stride))
                c_in = width
        layers += [nn.BatchNorm2d(c_in), nn.ELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.width = c_in
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n,)`` of stamps ``(n, in_channels, y, x)``."""
        return self.head(self.features(x)).squeeze(1)


class BasicBlock(nn.Module):
    """The two-3x3-convolution residual block of ResNet-18 (post-activation, ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels))
        nn.init.zeros_(self.body[-1].weight)  # each block starts as the identity
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, in, h, w)`` -> ``(n, out, ceil(h / stride), ceil(w / stride))``."""
        return self.act(self.shortcut(x) + self.body(x))


class ResNet18Small(nn.Module):
    """ResNet-18 (He et al. 2016) with the small-input stem: a 3x3 convolution, no max-pool.

    Four stages of two basic blocks with 64, 128, 256 and 512 filters (stages 2-4 halve the
    map), global average pooling and one linear logit; 11.2 M parameters for 3 bands.
    """

    def __init__(self, in_channels: int, widths: Sequence[int] = (64, 128, 256, 512),
                 blocks: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        c_in = widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                layers.append(BasicBlock(c_in, width, 2 if stage > 0 and block == 0 else 1))
                c_in = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.width = c_in
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n,)`` of stamps ``(n, in_channels, y, x)``."""
        return self.head(self.features(x)).squeeze(1)
