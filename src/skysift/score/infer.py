"""Score every object of one shard with every named model (rule ``infer``).

``--shard``: straight from the shard's tiles, cut and normalised in memory
(:mod:`skysift.score.stream`, what the workflow runs). ``--stamps``: from a stamps file, as
before (for stamps kept or made by hand); both write the same table.

The stamps path streams a stamps file (``results/stamps/*.h5``) in batches
(``infer.batch_size``; ``auto`` halves the forward batch on out-of-memory errors) while a
reader thread reads the next batch, so memory does not grow with the number of objects.
The scores table: ``index``, ``id`` (verbatim), ``ra``, ``dec``, ``tile``, ``flags``, one
float32 logit column
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

from skysift import cli
from skysift.errors import ConfigError, DataError
from skysift.io import open_h5, provenance, read_attr_json
from skysift.learn.runtime import (
    resolve_device,
    resolve_precision,
    torch_runtime,
)
from skysift.score.batches import AUTO_BATCH, BatchSize, EmbeddingTap, score_block, std_column
from skysift.score.scoring import (
    batch_size,
    check_compatible,
    embedding_taps,
    load_models,
    select_mask,
    selection,
    write_embeddings,
    write_scores,
)
from skysift.score.stream import score_shard
from skysift.score.tables import header_cards

log = logging.getLogger(__name__)

#: the helpers the scoring paths share, importable from here as before
__all__ = ["AUTO_BATCH", "check_compatible", "infer_tile", "load_models", "main", "parser",
           "select_mask", "std_column"]

STAMP_DATASETS = ("images", "flags", "index", "id", "ra", "dec")


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


def _score_file(fh, models: Mapping, selected: np.ndarray, read: int, batch: BatchSize,
                device: torch.device, precision: str, tta: bool, desc: str,
                taps: Mapping[str, EmbeddingTap] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Logit (and spread) columns of every model, NaN for unselected objects; embeddings
    (n, width) of the models in ``taps``, NaN for unselected objects."""
    images = fh["images"]
    n = images.shape[0]
    out = {c: np.full(n, np.nan, dtype=np.float32) for c in models}
    if tta:
        out.update({std_column(c): np.full(n, np.nan, np.float32) for c in models})
    emb: dict[str, np.ndarray] = {}
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
            scores, embeddings = score_block(models, x, batch, device, precision, tta, taps)
            for column, values in scores.items():
                out[column][mine] = values
            for column, values in embeddings.items():
                if column not in emb:
                    emb[column] = np.full((n, values.shape[1]), np.nan, np.float32)
                emb[column][mine] = values
    return out, emb


def infer_tile(config: dict, stamps: str | Path, model_paths: Sequence[str | Path],
               out: str | Path, embeddings_out: str | Path | None = None) -> int:
    """Score one stamps file with every model and write the scores table (and, with
    ``infer.embeddings``, the embeddings to ``embeddings_out``); return n objects."""
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device)
    models, metas, cards = load_models(model_paths, device)
    taps = embedding_taps(models, metas, config) if embeddings_out else {}
    batch = batch_size(config, device)
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
        columns = {name: fh[name][()] for name in ("index", "id", "ra", "dec", "flags")}
        selected = selection(config, columns["index"], columns["id"])
        scores, emb = _score_file(fh, models, selected, read, batch, device, precision, tta,
                                  f"infer {Path(stamps).stem}", taps)
        # a shard holds several tiles: the per-object dataset names each object's tile
        tiles = fh["tile"][()].astype("S") if "tile" in fh else None
    tile = str(attrs.get("shard") or attrs.get("tile", Path(stamps).stem))
    if tiles is None:
        tiles = np.full(n, tile, dtype=f"S{max(len(tile.encode()), 1)}")
    prov = provenance(config, stamps=str(stamps), tile=tile, device=str(device),
                      precision=precision, tta=int(tta), n_selected=int(selected.sum()),
                      select=config["infer"]["select"], batch_size=batch.size)
    write_scores(out, columns, tiles, scores, selected, header_cards(prov) + cards)
    if embeddings_out:
        write_embeddings(embeddings_out, columns, emb, prov)
    seconds = time.perf_counter() - t0
    log.info("scored %d of %d objects of %s with %d models (%s)%s in %.1f s, %.0f objects/s "
             "on %s %s, forward batch %d (%d out-of-memory halvings) -> %s",
             selected.sum(), n, tile, len(models), ", ".join(models),
             " x 8 D4 orientations" if tta else "", seconds, n / max(seconds, 1e-9), device,
             precision, batch.size, batch.n_backoffs, out)
    return n


def parser():
    """The ``skysift infer`` argument parser."""
    p = cli.parser("Score every object of one shard with every named model: straight from its "
                   "tiles (--shard), or from a stamps file (--stamps).")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--shard", help="a shard of the survey index: read, cut and normalise "
                       "its tiles in memory (skysift.score.stream); no stamps file is read")
    which.add_argument("--stamps", help="a stamps file, results/stamps/*.h5")
    p.add_argument("--index-dir", default="results/index",
                   help="directory written by skysift index (with --shard)")
    p.add_argument("--models", nargs="+", required=True,
                   help="checkpoints, results/models/{task}/{model}.pt ...")
    p.add_argument("--out", required=True, help="scores table, results/scores/{shard}.fits")
    p.add_argument("--first-stage", action="store_true",
                   help="infer.first_stage: --models holds one first-stage checkpoint per task, "
                        "scored with one committee member, no TTA, into score1_{task} "
                        "(with --shard; results/stage1/{shard}.fits)")
    p.add_argument("--embeddings", help="with infer.embeddings: the per-object embeddings, "
                   "results/embeddings/{shard}.h5")
    p.add_argument("--rejects", help="with --shard: the objects of its rejected tiles and why, "
                   "results/scores/{shard}.rejects.ecsv (what rule rejects merges)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the infer CLI; returns the exit code."""
    def body(args) -> int:
        config = cli.load_config(args)
        emb = args.embeddings if config["infer"].get("embeddings") else None
        if config["infer"].get("embeddings") and not emb:
            raise ConfigError("infer.embeddings is true: pass --embeddings PATH "
                              "(results/embeddings/{shard}.h5)")
        if args.rejects and not args.shard:
            raise ConfigError("--rejects lists a shard's rejected tiles: pass --shard")
        if args.first_stage and not args.shard:
            raise ConfigError("--first-stage scores a shard from its tiles: pass --shard")
        if args.shard:
            score_shard(config, args.index_dir, args.shard, args.models, args.out, emb,
                        stage1=args.first_stage, rejects_out=args.rejects)
        else:
            infer_tile(config, args.stamps, args.models, args.out, emb)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
