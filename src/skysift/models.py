"""CNN architectures (one logit per stamp) and the torch runtime choices shared by train/infer.

Every model maps a batch of stamps ``(n, band, y, x)`` float32 to ``(n,)`` logits; a
registry maps the ``train.architecture`` name to its class.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch
from torch import nn

from skysift.errors import ConfigError

log = logging.getLogger(__name__)

#: Smallest stamp side the registered architectures accept (three 2x2 poolings).
MIN_STAMP_SIZE_PIX = 16


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


#: architecture name -> constructor taking ``in_channels``.
ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "baseline3": Baseline3,
}


def build_model(architecture: str, in_channels: int, stamp_size_pix: int) -> nn.Module:
    """Build a registered architecture.

    Parameters
    ----------
    architecture : str
        A key of :data:`ARCHITECTURES` (``train.architecture`` in config).
    in_channels : int
        Number of bands of the stamps.
    stamp_size_pix : int
        Side of the stamps in pixels; at least :data:`MIN_STAMP_SIZE_PIX`.

    Returns
    -------
    torch.nn.Module
        Maps ``(n, in_channels, stamp_size_pix, stamp_size_pix)`` float32 to ``(n,)`` logits.

    Raises
    ------
    ConfigError
        Unknown architecture (the message lists the valid ones) or stamps too small.
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"train.architecture: unknown architecture '{architecture}'; "
                          f"valid: {', '.join(sorted(ARCHITECTURES))}")
    if in_channels < 1:
        raise ConfigError(f"a model needs at least one band, got in_channels={in_channels}")
    if stamp_size_pix < MIN_STAMP_SIZE_PIX:
        raise ConfigError(f"cutouts.stamp_size_pix={stamp_size_pix} is below the "
                          f"{MIN_STAMP_SIZE_PIX} pixels that '{architecture}' needs; "
                          "set cutouts.stamp_size_pix larger")
    return ARCHITECTURES[architecture](in_channels)


def resolve_device(name: str) -> torch.device:
    """The torch device for ``train.device`` (auto | cpu | cuda).

    Raises
    ------
    ConfigError
        ``cuda`` requested on a machine where torch sees no CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but torch sees no CUDA device "
                          f"(torch {torch.__version__}); run on a GPU node with a CUDA build "
                          "of torch, or set train.device to auto or cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"train.device: '{name}' is not one of auto, cpu, cuda")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """The numeric precision (fp32 | bf16 | fp16) for ``train.precision`` on ``device``.

    ``auto`` is bf16 autocast on CUDA devices that support it, fp32 otherwise. fp16 needs
    CUDA (it relies on a gradient scaler); bf16 on CPU is allowed when asked for.
    """
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision fp16 needs a CUDA device; on CPU use fp32 or bf16")
    if name not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision: '{name}' is not one of auto, bf16, fp16, fp32")
    return name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a CPU batch to ``device``: pinned + non-blocking + channels_last on CUDA."""
    if device.type != "cuda":
        return x
    return x.pin_memory().to(device, non_blocking=True, memory_format=torch.channels_last)


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` (channels_last memory format on CUDA)."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def torch_runtime(threads: int, deterministic: bool):
    """Set torch threads and deterministic algorithms for a block; restore them after."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic or old_det)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
