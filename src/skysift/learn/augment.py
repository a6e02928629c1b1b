"""Batched data augmentation on the batch's device: D4 rotations/flips, zoom, shifts, flux, noise.

Every random draw comes from the ``torch.Generator`` passed in (on the batch's device), so
a seed reproduces a batch exactly on a given device. The CLI writes ``augment.copies``
augmented copies of the train split (``results/train/{task}.augmented.h5``,
docs/formats.md), each copy seeded from (config seed, task, copy number).

    skysift augment --config-json J --in results/train/NAME.h5 \
        --out results/train/NAME.augmented.h5
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from skysift import cli
from skysift.errors import ConfigError, DataError
from skysift.io import atomic_output, open_h5, provenance, read_attr_json, write_attrs
from skysift.learn.transforms import (
    augment_batch,
    copy_seed,
)

log = logging.getLogger(__name__)

#: Objects per batch in the CLI; part of what fixes the random stream, so recorded in attrs.
BATCH_SIZE = 256
#: train-file attrs not carried over to the augmented file (replaced or meaningless there).
_DROPPED_ATTRS = ("skysift_version", "git_commit", "config_hash", "seed", "h5_layout_version",
                  "step", "inputs", "counts", "n_labelled", "n_unlabelled")




















def augment_file(in_path: str | Path, out_path: str | Path, config: Mapping,
                 device: torch.device, batch_size: int = BATCH_SIZE) -> dict:
    """Write ``augment.copies`` augmented copies of the train split of a training set.

    Output rows are copy-major: copy 0 of every train object (file order), then copy 1...

    Returns
    -------
    dict with ``n_train``, ``copies``, ``n_written`` and ``seeds``.
    """
    cfg = config["augment"]
    with open_h5(in_path, required=("images", "label", "index", "split")) as fh:
        attrs = {k: read_attr_json(fh, k) for k in fh.attrs}
        if "task" not in attrs:
            raise DataError(f"{in_path}: no 'task' attr; it is not a training set: delete it "
                            "and re-run the training_set rule")
        split = fh["split"][()]
        rows = np.flatnonzero(split == 0)
        n_train, copies, shape = rows.size, int(cfg["copies"]), fh["images"].shape[1:]
        seeds = [copy_seed(config["seed"], attrs["task"], c) for c in range(copies)]
        n_out = copies * n_train
        header = {k: v for k, v in attrs.items() if k not in _DROPPED_ATTRS}
        header.update(seeds=seeds, augment=dict(cfg), batch_size=batch_size, device=str(device),
                      n_train=n_train, copies=copies)
        header.update(provenance(config, step="augment", inputs=str(in_path)))
        chunk = min(BATCH_SIZE, max(n_out, 1))
        chunk_bytes = chunk * int(np.prod(shape)) * 4
        kw = (dict(chunks=(chunk,) + shape, compression="gzip", compression_opts=1, shuffle=True)
              if n_out else {})
        # A cache holding every copy's open chunk: each chunk is compressed once, when full.
        with atomic_output(out_path) as tmp, h5py.File(
                tmp, "w", rdcc_nbytes=(copies + 2) * chunk_bytes, rdcc_nslots=10007) as fout:
            images = fout.create_dataset("images", (n_out,) + shape, np.float32, **kw)
            gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
            done = 0
            for start in cli.progress(range(0, split.size, batch_size), desc="augment"):
                sel = rows[(rows >= start) & (rows < start + batch_size)] - start
                if not sel.size or not copies:
                    continue
                batch = torch.from_numpy(fh["images"][start:start + batch_size][sel]).to(device)
                for c, gen in enumerate(gens):
                    out = augment_batch(batch, cfg, gen, attrs.get("normalisation")).cpu().numpy()
                    images[c * n_train + done:c * n_train + done + sel.size] = out
                done += sel.size
            fout.create_dataset("label", data=np.tile(fh["label"][()][rows].astype(np.uint8),
                                                      copies))
            fout.create_dataset("index", data=np.tile(fh["index"][()][rows].astype(np.int64),
                                                      copies))
            fout.create_dataset("copy", data=np.repeat(np.arange(copies), n_train).astype(np.uint8))
            write_attrs(fout, header)
    return {"n_train": int(n_train), "copies": copies, "n_written": int(n_out), "seeds": seeds}


def parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``skysift augment``."""
    p = cli.parser("Write augmented copies of the train split of a training set.")
    p.add_argument("--in", dest="in_path", required=True, help="training set HDF5 file")
    p.add_argument("--out", required=True, help="augmented HDF5 file to write")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    config = cli.load_config(args)
    if config["augment"]["copies"] > 255:
        raise ConfigError("augment.copies must be at most 255 (the copy number is uint8)")
    if args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    summary = augment_file(args.in_path, args.out, config, device)
    seconds = time.perf_counter() - t0
    log.info("augment: %d train objects x %d copies = %d stamps -> %s on %s in %.2f s "
             "(%.0f stamps/s)", summary["n_train"], summary["copies"], summary["n_written"],
             args.out, device, seconds, summary["n_written"] / max(seconds, 1e-9))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``skysift augment``; returns the exit code."""
    return cli.run(_run, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
