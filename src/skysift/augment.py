"""Batched data augmentation on the batch's device: D4 rotations/flips, zoom, shifts, flux, noise.

Every random draw comes from the ``torch.Generator`` passed in (on the batch's device), so
a seed reproduces a batch exactly on a given device. The CLI writes ``augment.copies``
augmented copies of the train split (``results/train/{task}.augmented.h5``,
docs/formats.md), each copy seeded from (config seed, task, copy number).

    python -m skysift.augment --config-json J --in results/train/NAME.h5 \
        --out results/train/NAME.augmented.h5
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from skysift import cli
from skysift.errors import ConfigError, DataError
from skysift.io import atomic_output, open_h5, provenance, read_attr_json, write_attrs

log = logging.getLogger(__name__)

#: Elements of the dihedral group D4: k = rotation by 90° × (k % 4), then a flip if k >= 4.
D4_ELEMENTS = range(8)
#: Objects per batch in the CLI; part of what fixes the random stream, so recorded in attrs.
BATCH_SIZE = 256
#: train-file attrs not carried over to the augmented file (replaced or meaningless there).
_DROPPED_ATTRS = ("skysift_version", "git_commit", "config_hash", "seed", "h5_layout_version",
                  "step", "inputs", "counts", "n_labelled", "n_unlabelled")


def _check_element(k: int) -> int:
    if int(k) not in D4_ELEMENTS:
        raise ValueError(f"D4 element must be an integer in 0..7, got {k}")
    return int(k)


def d4_apply(x: torch.Tensor, k: int) -> torch.Tensor:
    """Apply D4 element ``k`` to the last two (y, x) axes of ``x``: an exact pixel permutation.

    ``k % 4`` quarter turns (``torch.rot90`` on dims (-2, -1)), then for ``k >= 4`` a flip
    of the last axis. Odd ``k % 4`` needs square images.
    """
    k = _check_element(k)
    out = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if k >= 4 else out


def d4_compose(a: int, b: int) -> int:
    """The element equal to applying ``b`` first, then ``a``.

    With R a quarter turn and F the flip, element k is F^(k//4) R^(k%4); F R F = R^-1 gives
    ``d4_apply(d4_apply(x, b), a) == d4_apply(x, d4_compose(a, b))``.
    """
    a, b = _check_element(a), _check_element(b)
    ra, fa, rb, fb = a % 4, a // 4, b % 4, b // 4
    if fb == 0:
        return 4 * fa + (ra + rb) % 4
    return 4 * (1 - fa) + (rb - ra) % 4


def d4_inverse(k: int) -> int:
    """The element undoing ``k``: rotations invert, reflections are their own inverse."""
    k = _check_element(k)
    return (4 - k) % 4 if k < 4 else k


def d4_random(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply an independent uniformly random D4 element to each sample.

    Parameters
    ----------
    x : (n, ..., s, s) tensor.
    generator : torch.Generator on ``x.device``.

    Returns
    -------
    (n, ..., s, s) transformed tensor and the (n,) int64 elements drawn.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"D4 needs square images, got {tuple(x.shape[-2:])}")
    ks = torch.randint(0, len(D4_ELEMENTS), (x.shape[0],), generator=generator, device=x.device)
    out = torch.empty_like(x)
    for k in D4_ELEMENTS:  # one batched call per element, not per sample
        sel = (ks == k).nonzero(as_tuple=True)[0]
        if sel.numel():
            out[sel] = d4_apply(x[sel], k)
    return out, ks


def _integer_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Exact shift by whole pixels with zero fill: out[y, x] = in[y - dy, x - dx]."""
    n, c, h, w = x.shape
    src_y = torch.arange(h, device=x.device)[None, :] - shift[:, 1:2]  # (n, h)
    src_x = torch.arange(w, device=x.device)[None, :] - shift[:, 0:1]  # (n, w)
    out = torch.gather(x, 2, src_y.clamp(0, h - 1)[:, None, :, None].expand(n, c, h, w))
    out = torch.gather(out, 3, src_x.clamp(0, w - 1)[:, None, None, :].expand(n, c, h, w))
    valid = (((src_y >= 0) & (src_y < h))[:, None, :, None]
             & ((src_x >= 0) & (src_x < w))[:, None, None, :])
    return torch.where(valid, out, torch.zeros((), dtype=x.dtype, device=x.device))


def _bilinear_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Bilinear shift by (dx, dy) pixels (any real value) with zero padding."""
    n, _, h, w = x.shape
    shift = shift.to(x.dtype)
    # align_corners=False: pixel p sits at normalised coordinate (2 p + 1) / size - 1.
    def coords(size: int, d: torch.Tensor) -> torch.Tensor:  # (n, size) source coordinates
        p = torch.arange(size, device=x.device, dtype=x.dtype)[None, :] - d
        return (2 * p + 1) / size - 1

    gx, gy = coords(w, shift[:, 0:1]), coords(h, shift[:, 1:2])
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def subpixel_shift(x: torch.Tensor, shifts_xy: torch.Tensor) -> torch.Tensor:
    """Shift each sample by its own (dx, dy) in pixels; content moves towards +x, +y.

    The whole-pixel part moves pixels exactly (as ``torch.roll`` but filling zeros); the
    remaining fraction in [-0.5, 0.5] is applied with ``F.grid_sample`` (bilinear, zero
    padding, ``align_corners=False``) on samples whose fraction is non-zero.

    Parameters
    ----------
    x : (n, c, h, w) float tensor.
    shifts_xy : (n, 2) shifts in pixels, (dx along the last axis, dy along the one before).

    Returns
    -------
    (n, c, h, w) shifted tensor, zeros where the source lies outside the image.
    """
    if x.ndim != 4 or tuple(shifts_xy.shape) != (x.shape[0], 2):
        raise ValueError(f"need x (n, c, h, w) and shifts (n, 2), got {tuple(x.shape)} and "
                         f"{tuple(shifts_xy.shape)}")
    shifts = shifts_xy.to(device=x.device, dtype=torch.float64)
    whole = torch.round(shifts)
    frac = shifts - whole
    out = _integer_shift(x, whole.long())
    moving = (frac != 0).any(dim=1)[:, None, None, None]
    # torch.where rather than indexing: no host sync; integer shifts stay exact.
    return torch.where(moving, _bilinear_shift(out, frac), out)


def zoom(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Magnify each sample by its own factor about pixel ``(s // 2, s // 2)`` (bilinear).

    The object's pixel (docs/formats.md) stays fixed: output pixel p samples the input at
    ``c + (p - c) / factor``; zero padding outside. A factor of exactly 1 leaves the sample
    untouched.

    Parameters
    ----------
    x : (n, c, h, w) float tensor.
    factors : (n,) magnifications (> 1 enlarges).

    Returns
    -------
    (n, c, h, w) tensor.
    """
    n, _, h, w = x.shape
    f = factors.to(device=x.device, dtype=x.dtype)[:, None]

    def coords(size: int) -> torch.Tensor:  # (n, size) normalised source coordinates
        c = size // 2
        p = c + (torch.arange(size, device=x.device, dtype=x.dtype)[None, :] - c) / f
        return (2 * p + 1) / size - 1

    gx, gy = coords(w), coords(h)
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=-1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.where((factors == 1).to(x.device)[:, None, None, None], x, out)


def scale_flux(x: torch.Tensor, factors: torch.Tensor, stretch: str = "linear") -> torch.Tensor:
    """Multiply each sample's flux by its own factor, through the preprocess stretch.

    For ``stretch='arcsinh'`` the stamps hold ``y = arcsinh(f / softening)``, so the flux
    ``f`` scaled by k gives ``arcsinh(k sinh(y))`` whatever the softening; for ``linear``
    stamps it is ``k y``.

    x : (n, c, h, w); factors : (n,). Returns (n, c, h, w).
    """
    k = factors.to(device=x.device, dtype=x.dtype)[:, None, None, None]
    if stretch == "arcsinh":
        return torch.asinh(k * torch.sinh(x))
    return k * x


def _log_uniform(n: int, bounds: Sequence[float], generator: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    lo, hi = np.log(float(bounds[0])), np.log(float(bounds[1]))
    unit = torch.rand((n,), generator=generator, device=device, dtype=torch.float64)
    return torch.exp(lo + (hi - lo) * unit)


def _enabled(bounds: Sequence[float] | None) -> bool:
    return bounds is not None and not (float(bounds[0]) == 1.0 == float(bounds[1]))


def augment_batch(x: torch.Tensor, cfg: Mapping, generator: torch.Generator,
                  normalisation: Mapping | None = None) -> torch.Tensor:
    """Augment a batch as the ``augment`` config block says.

    Random D4 element (``d4``), log-uniform magnification in ``zoom`` about the object's
    pixel, uniform shift in [-shift_pix, shift_pix] per axis (``shift_pix``), log-uniform
    flux factor in ``flux_scale`` and Gaussian noise of sigma ``noise_sigma``; in that
    order, each sample drawn independently, all from ``generator``. Disabled transforms
    draw nothing, so enabling one does not change the others' draws before it.

    Parameters
    ----------
    x : (n, band, s, s) float tensor, normalised stamps.
    cfg : the ``augment`` config block.
    generator : torch.Generator on ``x.device``; the same seed gives the same batch.
    normalisation : the stamps' ``normalisation`` attrs (the ``preprocess`` block); its
        ``stretch`` tells how flux scaling acts. None: linear.

    Returns
    -------
    (n, band, s, s) new tensor.
    """
    if x.ndim != 4:
        raise ValueError(f"need x (n, band, s, s), got {tuple(x.shape)}")
    out = x
    if cfg["d4"]:
        out, _ = d4_random(out, generator)
    if _enabled(cfg.get("zoom")):
        out = zoom(out, _log_uniform(x.shape[0], cfg["zoom"], generator, x.device))
    if cfg["shift_pix"] > 0:
        unit = torch.rand((x.shape[0], 2), generator=generator, device=x.device)
        out = subpixel_shift(out, (2 * unit - 1) * float(cfg["shift_pix"]))
    if _enabled(cfg.get("flux_scale")):
        stretch = (normalisation or {}).get("stretch", "linear")
        out = scale_flux(out, _log_uniform(x.shape[0], cfg["flux_scale"], generator, x.device),
                         stretch)
    if cfg["noise_sigma"] > 0:
        noise = torch.randn(out.shape, generator=generator, device=x.device, dtype=out.dtype)
        out = out + float(cfg["noise_sigma"]) * noise
    return out.clone() if out is x else out


def copy_seed(seed: int, task: str, copy: int) -> int:
    """Seed of augmented copy ``copy`` of ``task``: BLAKE2b of (seed, task, copy), 63 bits."""
    text = f"skysift-augment:{int(seed)}:{task}:{int(copy)}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


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
    """Command-line arguments of ``python -m skysift.augment``."""
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
    """Entry point of ``python -m skysift.augment``; returns the exit code."""
    return cli.run(_run, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
