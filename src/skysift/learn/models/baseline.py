"""The simple CNN of the lecture (Domínguez Sánchez et al. 2018): 3 conv blocks, ReLU, pooling."""

from __future__ import annotations

import torch
from torch import nn


def _same_conv(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    """Convolution with TensorFlow/Keras 'same' padding (the extra pixel goes right/bottom).

    Explicit padding because torch's ``padding='same'`` warns for even kernels (6x6, 2x2).
    """
    before = (kernel - 1) // 2
    after = kernel - 1 - before
    return nn.Sequential(nn.ZeroPad2d((before, after, before, after)),
                         nn.Conv2d(in_channels, out_channels, kernel))


class Baseline3(nn.Module):
    """The simple CNN of Domínguez Sánchez et al. (2018), with one logit output.

    Three blocks of ('same' convolution, ReLU, 2x2 max-pooling, dropout) with 32 6x6,
    64 5x5 and 128 2x2 filters; an adaptive average pooling to a ``pool_grid`` x
    ``pool_grid`` map (so every stamp size >= 16 pixels works), a 64-unit dense layer with
    dropout, and a linear output.

    Parameters
    ----------
    in_channels : int
        Number of bands.
    dropout_conv, dropout_dense : float
        Dropout probabilities after each convolution block and after the dense layer.
    pool_grid : int
        Side of the map kept before the dense layer (keeps coarse spatial layout, like the
        original's flatten, without fixing the stamp size).
    """

    def __init__(self, in_channels: int, dropout_conv: float = 0.25,
                 dropout_dense: float = 0.5, pool_grid: int = 4) -> None:
        super().__init__()
        blocks = []
        for c_in, c_out, kernel in ((in_channels, 32, 6), (32, 64, 5), (64, 128, 2)):
            blocks += [_same_conv(c_in, c_out, kernel), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2), nn.Dropout(dropout_conv)]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(pool_grid)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(128 * pool_grid * pool_grid, 64), nn.ReLU(inplace=True),
            nn.Dropout(dropout_dense), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n,)`` of stamps ``x`` of shape ``(n, in_channels, y, x)``."""
        return self.head(self.pool(self.features(x))).squeeze(1)
