"""Score every object of a stamps file with every task's model (rule ``infer``).

Streams ``results/stamps/{tile}.h5`` in batches of ``infer.batch_size`` (the images are
never all in memory) and writes ``results/scores/{tile}.fits``: ``index``, ``id`` (verbatim),
``ra``, ``dec``, ``tile``, ``flags`` and one ``score_{task}`` float32 logit column per model.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits
from astropy.table import Table

from skysift import cli
from skysift.errors import ConfigError, DataError
from skysift.io import atomic_output, open_h5, provenance, read_attr_json
from skysift.models import (
    autocast,
    build_model,
    prepare_model,
    resolve_device,
    resolve_precision,
    to_device,
    torch_runtime,
)

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("model_state", "optimizer_state", "scheduler_state", "scaler_state",
                   "rng_state", "epoch", "config", "meta")
META_KEYS = ("architecture", "task", "bands", "pixscale_arcsec", "stamp_size_pix",
             "normalisation", "in_channels")
#: keys of the ``preprocess`` block that do not change the pixels (HDF5 chunking only).
NORMALISATION_IGNORED = ("chunk_objects",)
STAMP_DATASETS = ("images", "flags", "index", "id", "ra", "dec")


def score(model: torch.nn.Module, images, batch_size: int, device: str | torch.device,
          precision: str = "fp32") -> np.ndarray:
    """Logits of ``model`` for every stamp, in batches.

    Parameters
    ----------
    model : torch.nn.Module
        On ``device``; maps ``(b, band, s, s)`` to ``(b,)`` logits. Put in eval mode.
    images : array-like (n, band, s, s) float32
        numpy array, torch tensor or anything sliceable along the first axis (h5py dataset).
    batch_size : int
        Stamps per forward pass.
    device : str or torch.device
    precision : {'fp32', 'bf16', 'fp16', 'auto'}
        Autocast precision (see :func:`skysift.models.resolve_precision`).

    Returns
    -------
    np.ndarray (n,) float32
        Logits (higher = more likely positive).
    """
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    n = len(images)
    logits = np.empty(n, dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            xb = torch.as_tensor(np.asarray(images[start:start + batch_size]),
                                 dtype=torch.float32)
            with autocast(device, precision):
                out = model(to_device(xb, device))
            logits[start:start + len(xb)] = out.float().cpu().numpy()
    return logits


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


def load_model(path: str | Path, device: str | torch.device) -> tuple[torch.nn.Module, dict]:
    """The model of a checkpoint on ``device`` in eval mode, and the checkpoint's ``meta``."""
    ckpt = load_checkpoint(path)
    meta = ckpt["meta"]
    try:
        model = build_model(meta["architecture"], meta["in_channels"], meta["stamp_size_pix"])
        model.load_state_dict(ckpt["model_state"])
    except (ConfigError, RuntimeError) as exc:
        raise DataError(f"{path}: weights do not fit architecture '{meta['architecture']}' "
                        f"({exc}); delete it and re-run the train rule") from None
    model = prepare_model(model, torch.device(device))
    model.eval()
    return model, meta


def _normalisation(value) -> dict | None:
    if not isinstance(value, Mapping):
        return None
    return {k: v for k, v in value.items() if k not in NORMALISATION_IGNORED}


def check_compatible(meta: Mapping, stamps_attrs: Mapping, path: str | Path) -> None:
    """Raise DataError unless the stamps match the model's bands, stamp size and normalisation.

    A pixel-scale difference above 1 % is only logged (the model may still transfer).
    """
    diffs = []
    bands = [str(b) for b in stamps_attrs.get("bands", [])]
    if bands != list(meta["bands"]):
        diffs.append(f"bands {bands} (model: {list(meta['bands'])})")
    size = stamps_attrs.get("stamp_size_pix")
    if size is None or int(size) != int(meta["stamp_size_pix"]):
        diffs.append(f"stamp_size_pix {size} (model: {meta['stamp_size_pix']})")
    norm = _normalisation(stamps_attrs.get("normalisation"))
    if norm != _normalisation(meta["normalisation"]):
        diffs.append(f"normalisation {norm} (model: {_normalisation(meta['normalisation'])})")
    if diffs:
        raise DataError(f"{path}: stamps do not match the '{meta['task']}' model: "
                        + "; ".join(diffs) + "; cut and preprocess with the configuration the "
                        "model was trained with, or retrain the model")
    scale, model_scale = stamps_attrs.get("pixscale_arcsec"), meta.get("pixscale_arcsec")
    if scale is not None and model_scale and abs(float(scale) / model_scale - 1) > 0.01:
        log.warning("%s: pixel scale %.4g arcsec differs from the '%s' model's %.4g", path,
                    float(scale), meta["task"], model_scale)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def header_cards(items: Mapping) -> list[tuple[str, object]]:
    """FITS (key, value) cards: keys up to 8 characters as is, longer ones as HIERARCH."""
    cards = []
    for key, value in items.items():
        if value is None:
            continue
        short = len(key) <= 8 and re.fullmatch(r"[A-Za-z0-9_-]+", key)
        cards.append((key.upper() if short else f"HIERARCH {key}", value))
    return cards


def ids_for_fits(ids: np.ndarray) -> np.ndarray:
    """Ids as a FITS column: int64 unchanged, strings as UTF-8 bytes (never through a float)."""
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    if ids.dtype.kind in "OU":
        ids = np.array([v if isinstance(v, bytes) else str(v).encode() for v in ids.tolist()],
                       dtype=bytes)
    return ids.astype("S1") if ids.dtype.itemsize == 0 else ids


def write_fits_table(path: str | Path, table: Table, cards: Sequence[tuple[str, object]]) -> None:
    """Write ``table`` as a binary-table extension with ``cards`` in its header, atomically."""
    hdu = fits.table_to_hdu(table)
    for key, value in cards:
        hdu.header[key] = value
    with atomic_output(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, output_verify="exception")


def infer_tile(config: dict, stamps: str | Path, model_paths: Sequence[str | Path],
               out: str | Path) -> int:
    """Score one stamps file with every model and write the scores table; return n objects."""
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device)
    models: dict[str, torch.nn.Module] = {}
    metas: dict[str, dict] = {}
    cards: list[tuple[str, object]] = []
    for i, path in enumerate(model_paths, start=1):
        model, meta = load_model(path, device)
        if meta["task"] in models:
            raise DataError(f"{path}: a second model for task '{meta['task']}'; "
                            "pass one model per task to --models")
        models[meta["task"]], metas[meta["task"]] = model, meta
        cards += [(f"MODEL{i}", Path(path).name), (f"MTASK{i}", meta["task"]),
                  (f"MSHA{i}", sha256_file(path))]
    batch = config["infer"]["batch_size"]
    t0 = time.perf_counter()
    with (torch_runtime(config["train"]["threads"], deterministic=False),
          open_h5(stamps, required=STAMP_DATASETS) as fh):
        attrs = {key: read_attr_json(fh, key) for key in fh.attrs}
        for meta in metas.values():
            check_compatible(meta, attrs, stamps)
        images = fh["images"]
        n = images.shape[0]
        meta0 = next(iter(metas.values()), None)
        if meta0 and images.shape[1:] != (meta0["in_channels"],) + (meta0["stamp_size_pix"],) * 2:
            raise DataError(f"{stamps}: images have shape {images.shape}, the models expect "
                            f"(n, {meta0['in_channels']}, {meta0['stamp_size_pix']}, "
                            f"{meta0['stamp_size_pix']}); re-run its rule")
        scores = {task: np.empty(n, dtype=np.float32) for task in models}
        for start in cli.progress(range(0, n, batch), desc=f"infer {Path(stamps).stem}"):
            x = images[start:start + batch]
            for task, model in models.items():
                scores[task][start:start + len(x)] = score(model, x, batch, device, precision)
        columns = {name: fh[name][()] for name in ("index", "id", "ra", "dec", "flags")}
    tile = str(attrs.get("tile", Path(stamps).stem))
    table = Table()
    table["index"] = columns["index"].astype(np.int64)
    table["id"] = ids_for_fits(columns["id"])
    table["ra"] = columns["ra"].astype(np.float64)
    table["dec"] = columns["dec"].astype(np.float64)
    table["tile"] = np.full(n, tile, dtype=f"S{max(len(tile.encode()), 1)}")
    table["flags"] = columns["flags"].astype(np.uint8)
    for task, values in scores.items():
        table[f"score_{task}"] = values
    prov = provenance(config, stamps=str(stamps), tile=tile, device=str(device),
                      precision=precision)
    write_fits_table(out, table, header_cards(prov) + cards)
    seconds = time.perf_counter() - t0
    log.info("scored %d objects of tile %s with %d models (%s) in %.1f s, %.0f objects/s on "
             "%s %s -> %s", n, tile, len(models), ", ".join(models), seconds,
             n / max(seconds, 1e-9), device, precision, out)
    return n


def parser():
    """The ``python -m skysift.infer`` argument parser."""
    p = cli.parser("Score the stamps of one tile with every task's model.")
    p.add_argument("--stamps", required=True, help="results/stamps/{tile}.h5")
    p.add_argument("--models", nargs="+", required=True, help="results/models/{task}.pt ...")
    p.add_argument("--out", required=True, help="scores table, results/scores/{tile}.fits")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the infer CLI; returns the exit code."""
    def body(args) -> int:
        infer_tile(cli.load_config(args), args.stamps, args.models, args.out)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
