"""Running models over batches of stamps: test-time D4 views, and a batch size that halves when
the device runs out of memory."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from skysift.errors import DataError
from skysift.learn.runtime import (
    autocast,
    resolve_precision,
    to_device,
)
from skysift.learn.symmetry import D4_ELEMENTS, d4_apply

log = logging.getLogger(__name__)


#: What ``infer.batch_size: auto`` starts from, per device type (CUDA halves on OOM).
AUTO_BATCH = {"cpu": 256, "cuda": 4096}


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is torch running out of (device or host) memory."""
    return (isinstance(exc, torch.cuda.OutOfMemoryError)
            or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()))


class BatchSize:
    """The forward batch size, halved (and logged) each time a forward pass runs out of memory."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.n_backoffs = 0

    def halve(self, exc: BaseException) -> None:
        """Halve the size after ``exc``; DataError when a batch of one does not fit."""
        if self.size <= 1:
            raise DataError(f"out of memory scoring a single stamp ({exc}); use a smaller "
                            "model, precision bf16, or train.device cpu") from None
        self.size //= 2
        self.n_backoffs += 1
        log.warning("out of memory: forward batch size halved to %d", self.size)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _views(model, xb, views: Sequence[int], device: torch.device, precision: str) -> np.ndarray:
    """(len(views), b) float32 logits of ``model`` for the D4 orientations ``views`` of xb."""
    xb = (xb.float() if isinstance(xb, torch.Tensor)
          else torch.as_tensor(np.asarray(xb), dtype=torch.float32))
    xd = to_device(xb, device)
    out = []
    with autocast(device, precision):
        for k in views:
            out.append(model(xd if k == 0 else d4_apply(xd, k)).float())
    return torch.stack(out).cpu().numpy()


def score_views(model: torch.nn.Module, images, batch: int | BatchSize,
                device: str | torch.device, precision: str = "fp32",
                views: Sequence[int] = (0,)) -> np.ndarray:
    """Logits of ``model`` for every stamp in each D4 orientation of ``views``, in batches.

    Parameters
    ----------
    model : torch.nn.Module
        On ``device``; maps ``(b, band, s, s)`` to ``(b,)`` logits. Put in eval mode.
    images : array-like (n, band, s, s) float32
        numpy array, torch tensor or anything sliceable along the first axis (h5py dataset).
    batch : int or BatchSize
        Stamps per forward pass; a :class:`BatchSize` is halved on out-of-memory errors (and
        stays halved for the next call).
    device : str or torch.device
    precision : {'fp32', 'bf16', 'fp16', 'auto'}
        Autocast precision (see :func:`skysift.learn.models.resolve_precision`).
    views : sequence of int
        D4 elements (:func:`skysift.learn.symmetry.d4_apply`); ``(0,)`` is the stamp as it is.

    Returns
    -------
    np.ndarray (len(views), n) float32
        Logits (higher = more likely positive).
    """
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    state = batch if isinstance(batch, BatchSize) else BatchSize(batch)
    n = len(images)
    logits = np.empty((len(views), n), dtype=np.float32)
    model.eval()
    start = 0
    with torch.inference_mode():
        while start < n:
            xb = images[start:start + state.size]
            try:
                logits[:, start:start + len(xb)] = _views(model, xb, views, device, precision)
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
                if not is_oom(exc):
                    raise
                state.halve(exc)
                continue
            start += len(xb)
    return logits


def score(model: torch.nn.Module, images, batch_size: int | BatchSize,
          device: str | torch.device, precision: str = "fp32", tta: bool = False) -> np.ndarray:
    """Logits (n,) float32 of ``model`` for every stamp (the mean over the 8 D4 orientations
    when ``tta``); see :func:`score_views` for the parameters."""
    views = tuple(D4_ELEMENTS) if tta else (0,)
    return score_views(model, images, batch_size, device, precision, views).mean(axis=0)
