"""Normalise raw stamps: border background, robust noise scale, intensity stretch.

The core (:func:`normalise`) works per stamp and band, so any split of the objects into
chunks gives bit-identical results; :func:`preprocess_file` runs it with dask over chunks of
``preprocess.chunk_objects`` objects and writes ``results/stamps/{tile}.h5``
(docs/formats.md).

    skysift preprocess --config-json J --in results/cutouts/T.h5 \
        --out results/stamps/T.h5 --threads N
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import dask
import h5py
import numpy as np

from skysift import cli
from skysift.errors import ConfigError, DataError
from skysift.io import atomic_output, compression_kw, open_h5, provenance, write_attrs
from skysift.stamps.normalise import (
    border_stats,
    check_images,
    normalise,
    scaled,
    valid_mask,
)

log = logging.getLogger(__name__)

















def _chunk(in_path: str, start: int, stop: int, cfg: Mapping) -> tuple:
    """Read objects [start, stop) of a cutouts file and normalise them (runs on a worker).

    Workers open their own read-only handle, so the same task runs in a thread, a process or
    on a distributed worker; only the parent process writes.
    """
    with h5py.File(in_path, "r") as fh:
        block = check_images(fh["images"][start:stop])
    stats = border_stats(block, cfg)
    counts = stats[:, :, 2:].sum(axis=(0, 1)).astype(np.int64)
    return start, scaled(block, stats, cfg), valid_mask(block), counts


@contextlib.contextmanager
def dask_scheduler(name: str, workers: int) -> Iterator[dict]:
    """Keyword arguments of ``dask.compute`` for the configured scheduler.

    ``threads`` and ``processes`` are dask's local schedulers (one pool kept for the whole
    file); ``distributed`` starts a local cluster of ``workers`` single-threaded worker
    processes; ``tcp://host:port`` (any address) attaches to a running scheduler, e.g. a
    dask-jobqueue ``SLURMCluster``.
    """
    if name == "synchronous":
        yield {"scheduler": "synchronous"}
        return
    if name == "threads":
        with ThreadPoolExecutor(workers) as pool:
            yield {"scheduler": "threads", "pool": pool}
        return
    if name == "processes":
        with ProcessPoolExecutor(workers) as pool:
            yield {"scheduler": "processes", "pool": pool}
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(f"preprocess.scheduler={name!r} needs dask.distributed: "
                          "pip install distributed") from None
    if name == "distributed":
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield {"scheduler": client}
        return
    try:
        client = Client(name, timeout="30s")
    except OSError as exc:
        raise ConfigError(f"preprocess.scheduler: cannot reach the dask scheduler at {name} "
                          f"({exc}); start it or set preprocess.scheduler: threads") from None
    with client:
        yield {"scheduler": client}


def _normalise_chunks(in_path: str, n: int, out: h5py.Dataset, mask: h5py.Dataset,
                      cfg: Mapping, workers: int) -> np.ndarray:
    """Normalise every chunk with the configured scheduler; write here, one writer per file.

    Chunks are computed in waves of ``2 x workers`` so memory stays bounded by a few chunks,
    not by the file.
    """
    step = cfg["chunk_objects"]
    starts = list(range(0, n, step))
    wave = max(2 * workers, 1)
    counts = np.zeros(2, dtype=np.int64)
    with dask_scheduler(cfg["scheduler"], workers) as kw:
        for i in range(0, len(starts), wave):
            tasks = [dask.delayed(_chunk)(str(in_path), a, min(a + step, n), dict(cfg))
                     for a in starts[i:i + wave]]
            for start, scaled, valid, c in dask.compute(*tasks, **kw):
                out[start:start + len(scaled)] = scaled
                mask[start:start + len(valid)] = valid
                counts += c
    return counts


def _normalise_blank(src: h5py.Group, dst: h5py.Group, cfg: Mapping) -> None:
    """Group ``blank/`` of a stamps file: the blank-sky stamps normalised like the objects'
    (a few per tile: in this process), with their ``mask``; other datasets copied."""
    for name in src:
        if name != "images":
            src.copy(src[name], dst, name=name)
    images, mask = normalise(src["images"][()], cfg)
    dst.create_dataset("images", data=images)
    dst.create_dataset("mask", data=mask, **(compression_kw("lzf") if len(mask) else {}))


def preprocess_file(in_path: str | Path, out_path: str | Path, cfg: Mapping, config: Mapping,
                    threads: int = 1) -> dict:
    """Normalise a cutouts file into a stamps file (docs/formats.md), atomically.

    Parameters
    ----------
    in_path : ``results/cutouts/{tile}.h5``.
    out_path : ``results/stamps/{tile}.h5``; every dataset of the input is copied, ``images``
        replaced by the normalised stamps and ``mask`` added; likewise in group ``blank/``.
    cfg : the ``preprocess`` config block.
    config : the whole validated config (for provenance).
    threads : dask workers (threads, processes or local distributed workers).

    Returns
    -------
    dict with ``n_objects``, ``n_scale_fallback`` (stamp-bands whose scale fell back to 1),
    ``n_empty_border`` (stamp-bands without a finite border pixel) and ``seconds``.
    """
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    t0 = time.perf_counter()
    with open_h5(in_path, required=("images",)) as fin:
        src = fin["images"]
        if src.ndim != 4 or src.shape[2] != src.shape[3]:
            raise DataError(f"{in_path}: images has shape {src.shape}, expected (n, band, s, s); "
                            "delete it and re-run its rule")
        n = src.shape[0]
        with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as fout:
            for name in fin:
                if name not in ("images", "mask", "blank"):
                    fin.copy(fin[name], fout, name=name)
            if "blank" in fin:
                _normalise_blank(fin["blank"], fout.create_group("blank"), cfg)
            chunks = (min(cfg["chunk_objects"], n),) + src.shape[1:] if n > 0 else None
            out = fout.create_dataset("images", shape=src.shape, dtype=np.float32, chunks=chunks,
                                      **(compression_kw(cfg["compression"]) if n else {}))
            # the mask is almost all ones: lzf shrinks it ~50x for next to no time
            mask = fout.create_dataset("mask", shape=src.shape, dtype=np.uint8, chunks=chunks,
                                       **(compression_kw("lzf") if n else {}))
            counts = (_normalise_chunks(str(in_path), n, out, mask, cfg, threads) if n > 0
                      else np.zeros(2, dtype=np.int64))
            for key, value in fin.attrs.items():
                fout.attrs[key] = value
            write_attrs(fout, {"normalisation": dict(cfg)})
            write_attrs(fout, provenance(config, step="preprocess", inputs=str(in_path)))
    return {"n_objects": int(n), "n_scale_fallback": int(counts[0]),
            "n_empty_border": int(counts[1]), "seconds": time.perf_counter() - t0}


def parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``skysift preprocess``."""
    p = cli.parser("Normalise raw stamps (results/cutouts/T.h5 -> results/stamps/T.h5).")
    p.add_argument("--in", dest="in_path", required=True, help="cutouts HDF5 file")
    p.add_argument("--out", required=True, help="stamps HDF5 file to write")
    p.add_argument("--threads", type=int, default=1,
                   help="dask workers (threads, processes or distributed workers)")
    return p


def _run(args: argparse.Namespace) -> int:
    config = cli.load_config(args)
    summary = preprocess_file(args.in_path, args.out, config["preprocess"], config, args.threads)
    if summary["n_scale_fallback"] or summary["n_empty_border"]:
        log.warning("%s: %d stamp-bands had a zero or undefined border MAD (scale set to 1), "
                    "%d had no finite border pixel", args.in_path, summary["n_scale_fallback"],
                    summary["n_empty_border"])
    seconds = summary["seconds"]
    log.info("preprocess: %d objects -> %s in %.2f s (%.0f objects/s, %d workers, scheduler %s)",
             summary["n_objects"], args.out, seconds, summary["n_objects"] / max(seconds, 1e-9),
             args.threads, config["preprocess"]["scheduler"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``skysift preprocess``; returns the exit code."""
    return cli.run(_run, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
