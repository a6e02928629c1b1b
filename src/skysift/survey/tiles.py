"""Survey tiles: the one reader of multi-band FITS tiles with their masks (the catalog:
:mod:`skysift.survey.catalog`).

A tile is one FITS file per band named by ``survey.tiles`` (:mod:`skysift.survey.files`); plain
and fpack-compressed (``CompImageHDU``) files read the same, and so do integer images scaled
by ``BSCALE``/``BZERO`` (``BLANK`` pixels become NaN), read as float32
(:mod:`skysift.survey.pixels`). The image HDU is ``survey.hdu`` or the first HDU with 2-D data
and a celestial WCS. ``survey.mask`` names an optional bit-mask, weight (inverse variance)
or variance HDU, in the tile file or in files of their own; the pixels it rejects become
NaN. The survey index that assigns objects to
tiles is :mod:`skysift.survey.index`.

Memory: :func:`read_tile` holds the tile's bands as one float32 array (band, y, x), plus one
bool per pixel and band when a mask is configured, plus one band's HDU data while that
band is read (docs/formats.md states the bound); a scaled integer band is converted a block
of rows at a time (:mod:`skysift.survey.pixels`), not as a whole float64 copy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from skysift.errors import SurveyError
from skysift.survey.files import mask_paths, tile_path
from skysift.survey.pixels import band_pixels, mask_values

log = logging.getLogger(__name__)

#: Largest tolerated misalignment between the pixel grids of two bands of a tile (pixels).
MAX_BAND_OFFSET_PIX = 0.1


@dataclass
class TileHeader:
    """What the headers of one tile say: files, geometry, pixel scale, PSF and zero point."""

    tile: str
    bands: list[str]
    paths: list[str]              # image file per band
    mask_paths: list[str]         # mask file per band ([] when survey.mask.kind is none)
    wcs: WCS                      # celestial WCS of the first band, pixel_shape (nx, ny)
    shape: tuple[int, int]        # (ny, nx)
    pixscale_arcsec: float
    psf_fwhm_arcsec: list[float]  # per band, NaN where the header key is missing
    zeropoint: list[float]        # per band (AB), NaN where the header key is missing
    cd_and_cdelt: bool = False    # the first band's header holds both CDi_j and CDELTi


@dataclass(kw_only=True)
class TileStack(TileHeader):
    """A tile's pixels: ``images`` (band, y, x) float32 native, NaN where the data are NaN or
    the mask rejects the pixel; ``masked`` (band, y, x) bool, True where the mask rejects it
    (None without a mask)."""

    images: np.ndarray
    masked: np.ndarray | None


# --------------------------------------------------------------------------- FITS reading

def _image_shape(header: fits.Header) -> tuple[int, int] | None:
    """(ny, nx) when the HDU holds a 2-D image (extra axes of length 1 allowed)."""
    naxis = int(header.get("NAXIS", 0))
    dims = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]
    if naxis < 2 or dims[0] < 1 or dims[1] < 1 or any(d != 1 for d in dims[2:]):
        return None
    return dims[1], dims[0]


def _celestial_wcs(header: fits.Header, hdul: fits.HDUList) -> WCS | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FITSFixedWarning and friends: logged by the caller
        try:
            full = WCS(header, fobj=hdul)
        except Exception as exc:  # wcslib raises many types for malformed headers
            log.debug("cannot parse WCS: %s", exc)
            return None
    if not full.has_celestial or full.wcs.lng not in (0, 1) or full.wcs.lat not in (0, 1):
        return None
    return full.celestial


def find_image_hdu(hdul: fits.HDUList, hdu: int | str | None, path: str,
                   need_wcs: bool = True, key: str = "survey.hdu") -> int:
    """Index of the image HDU: ``hdu`` (index or EXTNAME) or, if None, the first HDU with
    2-D data (and a celestial WCS when ``need_wcs``), compressed ``CompImageHDU`` included."""
    names = [f"{i}:{h.name or type(h).__name__}" for i, h in enumerate(hdul)]
    if hdu is None:
        for i, h in enumerate(hdul):
            if h.is_image and _image_shape(h.header) and (
                    not need_wcs or _celestial_wcs(h.header, hdul)):
                return i
        what = "a 2-D image with a celestial WCS" if need_wcs else "a 2-D image"
        raise SurveyError(f"{path}: no HDU holds {what} (HDUs {names}); set {key}"
                          + (" or add CTYPE1/CTYPE2 to the image header" if need_wcs else ""))
    if isinstance(hdu, int):
        if not -len(hdul) <= hdu < len(hdul):
            raise SurveyError(f"{path}: {key} is {hdu} but the file has HDUs {names}; fix {key}")
        return hdu % len(hdul)
    try:
        return hdul.index_of(hdu)
    except KeyError:
        raise SurveyError(f"{path}: no HDU named '{hdu}' (HDUs {names}); fix {key}") from None


def _header_float(headers: Sequence[fits.Header], key: str, path: str) -> float:
    for header in headers:
        if key in header:
            try:
                return float(header[key])
            except (TypeError, ValueError):
                log.warning("%s: header key %s=%r is not a number; recorded as NaN",
                            path, key, header[key])
                return math.nan
    log.warning("%s: no header key %s; recorded as NaN (set survey.psf_fwhm_key / "
                "survey.zeropoint_key if the survey names it differently)", path, key)
    return math.nan


def _raise_if_truncated(caught: list, path: str) -> None:
    for warning in caught:
        if "truncated" in str(warning.message):
            raise SurveyError(f"{path}: FITS file is truncated ({warning.message}); re-create "
                              "or re-download it")


@contextlib.contextmanager
def fits_file(path: str, what: str = "tile file") -> Iterator[fits.HDUList]:
    """``fits.open(path)`` whose failures (missing, unreadable, truncated) are SurveyErrors.

    The file is memory-mapped and its images are left unscaled (``hdu.data`` holds the raw
    stored values, ``BSCALE``/``BZERO``/``BLANK`` stay in the header): read pixels through
    :func:`band_pixels` or :func:`mask_values`, which apply them.
    """
    if not os.path.exists(path):
        raise SurveyError(f"{path}: {what} not found; create it or fix survey.tiles / "
                          "survey.bands / survey.mask.file in config")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # unscaled: astropy refuses to memory-map a scaled image, and scales a whole
            # band into float64 when not memory-mapped; band_pixels scales by blocks instead
            with fits.open(path, memmap=True, do_not_scale_image_data=True) as hdul:
                yield hdul
        except (SurveyError, MemoryError):
            raise
        except Exception as exc:  # astropy raises OSError/TypeError/ValueError on bad files
            _raise_if_truncated(caught, path)
            raise SurveyError(f"{path}: not a readable FITS file ({exc}); re-create or "
                              "re-download it") from None
    _raise_if_truncated(caught, path)
    for warning in caught:
        log.debug("%s: %s", path, warning.message)


def _band_wcs(hdul: fits.HDUList, index: int, path: str) -> tuple[WCS, tuple[int, int]]:
    header = hdul[index].header
    shape = _image_shape(header)
    if shape is None:
        raise SurveyError(f"{path}: HDU {index} is not a 2-D image; set survey.hdu to the "
                          "image HDU (null finds it)")
    wcs = _celestial_wcs(header, hdul)
    if wcs is None:
        raise SurveyError(f"{path}: HDU {index} has no celestial WCS; set survey.hdu in config "
                          "or add CTYPE1/CTYPE2 to the header")
    wcs.pixel_shape = (shape[1], shape[0])
    return wcs, shape


def _image_hdu(hdul: fits.HDUList, hdu: int | str | None, path: str
               ) -> tuple[int, WCS, tuple[int, int]]:
    """(index, celestial wcs, (ny, nx)) of the image HDU, parsing each WCS once."""
    if hdu is None:
        for i, h in enumerate(hdul):
            shape = _image_shape(h.header) if h.is_image else None
            wcs = _celestial_wcs(h.header, hdul) if shape else None
            if wcs is not None:
                wcs.pixel_shape = (shape[1], shape[0])
                return i, wcs, shape
    index = find_image_hdu(hdul, hdu, path)  # names the HDUs when there is none
    return (index, *_band_wcs(hdul, index, path))


def _check_aligned(ref: WCS, other: WCS, shape: tuple[int, int], path: str, ref_path: str
                   ) -> None:
    ny, nx = shape
    x = np.array([0, nx - 1, 0, nx - 1, (nx - 1) / 2])
    y = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xo, yo = other.world_to_pixel_values(*ref.pixel_to_world_values(x, y))
    offset = float(np.max(np.hypot(xo - x, yo - y)))
    if not offset <= MAX_BAND_OFFSET_PIX:
        raise SurveyError(f"{path}: pixel grid differs from {ref_path} by up to {offset:.3g} "
                          "pixels; resample the bands of a tile onto one pixel grid (e.g. "
                          "with reproject)")


def _bad_bits(mask_cfg: dict, header: fits.Header) -> int:
    """Integer of bits that reject a pixel; 0 means any non-zero bit."""
    bits = mask_cfg["bad_bits"]
    if isinstance(bits, int):
        return bits
    value = 0
    for name in bits:  # LSST/HSC convention: header key MP_<NAME> holds the bit number
        key = f"MP_{name.upper()}"
        if key not in header:
            planes = sorted(k[3:] for k in header if k.startswith("MP_"))
            raise SurveyError(f"no mask plane '{name}' (header key {key}); planes are "
                              f"{planes}; fix survey.mask.bad_bits")
        value |= 1 << int(header[key])
    return value


def rejected_pixels(data: np.ndarray, mask_cfg: dict, bits: int = 0) -> np.ndarray:
    """Pixels a mask HDU rejects, (y, x) bool.

    ``kind`` bitmask: ``data & bits != 0`` (any non-zero value when ``bits`` is 0); weight
    (inverse variance): not ``> 0``; variance: not finite and ``> 0``.
    """
    kind = mask_cfg["kind"]
    if kind == "bitmask":
        if data.dtype.kind not in "iu":
            if not np.array_equal(data, np.floor(data), equal_nan=False):
                raise SurveyError("a bitmask HDU must hold integers; set survey.mask.kind to "
                                  "weight or variance for real-valued maps")
            data = data.astype(np.int64)
        return (data & bits) != 0 if bits else data != 0
    with np.errstate(invalid="ignore"):
        if kind == "weight":
            return ~(data > 0)
        return ~(np.isfinite(data) & (data > 0))


def _read_mask(survey: dict, path: str, image_path: str, shape: tuple[int, int],
               out: np.ndarray | None) -> None:
    """Fill ``out`` (y, x) bool with the pixels the mask at ``path`` rejects; with ``out``
    None only check the mask's header (HDU, shape, bit names)."""
    mask_cfg = survey["mask"]
    key = "survey.mask.hdu"
    with fits_file(path, "mask file") as hdul:
        if mask_cfg["hdu"] is None and not mask_cfg["file"]:
            raise SurveyError(f"{path}: survey.mask.kind is {mask_cfg['kind']} but no mask HDU "
                              "is named; set survey.mask.hdu (e.g. MASK, WEIGHT) or "
                              "survey.mask.file")
        index = find_image_hdu(hdul, mask_cfg["hdu"], path, need_wcs=False, key=key)
        hdu = hdul[index]
        if _image_shape(hdu.header) != shape:
            raise SurveyError(f"{path}: mask HDU {index} has shape "
                              f"{_image_shape(hdu.header)}, the image {image_path} {shape}; "
                              "fix survey.mask.hdu / survey.mask.file")
        try:
            bits = _bad_bits(mask_cfg, hdu.header)
            if out is not None:
                out[...] = rejected_pixels(mask_values(hdu, shape, path), mask_cfg, bits)
        except SurveyError as exc:
            raise SurveyError(f"{path}: HDU {index}: {exc}") from None


def _buffer(pool: dict | None, key: str, shape: tuple, dtype) -> np.ndarray:
    """An array of ``shape``: the pool's (taken out of it) when it fits, else a new one."""
    old = pool.pop(key, None) if pool is not None else None
    if old is not None and old.shape == shape and old.dtype == dtype:
        return old
    del old  # freed before the new one is allocated
    return np.empty(shape, dtype)


def _cd_and_cdelt(header: fits.Header) -> bool:
    """Whether a header holds both a CD matrix and CDELT (wcslib then ignores CDELT)."""
    cd = any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2))
    return cd and any(f"CDELT{i}" in header for i in (1, 2))


def _read(config: dict, tile: str, load_data: bool, pool: dict | None = None,
          bands: Sequence[str] | None = None) -> TileHeader | TileStack:
    survey = config["survey"]
    bands = list(survey["bands"] if bands is None else bands)
    paths = [tile_path(survey["tiles"], tile, band) for band in bands]
    masks = mask_paths(survey, tile, bands)
    wcs0, shape0, psfs, zps, images, masked = None, None, [], [], None, None
    for b, path in enumerate(paths):
        with fits_file(path) as hdul:
            index, wcs, shape = _image_hdu(hdul, survey["hdu"], path)
            if b == 0:
                wcs0, shape0 = wcs, shape
                cd_and_cdelt = _cd_and_cdelt(hdul[index].header)
                if load_data:
                    images = _buffer(pool, "images", (len(bands),) + shape, np.float32)
                    masked = (_buffer(pool, "masked", (len(bands),) + shape, np.bool_)
                              if masks else None)
            elif shape != shape0:
                raise SurveyError(f"{path}: image shape {shape} differs from {paths[0]} "
                                  f"{shape0}; every band of a tile must share one pixel grid")
            else:
                _check_aligned(wcs0, wcs, shape, path, paths[0])
            heads = [hdul[index].header, hdul[0].header]
            psfs.append(_header_float(heads, survey["psf_fwhm_key"], path))
            zps.append(_header_float(heads, survey["zeropoint_key"], path))
            if load_data:
                # one band at a time: a compressed band is decompressed once, copied, freed
                band_pixels(hdul[index], shape, images[b], path)
        if masks:
            _read_mask(survey, masks[b], path, shape0, masked[b] if load_data else None)
            if load_data:
                images[b][masked[b]] = np.nan
    scales = proj_plane_pixel_scales(wcs0)
    to_arcsec = [u.Unit(c).to(u.arcsec) for c in wcs0.wcs.cunit]
    pixscale = float(np.mean(np.asarray(scales) * np.asarray(to_arcsec)))
    kw = dict(tile=tile, bands=bands, paths=paths, mask_paths=masks, wcs=wcs0, shape=shape0,
              pixscale_arcsec=pixscale, psf_fwhm_arcsec=psfs, zeropoint=zps,
              cd_and_cdelt=cd_and_cdelt)
    return TileStack(images=images, masked=masked, **kw) if load_data else TileHeader(**kw)


def read_tile_header(config: dict, tile: str, bands: Sequence[str] | None = None
                     ) -> TileHeader:
    """Headers of every band of ``tile`` (no pixels are read); see :class:`TileHeader`.

    ``bands`` (default ``survey.bands``) reads only those: the bands present of a tile whose
    other band files are missing, for its footprint (:func:`skysift.survey.files.find_tiles`).
    """
    return _read(config, tile, load_data=False, bands=bands)


def read_tile(config: dict, tile: str, pool: dict | None = None) -> TileStack:
    """All bands of ``tile`` with their mask applied; see :class:`TileStack`.

    ``pool`` (optional) may hold the ``images`` / ``masked`` arrays of a previous tile: they
    are taken out of it and refilled when their shape fits (tiles of a shard usually share
    one shape), which spares allocating and page-faulting a fresh tile-sized array.

    Raises
    ------
    SurveyError
        Missing band or mask file, unreadable or truncated FITS, no celestial WCS, bands
        of different shapes or misaligned pixel grids, a mask of another shape; the
        message names the file and the fix.
    """
    return _read(config, tile, load_data=True, pool=pool)
