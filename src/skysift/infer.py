"""Score every object of a stamps file with every named model (rule ``infer``).

Streams a stamps file (``results/stamps/*.h5``) in batches of ``infer.batch_size`` (the
images are never all in memory; the next batch is read while the models score this one)
and writes a scores table: ``index``, ``id`` (verbatim), ``ra``, ``dec``, ``tile``,
``flags`` and one float32 logit column ``score_{task}_{model}`` per model. A model whose
bands, pixel scale, stamp size or normalisation differ from the stamps is refused.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits
from astropy.table import Table

from skysift import cli
from skysift.checkpoints import load_checkpoint, load_model, sha256_file
from skysift.errors import DataError
from skysift.io import atomic_output, open_h5, provenance, read_attr_json
from skysift.models import autocast, resolve_device, resolve_precision, to_device, torch_runtime
from skysift.modelspec import score_column

__all__ = ["check_compatible", "ids_for_fits", "infer_tile", "load_checkpoint", "load_model",
           "load_models", "main", "score", "sha256_file", "write_fits_table"]

log = logging.getLogger(__name__)

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
            xb = images[start:start + batch_size]
            xb = (xb.float() if isinstance(xb, torch.Tensor)
                  else torch.as_tensor(np.asarray(xb), dtype=torch.float32))
            with autocast(device, precision):
                out = model(to_device(xb, device))
            logits[start:start + len(xb)] = out.float().cpu().numpy()
    return logits


def _normalisation(value) -> dict | None:
    if not isinstance(value, Mapping):
        return None
    return {k: v for k, v in value.items() if k not in NORMALISATION_IGNORED}


#: Relative pixel-scale difference above which stamps do not match a model.
PIXSCALE_RTOL = 0.01


def _label(meta: Mapping) -> str:
    return f"{meta['task']}/{meta.get('model', '?')}"


def check_compatible(meta: Mapping, stamps_attrs: Mapping, path: str | Path) -> None:
    """Raise DataError unless the stamps match the model's bands, pixel scale (1 %), stamp size
    and normalisation; the message lists every difference.
    """
    diffs = []
    bands = [str(b) for b in stamps_attrs.get("bands", [])]
    if bands != list(meta["bands"]):
        diffs.append(f"bands {bands} (model: {list(meta['bands'])})")
    scale, model_scale = stamps_attrs.get("pixscale_arcsec"), meta.get("pixscale_arcsec")
    if (scale is not None and model_scale
            and abs(float(scale) / model_scale - 1) > PIXSCALE_RTOL):
        diffs.append(f"pixscale_arcsec {float(scale):.4g} (model: {model_scale:.4g})")
    size = stamps_attrs.get("stamp_size_pix")
    if size is None or int(size) != int(meta["stamp_size_pix"]):
        diffs.append(f"stamp_size_pix {size} (model: {meta['stamp_size_pix']})")
    norm = _normalisation(stamps_attrs.get("normalisation"))
    if norm != _normalisation(meta["normalisation"]):
        diffs.append(f"normalisation {norm} (model: {_normalisation(meta['normalisation'])})")
    if diffs:
        raise DataError(f"{path}: stamps do not match the '{_label(meta)}' model: "
                        + "; ".join(diffs) + "; cut and preprocess with the configuration the "
                        "model was trained with, or retrain the model")


def load_models(paths: Sequence[str | Path], device: torch.device
                ) -> tuple[dict[str, torch.nn.Module], dict[str, dict], list]:
    """Models by catalog column (``score_{task}_{model}``), their meta, and FITS header cards.

    Raises DataError when two checkpoints would fill the same column.
    """
    models: dict[str, torch.nn.Module] = {}
    metas: dict[str, dict] = {}
    cards: list[tuple[str, object]] = []
    for i, path in enumerate(paths, start=1):
        model, meta = load_model(path, device)
        column = score_column(meta["task"], meta["model"])
        if column in models:
            raise DataError(f"{path}: a second model '{meta['model']}' for task "
                            f"'{meta['task']}' (column {column}); pass each model once")
        models[column], metas[column] = model, meta
        cards += [(f"MODEL{i}", Path(path).name), (f"MTASK{i}", meta["task"]),
                  (f"MNAME{i}", meta["model"]), (f"MSHA{i}", sha256_file(path))]
    return models, metas, cards


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


def _read(images, start: int, batch: int) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images[start:start + batch], dtype=np.float32))


def infer_tile(config: dict, stamps: str | Path, model_paths: Sequence[str | Path],
               out: str | Path) -> int:
    """Score one stamps file with every model and write the scores table; return n objects."""
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device)
    models, metas, cards = load_models(model_paths, device)
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
        scores = {column: np.empty(n, dtype=np.float32) for column in models}
        starts = range(0, n, batch)
        with ThreadPoolExecutor(max_workers=1) as pool:  # reads batch i+1 while scoring i
            ahead = pool.submit(_read, images, 0, batch) if n else None
            for start in cli.progress(starts, desc=f"infer {Path(stamps).stem}"):
                x = ahead.result()
                if start + batch < n:
                    ahead = pool.submit(_read, images, start + batch, batch)
                for column, model in models.items():
                    scores[column][start:start + len(x)] = score(model, x, batch, device,
                                                                 precision)
        columns = {name: fh[name][()] for name in ("index", "id", "ra", "dec", "flags")}
        # a shard holds several tiles: the per-object dataset names each object's tile
        tiles = fh["tile"][()].astype("S") if "tile" in fh else None
    tile = str(attrs.get("shard") or attrs.get("tile", Path(stamps).stem))
    table = Table()
    table["index"] = columns["index"].astype(np.int64)
    table["id"] = ids_for_fits(columns["id"])
    table["ra"] = columns["ra"].astype(np.float64)
    table["dec"] = columns["dec"].astype(np.float64)
    table["tile"] = (tiles if tiles is not None
                     else np.full(n, tile, dtype=f"S{max(len(tile.encode()), 1)}"))
    table["flags"] = columns["flags"].astype(np.uint8)
    for column, values in scores.items():
        table[column] = values
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
    p = cli.parser("Score the stamps of one file with every named model.")
    p.add_argument("--stamps", required=True, help="a stamps file, results/stamps/*.h5")
    p.add_argument("--models", nargs="+", required=True,
                   help="checkpoints, results/models/{task}/{model}.pt ...")
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
