"""What a training run records and how it is seeded: the model's metadata stored in its
checkpoint, and the per-purpose seeds derived from the master seed."""

from __future__ import annotations

import math
from collections.abc import Sequence

from skysift import seeds
from skysift.errors import DataError
from skysift.io import provenance
from skysift.modelspec import ModelSpec


def derive_seed(seed: int, task: str, purpose: str, model: str = "", member: int = 0) -> int:
    """A 63-bit seed from the master ``seed``, task, model, committee member and purpose."""
    return seeds.derive_seed(seed, "train", task, model, member, purpose)


def model_meta(config: dict, spec: ModelSpec, attrs: dict, shape: Sequence[int],
               inputs: dict) -> dict:
    """The ``meta`` block of a checkpoint: what a stamps file must match to be scored."""
    for key in ("bands", "normalisation"):
        if key not in attrs:
            raise DataError(f"{inputs['trainset']}: attribute '{key}' missing; "
                            "re-run the training_set rule")
    pixscale = attrs.get("pixscale_arcsec")
    return {
        "architecture": spec.architecture, "task": spec.task, "model": spec.name,
        "members": spec.members, "bands": [str(b) for b in attrs["bands"]],
        "pixscale_arcsec": None if pixscale is None else float(pixscale),
        "stamp_size_pix": int(shape[-1]), "normalisation": attrs["normalisation"],
        "in_channels": int(shape[0]),
        "provenance": provenance(config, task=spec.task, model=spec.name, **inputs),
    }


def finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
