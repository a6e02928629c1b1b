"""Torch runtime choices shared by training and inference: device, precision, memory format."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from skysift.errors import ConfigError


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
    if x.device.type == "cpu" and not x.is_pinned():
        x = x.pin_memory()
    return x.to(device, non_blocking=True, memory_format=torch.channels_last)


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` (channels_last memory format on CUDA)."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def torch_runtime(threads: int, deterministic: bool):
    """Set torch threads and deterministic algorithms for a block; restore them after.

    Without determinism, cuDNN may benchmark its algorithms for the (fixed) stamp shape.
    """
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    old_bench = torch.backends.cudnn.benchmark
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic or old_det)
    torch.backends.cudnn.benchmark = not (deterministic or old_det)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
        torch.backends.cudnn.benchmark = old_bench


@contextlib.contextmanager
def single_thread(device: torch.device):
    """Run a block with one torch CPU thread when ``device`` is the CPU (no-op on CUDA).

    For many small memory-bound ops (the augmentation): OpenMP parallel regions cost more
    than they save there, and far more when the cores are shared (300 ms instead of 10 ms
    for one batch of 64 3x48x48 stamps on 2 busy cores).
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
