"""Normalise raw stamps: border background, robust noise scale, intensity stretch.

The core (:func:`normalise`) works per stamp and band, so any split of the objects into
chunks gives bit-identical results; :func:`preprocess_file` runs it with dask over chunks of
``preprocess.chunk_objects`` objects and writes ``results/stamps/{tile}.h5``
(docs/formats.md).

    python -m skysift.preprocess --config-json J --in results/cutouts/T.h5 \
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

log = logging.getLogger(__name__)

#: MAD of a Gaussian times this is its sigma.
MAD_TO_SIGMA = 1.4826
#: Columns of the per-stamp statistics: background, scale, scale fell back to 1, empty border.
_N_STATS = 4


def border_width(size_pix: int) -> int:
    """Width in pixels of the border frame used for background and noise.

    A 4-pixel frame, narrowed to ``size_pix // 8`` (but at least 2) for small stamps so
    the frame never covers the object.
    """
    return max(2, min(4, size_pix // 8))


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise DataError(f"images must have shape (n, band, s, s), got {images.shape}")
    return images.astype(np.float32, copy=False)


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring non-finite values (NaN where none); float64.

    Equivalent to ``np.nanmedian`` but vectorised: one sort instead of a Python loop
    over rows.
    """
    finite = np.isfinite(a)
    srt = np.sort(np.where(finite, a, np.nan), axis=-1)  # NaN sorts last
    k = finite.sum(axis=-1)
    lo = np.take_along_axis(srt, (np.maximum(k - 1, 0) // 2)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(srt, np.minimum(k // 2, a.shape[-1] - 1)[..., None], axis=-1)[..., 0]
    med = 0.5 * (lo.astype(np.float64) + hi.astype(np.float64))
    return np.where(k > 0, med, np.nan)


def border_stats(images: np.ndarray, cfg: Mapping) -> np.ndarray:
    """Per-stamp, per-band background and noise scale from the border frame.

    Parameters
    ----------
    images : (n, band, s, s) float32, NaN where invalid.
    cfg : the ``preprocess`` config block.

    Returns
    -------
    (n, band, 4) float64: background (subtracted; 0 when ``background: none`` or the border
    has no finite pixel), scale (divided by: 1.4826 × MAD of the border, 1 when
    ``scale: none``), 1.0 where the scale fell back to 1 because the MAD was zero or
    undefined, 1.0 where the border had no finite pixel.
    """
    images = _check_images(images)
    n, n_band, s, _ = images.shape
    width = border_width(s)
    frame = np.ones((s, s), dtype=bool)
    frame[width:s - width, width:s - width] = False
    border = images[:, :, frame]  # (n, band, m)
    median = _nanmedian(border)
    empty = ~np.isfinite(median)
    stats = np.zeros((n, n_band, _N_STATS), dtype=np.float64)
    stats[..., 3] = empty
    if cfg["background"] == "border_median":
        stats[..., 0] = np.where(empty, 0.0, median)
    stats[..., 1] = 1.0
    if cfg["scale"] == "border_mad":
        sigma = MAD_TO_SIGMA * _nanmedian(np.abs(border - median[..., None]))
        fallback = ~(np.isfinite(sigma) & (sigma > 0))
        stats[..., 1] = np.where(fallback, 1.0, sigma)
        stats[..., 2] = fallback
    return stats


def _scaled(images: np.ndarray, stats: np.ndarray, cfg: Mapping) -> np.ndarray:
    """Apply ``stats`` (from :func:`border_stats`) and the stretch; NaN -> 0; float32."""
    background = stats[..., 0].astype(np.float32)[..., None, None]
    scale = stats[..., 1].astype(np.float32)[..., None, None]
    x = (images - background) / scale
    if cfg["stretch"] == "arcsinh":
        x = np.arcsinh(x / np.float32(cfg["arcsinh_softening"]))
    return np.where(np.isfinite(images), x, np.float32(0)).astype(np.float32, copy=False)


def _valid_mask(images: np.ndarray) -> np.ndarray:
    return np.isfinite(images).astype(np.uint8)


def normalise(images: np.ndarray, cfg: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Normalise raw stamps.

    Per stamp and band: subtract the border median (``background: border_median``), divide
    by 1.4826 × the border MAD (``scale: border_mad``; 1 when that is zero or undefined),
    then ``arcsinh(x / arcsinh_softening)`` (``stretch: arcsinh``) or nothing (``linear``).
    The border is the outer :func:`border_width` pixel frame.

    Parameters
    ----------
    images : (n, band, s, s) float32, raw pixels in tile units, NaN where invalid.
    cfg : the ``preprocess`` config block.

    Returns
    -------
    out : (n, band, s, s) float32, normalised, 0 where the input was not finite.
    mask : (n, band, s, s) uint8, 1 where the input pixel was finite.
    """
    images = _check_images(images)
    return _scaled(images, border_stats(images, cfg), cfg), _valid_mask(images)


def _chunk(in_path: str, start: int, stop: int, cfg: Mapping) -> tuple:
    """Read objects [start, stop) of a cutouts file and normalise them (runs on a worker).

    Workers open their own read-only handle, so the same task runs in a thread, a process or
    on a distributed worker; only the parent process writes.
    """
    with h5py.File(in_path, "r") as fh:
        block = _check_images(fh["images"][start:stop])
    stats = border_stats(block, cfg)
    counts = stats[:, :, 2:].sum(axis=(0, 1)).astype(np.int64)
    return start, _scaled(block, stats, cfg), _valid_mask(block), counts


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
    """Command-line arguments of ``python -m skysift.preprocess``."""
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
    """Entry point of ``python -m skysift.preprocess``; returns the exit code."""
    return cli.run(_run, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
