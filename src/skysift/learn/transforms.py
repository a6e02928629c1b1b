"""Batched augmentation of stamps on the device they live on: D4, shifts, zoom, flux scaling, noise.

Pure torch functions over (n, band, y, x) tensors, used by the augment step (copies written
to disk) and by training (on the fly); the group D4 itself is :mod:`skysift.learn.symmetry`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from skysift.learn.symmetry import d4_random
from skysift.seeds import derive_seed


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
    return derive_seed("skysift-augment", int(seed), task, int(copy), sep=":", byteorder="big",
                       fold="shift")
