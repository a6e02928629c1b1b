"""Running models over batches of stamps: test-time D4 views, and a batch size that halves when
the device runs out of memory."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

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


class EmbeddingTap:
    """The input of every logit layer of a model (an ``nn.Linear`` with one output): the
    layer before the logit, a per-object embedding.

    A committee of K members gives the K members' embeddings side by side, in module order.
    Only forward passes run while :attr:`active` is true are recorded; :meth:`take` returns
    and clears them.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.layers = [m for m in model.modules()
                       if isinstance(m, torch.nn.Linear) and m.out_features == 1]
        self.active = False
        self._parts: list[torch.Tensor] = []
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self.layers]

    def _hook(self, module, args) -> None:
        if self.active:
            self._parts.append(args[0].detach().float().reshape(len(args[0]), -1))

    def clear(self) -> None:
        """Forget what was recorded (after a forward pass that ran out of memory)."""
        self._parts = []

    def take(self) -> np.ndarray:
        """(b, width) float32 embeddings of the recorded forward pass, then clear."""
        out = torch.cat(self._parts, dim=1).cpu().numpy() if self._parts else None
        self._parts = []
        return out

    def remove(self) -> None:
        """Remove the hooks from the model."""
        for handle in self._handles:
            handle.remove()


def _views(model, xb, views: Sequence[int], device: torch.device, precision: str,
           tap: EmbeddingTap | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(len(views), b) float32 logits of ``model`` for the D4 orientations ``views`` of xb,
    and with ``tap`` the (b, width) embeddings of the first view."""
    xb = (xb.float() if isinstance(xb, torch.Tensor)
          else torch.as_tensor(np.asarray(xb), dtype=torch.float32))
    xd = to_device(xb, device)
    out = []
    if tap is not None:
        tap.clear()
    with autocast(device, precision):
        for i, k in enumerate(views):
            if tap is not None:
                tap.active = i == 0
            out.append(model(xd if k == 0 else d4_apply(xd, k)).float())
    if tap is not None:
        tap.active = False
    return torch.stack(out).cpu().numpy(), tap.take() if tap is not None else None


def score_views(model: torch.nn.Module, images, batch: int | BatchSize,
                device: str | torch.device, precision: str = "fp32",
                views: Sequence[int] = (0,), tap: EmbeddingTap | None = None,
                embeddings: list | None = None) -> np.ndarray:
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
    tap, embeddings : EmbeddingTap of ``model`` and a list, optional
        With both, the (b, width) embeddings of each batch (first view) are appended to
        ``embeddings``.

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
                logits[:, start:start + len(xb)], emb = _views(model, xb, views, device,
                                                               precision, tap)
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
                if not is_oom(exc):
                    raise
                state.halve(exc)
                continue
            if embeddings is not None and emb is not None:
                embeddings.append(emb)
            start += len(xb)
    return logits


def score(model: torch.nn.Module, images, batch_size: int | BatchSize,
          device: str | torch.device, precision: str = "fp32", tta: bool = False) -> np.ndarray:
    """Logits (n,) float32 of ``model`` for every stamp (the mean over the 8 D4 orientations
    when ``tta``); see :func:`score_views` for the parameters."""
    views = tuple(D4_ELEMENTS) if tta else (0,)
    return score_views(model, images, batch_size, device, precision, views).mean(axis=0)


def std_column(column: str) -> str:
    """``score_std_{task}_{model}``, the spread over the 8 D4 orientations of the logits in
    ``column`` (``score_{task}_{model}``)."""
    return column.replace("score_", "score_std_", 1)


def score_block(models: Mapping[str, torch.nn.Module], images, batch: BatchSize,
                device: torch.device, precision: str, tta: bool,
                taps: Mapping[str, EmbeddingTap] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score columns of a block of stamps with every model: the one place both scoring paths
    (a stamps file, tiles streamed) turn stamps into numbers.

    Parameters
    ----------
    models : {``score_{task}_{model}``: module on ``device``}
    images : (n, band, s, s) float32 tensor or array, normalised stamps.
    batch, device, precision : see :func:`score_views`.
    tta : bool
        Score the 8 D4 orientations: the logit is their mean, ``score_std_*`` their spread.
    taps : {column: EmbeddingTap}, optional
        Models whose embeddings (first orientation) are returned.

    Returns
    -------
    scores : {column: (n,) float32} (+ ``score_std_*`` with ``tta``)
    embeddings : {column: (n, width) float32} for the columns of ``taps``.
    """
    taps = taps or {}
    views = tuple(D4_ELEMENTS) if tta else (0,)
    scores, embeddings = {}, {}
    for column, model in models.items():
        parts: list = []
        logits = score_views(model, images, batch, device, precision, views,
                             taps.get(column), parts)
        scores[column] = logits.mean(axis=0)
        if tta:
            scores[std_column(column)] = logits.std(axis=0)
        if column in taps:
            embeddings[column] = (np.concatenate(parts) if parts
                                  else np.zeros((0, 0), np.float32))
    return scores, embeddings
