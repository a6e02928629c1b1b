"""Pixel values of FITS image HDUs in physical units: ``BSCALE * raw + BZERO``, ``BLANK`` as NaN.

Older survey releases store tiles as scaled integers (BITPIX 16 or 32 with ``BSCALE`` /
``BZERO``, blank pixels flagged by ``BLANK``); masks are often unsigned 16-bit integers
(``BZERO = 32768``). :func:`skysift.survey.tiles.fits_file` opens files memory-mapped and
unscaled, and these functions apply the scaling, a block of rows at a time for images, so a
band never needs a whole float64 copy. Plain and fpack (``CompImageHDU``) HDUs read alike.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.io import fits

from skysift.errors import SurveyError

#: Pixels of a scaled integer band converted at a time (bounds the float64 scratch array).
SCALE_BLOCK_PIX = 1 << 20


def _scaling(header: fits.Header, raw: np.ndarray, path: str) -> tuple[float, float, int | None]:
    """(BSCALE, BZERO, BLANK) of an image HDU; BLANK only for integer data (FITS standard)."""
    try:
        bscale, bzero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
        blank = int(header["BLANK"]) if "BLANK" in header and raw.dtype.kind in "iu" else None
    except (TypeError, ValueError):
        raise SurveyError(f"{path}: BSCALE/BZERO/BLANK ({header.get('BSCALE')!r}, "
                          f"{header.get('BZERO')!r}, {header.get('BLANK')!r}) are not numbers; "
                          "fix the header") from None
    if not (math.isfinite(bscale) and math.isfinite(bzero)) or bscale == 0:
        raise SurveyError(f"{path}: BSCALE={bscale}, BZERO={bzero} cannot scale pixels; fix "
                          "the header")
    return bscale, bzero, blank


ImageHDU = fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU


def band_pixels(hdu: ImageHDU, shape: tuple[int, int], out: np.ndarray, path: str = ""
                ) -> np.ndarray:
    """Fill ``out`` (y, x) float32 with an image HDU's values in physical units.

    ``hdu`` comes from :func:`skysift.survey.tiles.fits_file` (unscaled): the values are
    ``BSCALE * raw + BZERO`` (computed in float64, rounded once to float32) and NaN where the
    stored integer equals ``BLANK``; float data without scaling keywords are copied as they
    are. ``path`` names the file in errors. Returns ``out``.
    """
    raw = np.asarray(hdu.data).reshape(shape)
    bscale, bzero, blank = _scaling(hdu.header, raw, path)
    if bscale == 1.0 and bzero == 0.0 and blank is None:
        np.copyto(out, raw, casting="unsafe")
        return out
    step = max(1, SCALE_BLOCK_PIX // max(shape[1], 1))
    for y0 in range(0, shape[0], step):
        block = raw[y0:y0 + step]
        values = block.astype(np.float64) * bscale + bzero
        if blank is not None:
            values[block == blank] = np.nan
        out[y0:y0 + step] = values
    return out


def mask_values(hdu: ImageHDU, shape: tuple[int, int], path: str = "") -> np.ndarray:
    """A mask HDU's values (y, x) in physical units: exact integers (int64) for an integer
    map with integral scaling (e.g. unsigned 16-bit masks, ``BZERO = 32768``), else float64
    with ``BLANK`` as NaN."""
    raw = np.asarray(hdu.data).reshape(shape)
    bscale, bzero, blank = _scaling(hdu.header, raw, path)
    if bscale == 1.0 and bzero == 0.0 and blank is None:
        return raw
    if raw.dtype.kind in "iu" and bscale == 1.0 and bzero.is_integer():
        if raw.dtype.itemsize == 8 and bzero == 2.0**63:  # unsigned 64-bit
            return raw.view(np.uint64) ^ np.uint64(1 << 63)
        return raw.astype(np.int64) + int(bzero)
    values = np.empty(shape, np.float64)
    np.multiply(raw, bscale, out=values, casting="unsafe")
    values += bzero
    if blank is not None:
        values[raw == blank] = np.nan
    return values
