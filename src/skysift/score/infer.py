"""Score every object of a stamps file with every named model (rule ``infer``).

Streams a stamps file (``results/stamps/*.h5``) in batches (``infer.batch_size``; ``auto``
halves the forward batch on out-of-memory errors) while a reader thread reads the next batch,
so memory does not grow with the number of objects, and writes a scores table: ``index``,
``id`` (verbatim), ``ra``, ``dec``, ``tile``, ``flags``, one float32 logit column
``score_{task}_{model}`` per model, with ``infer.tta`` a ``score_std_{task}_{model}`` column
(the spread of the logit over the 8 D4 orientations; the logit is then their mean), and
``selected`` (False: left out by ``infer.select``, scores NaN). A model whose bands, pixel
scale, stamp size or normalisation differ from the stamps is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from skysift import cli
from skysift.errors import ConfigError, DataError, SurveyError
from skysift.ids import id_keys
from skysift.io import open_h5, provenance, read_attr_json, read_table
from skysift.learn.checkpoints import load_model, sha256_file
from skysift.learn.runtime import (
    resolve_device,
    resolve_precision,
    torch_runtime,
)
from skysift.learn.symmetry import D4_ELEMENTS
from skysift.modelspec import score_column
from skysift.score.batches import AUTO_BATCH, BatchSize, score_views
from skysift.score.tables import header_cards, ids_for_fits, write_fits_table
from skysift.survey.catalog import read_catalog

log = logging.getLogger(__name__)

#: keys of the ``preprocess`` block that do not change the pixels (HDF5 chunking only).
NORMALISATION_IGNORED = ("chunk_objects",)
STAMP_DATASETS = ("images", "flags", "index", "id", "ra", "dec")


def std_column(column: str) -> str:
    """``score_std_{task}_{model}``, the spread over the 8 D4 orientations of the logits in
    ``column`` (``score_{task}_{model}``)."""
    return column.replace("score_", "score_std_", 1)












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


def _id_text(ids: np.ndarray) -> np.ndarray:
    return id_keys(ids, "stamp ids").astype(str)


def _catalog_table(config: Mapping, index: np.ndarray, ids: np.ndarray,
                   columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Catalog ``columns`` at rows ``index`` (n,), checked against the stamps' ids.

    A FITS catalog is memory-mapped (only the shard's rows are read); CSV and ECSV are read
    whole.
    """
    survey = config["survey"]
    path, id_col = survey["catalog"], survey["columns"]["id"]
    fitsfile = str(path).lower().endswith((".fits", ".fit", ".fits.gz"))
    try:
        table = Table.read(path, memmap=True) if fitsfile else read_table(path, "catalog")
    except (OSError, ValueError) as exc:
        raise SurveyError(f"{path}: cannot read the catalog for infer.select ({exc})") from None
    missing = [c for c in columns if c not in table.colnames]
    if missing:
        raise ConfigError(f"infer.select names columns {missing} that {path} lacks; columns "
                          f"are {', '.join(table.colnames)}")
    if len(index) and int(index.max()) >= len(table):
        raise DataError(f"{path}: has {len(table)} rows but the stamps hold index "
                        f"{int(index.max())}; the catalog changed: re-run the survey steps")
    cat_ids = (table[id_col][index] if fitsfile
               else read_catalog(dict(config)).ids[index])
    if not np.array_equal(_id_text(np.ma.getdata(np.asarray(cat_ids))), _id_text(ids)):
        raise DataError(f"{path}: ids at the stamps' catalog rows differ from the stamps' ids; "
                        "the catalog changed since the cutouts: re-run the survey steps")
    return {c: np.ma.filled(np.ma.asarray(table[c][index], dtype=np.float64), np.nan)
            for c in columns}


def select_mask(cuts: Sequence[Mapping], values: Mapping[str, np.ndarray], n: int
                ) -> tuple[np.ndarray, dict[str, int]]:
    """Objects that pass every cut of ``infer.select``, and how many each cut removed.

    Parameters
    ----------
    cuts : list of {column, range: [lo, hi]}
        Inclusive bounds; ``null`` leaves a side open. NaN or masked values fail.
    values : {column: (n,) float64}
    n : int

    Returns
    -------
    (n,) bool, {"column [lo, hi]": number of objects that cut removed on its own}.
    """
    keep = np.ones(n, dtype=bool)
    removed = {}
    for cut in cuts:
        lo, hi = cut["range"]
        v = values[cut["column"]]
        ok = np.isfinite(v)
        if lo is not None:
            ok &= v >= lo
        if hi is not None:
            ok &= v <= hi
        removed[f"{cut['column']} [{lo}, {hi}]"] = int((~ok).sum())
        keep &= ok
    return keep, removed


def _read(images, start: int, stop: int, rows: np.ndarray, pin: bool = False) -> torch.Tensor:
    """The selected ``rows`` (relative to ``start``) of ``images[start:stop]``; with ``pin``
    (scoring on CUDA) read straight into page-locked memory, so the copy to the GPU needs
    no staging copy."""
    if not rows.size:
        return torch.zeros((0,) + images.shape[1:])
    if pin and rows.size == stop - start and images.dtype == np.float32:
        out = torch.empty((stop - start,) + images.shape[1:], dtype=torch.float32,
                          pin_memory=True)
        images.read_direct(out.numpy(), np.s_[start:stop])
        return out
    block = np.ascontiguousarray(images[start:stop], dtype=np.float32)
    return torch.from_numpy(block if rows.size == stop - start else block[rows])


def _selection(config: Mapping, fh, n: int) -> np.ndarray:
    cuts = config["infer"]["select"]
    if not cuts:
        return np.ones(n, dtype=bool)
    values = _catalog_table(config, fh["index"][()], fh["id"][()],
                            list(dict.fromkeys(c["column"] for c in cuts)))
    selected, removed = select_mask(cuts, values, n)
    log.info("infer.select keeps %d of %d objects (removed per cut: %s); the others stay in "
             "the table with NaN scores and selected = False", selected.sum(), n, removed)
    return selected


def _score_file(fh, models: Mapping, selected: np.ndarray, read: int, batch: BatchSize,
                device: torch.device, precision: str, tta: bool, desc: str
                ) -> dict[str, np.ndarray]:
    """Logit (and spread) columns of every model; NaN for unselected objects."""
    images = fh["images"]
    n = images.shape[0]
    views = tuple(D4_ELEMENTS) if tta else (0,)
    out = {c: np.full(n, np.nan, dtype=np.float32) for c in models}
    if tta:
        out.update({std_column(c): np.full(n, np.nan, np.float32) for c in models})
    starts = range(0, n, read)

    def rows(start):
        return np.flatnonzero(selected[start:start + read])

    with ThreadPoolExecutor(max_workers=1) as pool:  # reads batch i+1 while scoring i
        pin = device.type == "cuda"
        ahead = pool.submit(_read, images, 0, min(read, n), rows(0), pin) if n else None
        for start in cli.progress(starts, desc=desc):
            x, mine = ahead.result(), start + rows(start)
            if start + read < n:
                nxt = start + read
                ahead = pool.submit(_read, images, nxt, min(nxt + read, n), rows(nxt), pin)
            if not len(x):
                continue
            for column, model in models.items():
                logits = score_views(model, x, batch, device, precision, views)
                out[column][mine] = logits.mean(axis=0)
                if tta:
                    out[std_column(column)][mine] = logits.std(axis=0)
    return out


def infer_tile(config: dict, stamps: str | Path, model_paths: Sequence[str | Path],
               out: str | Path) -> int:
    """Score one stamps file with every model and write the scores table; return n objects."""
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device)
    models, metas, cards = load_models(model_paths, device)
    size = config["infer"]["batch_size"]
    batch = BatchSize(AUTO_BATCH.get(device.type, AUTO_BATCH["cpu"]) if size == "auto"
                      else size)
    read, tta = batch.size, bool(config["infer"]["tta"])
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
        selected = _selection(config, fh, n)
        scores = _score_file(fh, models, selected, read, batch, device, precision, tta,
                             f"infer {Path(stamps).stem}")
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
    table["selected"] = selected
    prov = provenance(config, stamps=str(stamps), tile=tile, device=str(device),
                      precision=precision, tta=int(tta), n_selected=int(selected.sum()),
                      select=config["infer"]["select"], batch_size=batch.size)
    write_fits_table(out, table, header_cards(prov) + cards)
    seconds = time.perf_counter() - t0
    log.info("scored %d of %d objects of %s with %d models (%s)%s in %.1f s, %.0f objects/s "
             "on %s %s, forward batch %d (%d out-of-memory halvings) -> %s",
             selected.sum(), n, tile, len(models), ", ".join(models),
             " x 8 D4 orientations" if tta else "", seconds, n / max(seconds, 1e-9), device,
             precision, batch.size, batch.n_backoffs, out)
    return n


def parser():
    """The ``skysift infer`` argument parser."""
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
