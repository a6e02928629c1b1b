"""What both scoring paths share (a stamps file: :mod:`skysift.score.infer`; tiles streamed:
:mod:`skysift.score.stream`): loading the models and checking them against the stamps,
``infer.select``, the embedding taps, and the scores and embeddings files they write."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from astropy.table import Table

from skysift.errors import ConfigError, DataError, SurveyError
from skysift.ids import id_keys
from skysift.io import atomic_output, id_array, read_table, write_attrs
from skysift.learn.checkpoints import load_model, sha256_file
from skysift.learn.models import CLASSICAL
from skysift.modelspec import score_column
from skysift.score.batches import AUTO_BATCH, BatchSize, EmbeddingTap
from skysift.score.tables import ids_for_fits, write_fits_table
from skysift.survey.catalog import read_catalog

log = logging.getLogger(__name__)

#: keys of the ``preprocess`` block that do not change the pixels (HDF5 chunking only).
NORMALISATION_IGNORED = ("chunk_objects",)

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



def embedding_taps(models: Mapping[str, torch.nn.Module], metas: Mapping[str, Mapping],
                   config: Mapping) -> dict[str, EmbeddingTap]:
    """An :class:`EmbeddingTap` per CNN when ``infer.embeddings`` asks (none for the
    classical models, which have no layer before the logit)."""
    if not config["infer"].get("embeddings"):
        return {}
    taps = {c: EmbeddingTap(m) for c, m in models.items()
            if metas[c]["architecture"] != CLASSICAL}
    return {c: t for c, t in taps.items() if t.layers}


def write_embeddings(path: str | Path, columns: Mapping[str, np.ndarray],
                     embeddings: Mapping[str, np.ndarray], prov: Mapping) -> None:
    """Per-object embeddings of one shard (docs/formats.md): ``index``, ``id`` and one
    (n, width) float32 dataset per CNN named by its score column; NaN rows: not scored."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("index", data=np.asarray(columns["index"], np.int64))
        ids = np.asarray(columns["id"])
        fh.create_dataset("id", data=ids if ids.dtype.kind == "S" else id_array(ids))
        for column, values in embeddings.items():
            fh.create_dataset(column, data=values.astype(np.float32, copy=False))
        write_attrs(fh, {**prov, "embeddings": sorted(embeddings)})


def write_scores(out: str | Path, columns: Mapping[str, np.ndarray], tiles: np.ndarray,
                 scores: Mapping[str, np.ndarray], selected: np.ndarray, cards: list) -> None:
    """The scores table of one shard: ``index``, ``id``, ``ra``, ``dec``, ``tile``,
    ``flags``, the score columns and ``selected`` (module docstring), FITS header ``cards``."""
    table = Table()
    table["index"] = np.asarray(columns["index"]).astype(np.int64)
    table["id"] = ids_for_fits(np.asarray(columns["id"]))
    table["ra"] = np.asarray(columns["ra"]).astype(np.float64)
    table["dec"] = np.asarray(columns["dec"]).astype(np.float64)
    table["tile"] = tiles
    table["flags"] = np.asarray(columns["flags"]).astype(np.uint8)
    for column, values in scores.items():
        table[column] = values
    table["selected"] = selected
    write_fits_table(out, table, cards)


def batch_size(config: Mapping, device: torch.device) -> BatchSize:
    """The forward batch of ``infer.batch_size`` (``auto``: per device type)."""
    size = config["infer"]["batch_size"]
    return BatchSize(AUTO_BATCH.get(device.type, AUTO_BATCH["cpu"]) if size == "auto"
                     else size)


def selection(config: Mapping, index: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(n,) bool: the objects at catalog rows ``index`` with ``ids`` that ``infer.select``
    keeps (all when it is empty); logs what each cut removed."""
    cuts = config["infer"]["select"]
    n = len(index)
    if not cuts:
        return np.ones(n, dtype=bool)
    values = _catalog_table(config, index, ids,
                            list(dict.fromkeys(c["column"] for c in cuts)))
    selected, removed = select_mask(cuts, values, n)
    log.info("infer.select keeps %d of %d objects (removed per cut: %s); the others stay in "
             "the table with NaN scores and selected = False", selected.sum(), n, removed)
    return selected
