"""A classifier invariant to the 8 rotations and flips of the stamp (the group D4), by construction.

The sky has no preferred orientation or handedness, so a lens rotated by 90° or mirrored is
still a lens. Instead of hoping augmentation teaches this, the model shares one feature
extractor over the whole D4 orbit of the stamp and averages the features (group pooling)
before the linear logit: for every element g, ``model(g x) == model(x)`` up to float
rounding, whatever the weights, before and after training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from skysift.learn.models.resnets import PreActBottleneck
from skysift.learn.symmetry import ORDER, d4_orbit


class D4Invariant(nn.Module):
    """D4-invariant classifier: group-pooled features of a shared pre-activation ResNet.

    ``logit(x) = w . mean_g f(g x) + b``. The feature extractor ``f`` folds each 2x2 pixel
    block into channels (space-to-depth: no information lost, a quarter of the positions;
    ground-based stamps oversample the PSF; an odd side is first padded by one zero row and
    column, which keeps the invariance since f(g x) depends on g x alone), then a 3x3
    convolution and stages of
    pre-activation bottleneck units with ELU (DeepLens units), global average pooling.
    The eight orbit images share one batch, so the model costs 8x its extractor.

    Parameters
    ----------
    in_channels : int
        Number of bands.
    widths : sequence of int
        Output filters of each stage (the first stage keeps the folded resolution, each
        later one halves it).
    units : int
        Bottleneck units per stage.
    """

    def __init__(self, in_channels: int, widths: Sequence[int] = (32, 64, 128),
                 units: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.PixelUnshuffle(2),
                                   nn.Conv2d(4 * in_channels, widths[0], 3, padding=1,
                                             bias=False)]
        c_in = widths[0]
        for stage, width in enumerate(widths):
            for unit in range(units):
                layers.append(PreActBottleneck(c_in, width, 2 if stage and not unit else 1))
                c_in = width
        layers += [nn.BatchNorm2d(c_in), nn.ELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n,)`` of stamps ``(n, in_channels, s, s)``; identical for the D4 orbit."""
        n = x.shape[0]
        orbit = d4_orbit(x)
        if x.shape[-1] % 2:  # space-to-depth needs an even side; f(g x) stays a function of g x
            orbit = F.pad(orbit, (0, 1, 0, 1))
        if x.is_cuda:
            orbit = orbit.contiguous(memory_format=torch.channels_last)
        feats = self.features(orbit)
        pooled = feats.view(ORDER, n, -1).mean(dim=0)
        return self.head(pooled).squeeze(1)
