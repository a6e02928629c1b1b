"""Stamps for people to look at: band choice by wavelength, zero-point scaling, a robust
auto stretch and Lupton et al. (2004) asinh composites as PNG. The review page and the
training-set galleries share them (:func:`normalised_composite`), so a training example looks
as a candidate does."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np

from skysift.errors import DataError

#: Effective wavelengths (nm) of common filter names: which band is reddest.
WAVELENGTH_NM = {"u": 355, "g": 475, "r": 620, "i": 750, "z": 870, "y": 1000,
                 "U": 365, "B": 440, "V": 550, "R": 640, "I": 800, "Y": 1020, "J": 1250,
                 "H": 1650, "K": 2150, "Ks": 2150}


#: Auto stretch: the asinh's linear range in units of the robust pixel noise.
AUTO_STRETCH_SIGMA = 10.0


def _band_key(name: str) -> str:
    tail = name.replace("-", "_").replace(".", "_").split("_")[-1]
    for key in (name, tail, tail.lower()):
        if key in WAVELENGTH_NM:
            return key
    return ""


def rgb_bands(bands: Sequence[str], chosen: Sequence[str] | None = None) -> list[int]:
    """Indices into ``bands`` of the stamps shown as red, green, blue.

    ``chosen`` (config ``review.rgb_bands``) names them red first. Otherwise g, r, i when the
    survey has them, else the three reddest bands; bands are ordered by effective wavelength
    when every name is a known filter, else taken as listed (blue to red). One band is shown
    grey; of two, the redder is red, the bluer blue, green their mean (index -1).
    """
    bands = list(bands)
    if chosen:
        missing = [b for b in chosen if b not in bands]
        if missing:
            raise DataError(f"review.rgb_bands names {missing}, not bands of the cutouts "
                            f"{bands}; set review.rgb_bands to three of them or null")
        return [bands.index(b) for b in chosen]
    keys = [_band_key(b) for b in bands]
    order = list(range(len(bands)))
    if all(keys):
        order.sort(key=lambda k: WAVELENGTH_NM[keys[k]])
        if len(bands) > 3 and {"g", "r", "i"} <= set(keys):
            order = [keys.index(b) for b in ("g", "r", "i")]
    order = order[-3:][::-1]  # red first
    if len(order) == 1:
        return order * 3
    if len(order) == 2:
        return [order[0], -1, order[1]]
    return order


def band_scales(zeropoints: Sequence[float], zp_ref: float) -> np.ndarray:
    """Factors (band,) putting each band's pixels on the AB flux scale of zero point ``zp_ref``.

    A pixel value v at zero point zp is v * 10**(-0.4 * (zp - zp_ref)) at ``zp_ref``; a
    band whose factor is not finite (zero point unknown) keeps its values.
    """
    zp = np.asarray(zeropoints, dtype=np.float64)
    scale = 10.0 ** (-0.4 * (zp - zp_ref))
    return np.where(np.isfinite(scale), scale, 1.0)


def auto_stretch(stamps: np.ndarray) -> float:
    """``AUTO_STRETCH_SIGMA`` x the median over bands of the pixels' robust (MAD) noise.

    stamps : (n, band, y, x) in image units, NaN ignored. Returns 1.0 when no pixel is valid.
    """
    sigmas = []
    for b in range(stamps.shape[1]):
        x = stamps[:, b][np.isfinite(stamps[:, b])]
        if x.size:
            sigmas.append(1.4826 * np.median(np.abs(x - np.median(x))))
    sigma = float(np.median(sigmas)) if sigmas else 0.0
    return AUTO_STRETCH_SIGMA * sigma if sigma > 0 else 1.0


def composite(stamps: np.ndarray, order: Sequence[int], stretch: float, q: float,
              minimum: float = 0.0) -> np.ndarray:
    """Lupton asinh colour composites of stamps.

    stamps : (n, band, y, x) float, image units (NaN, e.g. off the tile, shown as 0);
    order : indices of the red, green, blue bands (:func:`rgb_bands`; -1: mean of red and
    blue); stretch, minimum : image units; q : asinh softening.
    Returns (n, y, x, 3) uint8.
    """
    from astropy.visualization import make_lupton_rgb

    data = np.nan_to_num(np.asarray(stamps, dtype=np.float64), nan=0.0, posinf=0.0,
                         neginf=0.0)
    out = np.zeros(data.shape[:1] + data.shape[2:] + (3,), np.uint8)
    for k, stamp in enumerate(data):
        red, blue = stamp[order[0]], stamp[order[2]]
        green = 0.5 * (red + blue) if order[1] < 0 else stamp[order[1]]
        # astropy divides by the intensity before masking where it is <= 0 (black pixels)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = make_lupton_rgb(red, green, blue, minimum=minimum, stretch=stretch, Q=q)
    return out


def normalised_composite(stamps: np.ndarray, bands: Sequence[str], normalisation: Mapping,
                         q: float) -> np.ndarray:
    """Composites of *normalised* stamps (``preprocess`` output) at the review page's auto
    stretch: the stretch is undone (noise units), then :func:`composite` with a linear range
    of ``AUTO_STRETCH_SIGMA`` x the noise, as :func:`auto_stretch` sets for raw cutouts.

    stamps : (n, band, y, x); normalisation : the stamps' recorded ``normalisation``
    (``stretch`` arcsinh: ``y = arcsinh(x / arcsinh_softening)``). Bands are on the
    per-band noise scale (not zero-point scaled), so colours are those of S/N.
    Returns (n, y, x, 3) uint8.
    """
    x = np.asarray(stamps, dtype=np.float64)
    if normalisation.get("stretch") == "arcsinh":
        x = np.sinh(x) * float(normalisation.get("arcsinh_softening", 1.0))
    return composite(x, rgb_bands(bands), AUTO_STRETCH_SIGMA, q)


def grey(stamps: np.ndarray, stretch: float, q: float, minimum: float = 0.0) -> np.ndarray:
    """Each band of each stamp as a grey asinh image, the composites' scale (one band alone).

    stamps : (n, band, y, x) image units (NaN shown black); stretch, minimum : image units;
    q : asinh softening, as :func:`composite`. Returns (n, band, y, x) uint8.
    """
    x = np.nan_to_num(np.asarray(stamps, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    v = np.arcsinh(q * np.maximum(x - minimum, 0.0) / stretch) / q
    return np.clip(np.round(255.0 * v), 0, 255).astype(np.uint8)


def signed_grey(images: np.ndarray, stretch: float, q: float) -> np.ndarray:
    """Signed images (e.g. a residual) as grey, 0 mid-grey, positive bright, asinh both ways.

    images : (n, y, x) image units; returns (n, y, x) uint8 (128 at 0).
    """
    x = np.nan_to_num(np.asarray(images, dtype=np.float64))
    v = np.arcsinh(q * x / stretch) / q
    return np.clip(np.round(127.5 + 127.5 * v), 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of a (y, x) grey or (y, x, 3) RGB uint8 image (8 bits a channel, no alpha)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
        buf, format="PNG", compress_level=9)
    return buf.getvalue()


def png_data_uri(image: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of a (y, x) grey or (y, x, 3) uint8 image."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
