"""CNN architectures (one logit per stamp), committees, and the torch runtime choices.

Every model maps a batch of stamps ``(n, band, y, x)`` float32 to ``(n,)`` logits; a
registry maps the ``models[].architecture`` name of the config to its class:

- ``baseline3``: the lecture's simple CNN (3 conv blocks, ReLU, max-pooling);
- ``deeplens``: CMU DeepLens (Lanusse et al. 2018), a pre-activation bottleneck ResNet, ELU;
- ``resnet18``: ResNet-18 with the small-input stem (3x3 convolution, no max-pool);
- ``d4``: invariant to the 8 rotations/flips by construction (group-pooled features);
- ``classical`` (not a CNN, not built here): features + boosted trees, fitted by
  :mod:`skysift.learn.classical` and rebuilt from its checkpoint by
  :func:`skysift.learn.checkpoints.model_from_checkpoint`.

A committee (``members: K``) averages the logits of K models of one architecture.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from skysift.errors import ConfigError
from skysift.learn.models.baseline import Baseline3
from skysift.learn.models.d4 import D4Invariant
from skysift.learn.models.resnets import DeepLens, ResNet18Small

__all__ = ["ARCHITECTURES", "CLASSICAL", "MIN_STAMP_SIZE_PIX", "Committee", "build_model",
           "count_parameters"]

log = logging.getLogger(__name__)

#: Smallest stamp side the registered architectures accept (three or four halvings).
MIN_STAMP_SIZE_PIX = 16

#: architecture name -> constructor taking ``in_channels``.
ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "baseline3": Baseline3,
    "deeplens": DeepLens,
    "resnet18": ResNet18Small,
    "d4": D4Invariant,
}
#: The ``models[].architecture`` of features + boosted trees (:mod:`skysift.learn.classical`).
CLASSICAL = "classical"


class Committee(nn.Module):
    """Average of the logits of several models (a committee of independently seeded members).

    Averaging logits (not probabilities) keeps the ranking free of saturation.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a committee needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean logit ``(n,)`` of the members for stamps ``x``."""
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


def build_model(architecture: str, in_channels: int, stamp_size_pix: int,
                members: int = 1) -> nn.Module:
    """Build a registered architecture, or a committee of ``members`` of them.

    Parameters
    ----------
    architecture : str
        A key of :data:`ARCHITECTURES` (``models[].architecture`` in config).
    in_channels : int
        Number of bands of the stamps.
    stamp_size_pix : int
        Side of the stamps in pixels; at least :data:`MIN_STAMP_SIZE_PIX`.
    members : int
        1 for a single model; more gives a :class:`Committee` (initialised from the current
        torch random state, member after member).

    Returns
    -------
    torch.nn.Module
        Maps ``(n, in_channels, stamp_size_pix, stamp_size_pix)`` float32 to ``(n,)`` logits.

    Raises
    ------
    ConfigError
        Unknown architecture (the message lists the valid ones) or stamps too small.
    """
    if architecture == CLASSICAL:
        raise ConfigError("a 'classical' model is fitted by skysift.learn.train "
                          "(skysift.learn.classical), "
                          "not built: train it, or load its checkpoint with "
                          "skysift.learn.checkpoints.load_model")
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"models[].architecture: unknown architecture '{architecture}'; "
                          f"valid: {', '.join(sorted(ARCHITECTURES))} or {CLASSICAL}")
    if in_channels < 1:
        raise ConfigError(f"a model needs at least one band, got in_channels={in_channels}")
    if stamp_size_pix < MIN_STAMP_SIZE_PIX:
        raise ConfigError(f"cutouts.stamp_size_pix={stamp_size_pix} is below the "
                          f"{MIN_STAMP_SIZE_PIX} pixels that '{architecture}' needs; "
                          "set cutouts.stamp_size_pix larger")
    if members < 1:
        raise ConfigError(f"models[].members must be at least 1, got {members}")
    if members == 1:
        return ARCHITECTURES[architecture](in_channels)
    return Committee([ARCHITECTURES[architecture](in_channels) for _ in range(members)])


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
