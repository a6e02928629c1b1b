"""Checkpoints: write atomically, read with user-facing errors, rebuild the model they hold.

A checkpoint is a dict (docs/models.md): ``model_state``, ``optimizer_state``,
``scheduler_state``, ``scaler_state``, ``rng_state``, ``epoch``, ``config`` and ``meta`` =
{architecture, task, model, members, bands, pixscale_arcsec, stamp_size_pix, normalisation,
in_channels, provenance}. A committee's ``model_state`` holds every member
(``members.{i}.*``); the optimiser, scheduler, scaler and RNG states are the last member's.
A ``classical`` checkpoint has the same keys: ``model_state = {booster: uint8 tensor}`` (the
pickled trees), empty optimiser/scheduler/scaler/RNG states and ``meta.classical``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from skysift.errors import ConfigError, DataError
from skysift.io import atomic_output
from skysift.learn.models import CLASSICAL, build_model
from skysift.learn.runtime import prepare_model

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("model_state", "optimizer_state", "scheduler_state", "scaler_state",
                   "rng_state", "epoch", "config", "meta")
META_KEYS = ("architecture", "task", "bands", "pixscale_arcsec", "stamp_size_pix",
             "normalisation", "in_channels")


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """``torch.save`` atomically (``.partial``, then rename).

    Through a Python file object: on a full disk torch then raises the ``OSError(ENOSPC)``
    of the write (exit 3, :func:`skysift.cli.run`) instead of its own ``RuntimeError``.
    """
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)


def load_checkpoint(path: str | Path) -> dict:
    """Load a skysift checkpoint dict on the CPU, with a user-facing error when unreadable."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found; train it first (snakemake {path})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        reason = (str(exc).splitlines() or [""])[0][:160]
        raise DataError(f"{path}: not a readable skysift checkpoint ({type(exc).__name__}: "
                        f"{reason}); delete it and re-run the train rule") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    missing += [f"meta.{k}" for k in META_KEYS
                if not missing and k not in (ckpt["meta"] or {})]
    if missing:
        raise DataError(f"{path}: checkpoint lacks {missing}; delete it and re-run the train rule")
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str | Path) -> torch.nn.Module:
    """The (CPU, train-mode) module of a loaded checkpoint, its weights in place.

    A ``classical`` checkpoint gives a :class:`skysift.learn.classical.ClassicalModel`: stamps in,
    logits out, like every CNN.
    """
    meta = ckpt["meta"]
    if meta["architecture"] == CLASSICAL:
        from skysift.learn.classical import module_from_checkpoint
        return module_from_checkpoint(ckpt, path)
    try:
        model = build_model(meta["architecture"], meta["in_channels"], meta["stamp_size_pix"],
                            int(meta.get("members", 1)))
        model.load_state_dict(ckpt["model_state"])
    except (ConfigError, RuntimeError) as exc:
        reason = (str(exc).splitlines() or [""])[0][:200]
        raise DataError(f"{path}: weights do not fit architecture '{meta['architecture']}' "
                        f"({reason}); delete it and re-run the train rule") from None
    return model


def load_model(path: str | Path, device: str | torch.device) -> tuple[torch.nn.Module, dict]:
    """The model of a checkpoint on ``device`` in eval mode, and the checkpoint's ``meta``.

    ``meta['model']`` falls back to the file's stem for checkpoints that do not name it.
    """
    ckpt = load_checkpoint(path)
    model = prepare_model(model_from_checkpoint(ckpt, path), torch.device(device))
    model.eval()
    meta = dict(ckpt["meta"])
    meta.setdefault("model", Path(path).stem)
    return model, meta


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
