"""Start a network from earlier weights: pretrain on simulations, then fine-tune on labels.

A model entry's ``init`` names another model of the run (its checkpoint, trained first) or a
local weights file — a skysift checkpoint or a plain ``state_dict`` (no model hub is
reachable from a cluster node). Layers whose name and shape match are loaded; those that do
not fit (another number of bands, another head) keep their fresh initialisation and are
reported, never silently dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from skysift.errors import DataError

log = logging.getLogger(__name__)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a skysift checkpoint (``model_state``) or of a plain state dict.

    A committee's state (keys ``members.K.…``) gives its first member's weights.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: init weights not found; train that model first or fix "
                        "models[].init")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign files
        raise DataError(f"{path}: not a readable weights file ({type(exc).__name__}); give a "
                        "skysift checkpoint or a torch state_dict in models[].init") from None
    state = obj.get("model_state", obj) if isinstance(obj, dict) else None
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise DataError(f"{path}: holds no tensors of a network (a classical model's trees "
                        "cannot initialise a CNN); give a CNN checkpoint or state_dict")
    if state and all(k.startswith("members.") for k in state):
        state = {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith("members.0.")}
    return dict(state)


def load_matching(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> dict:
    """Copy every tensor of ``state`` whose name and shape match into ``model``.

    Returns ``{"loaded": n, "reinitialised": [names of the model's tensors left fresh],
    "unused": [names in state the model does not have]}``.
    """
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    own.update({k: v.to(own[k].dtype) for k, v in fits.items()})
    model.load_state_dict(own)
    return {"loaded": len(fits), "reinitialised": sorted(set(own) - set(fits)),
            "unused": sorted(set(state) - set(own))}


def init_from(model: torch.nn.Module, path: str | Path) -> dict:
    """Initialise ``model`` from ``path`` (:func:`read_weights`, :func:`load_matching`),
    logging what did not fit; returns the report with ``source``."""
    report = load_matching(model, read_weights(path))
    if not report["loaded"]:
        raise DataError(f"{path}: no tensor matches the network by name and shape (another "
                        "architecture?); initialise from a model of the same architecture")
    if report["reinitialised"] or report["unused"]:
        log.warning("init from %s: %d tensors loaded; re-initialised (no match): %s; unused: "
                    "%s", path, report["loaded"], report["reinitialised"][:8] or "none",
                    report["unused"][:8] or "none")
    else:
        log.info("init from %s: all %d tensors loaded", path, report["loaded"])
    return {"source": str(path), **report}
