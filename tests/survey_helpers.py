"""Synthetic surveys for the survey/index/cutouts/check tests: WCS, FITS tiles, catalogs."""

from __future__ import annotations

import math

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, Sip

from skysift.config import validate

BANDS = ["g", "r"]


def make_wcs(ra0, dec0, shape, pixscale_arcsec=0.5, rot_deg=0.0,
             ctype=("RA---TAN", "DEC--TAN"), sip=False):
    """A TAN WCS centred on (ra0, dec0) with a rotated CD matrix, optionally SIP-distorted.

    The SIP terms move the tile corners by several pixels, so code that ignores the
    distortion puts sources pixels away from where they are.
    """
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = [c + "-SIP" for c in ctype] if sip else list(ctype)
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    c, s = math.cos(math.radians(rot_deg)), math.sin(math.radians(rot_deg))
    w.wcs.cd = pixscale_arcsec / 3600 * np.array([[-c, s], [s, c]])
    if ctype[0].startswith(("RA", "DEC")):
        w.wcs.radesys = "ICRS"
    if sip:
        a, b = np.zeros((4, 4)), np.zeros((4, 4))
        a[2, 0], a[0, 2], a[1, 1] = 2e-3, -1e-3, 1.5e-3
        b[0, 2], b[2, 0], a[3, 0] = 2.5e-3, 1e-3, 1e-5
        w.sip = Sip(a, b, None, None, w.wcs.crpix)
    return WCS(w.to_header(relax=True))  # through a header, as a reader sees it


def write_band(path, data, wcs, extra=None, compressed=False, extra_hdus=()):
    """One band file: primary image, or an fpack CompImageHDU after an empty primary."""
    header = wcs.to_header(relax=True)
    for key, value in (extra or {}).items():
        header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    if compressed:
        image = fits.CompImageHDU(np.asarray(data, np.float32), header=header,
                                  quantize_level=0.0, compression_type="GZIP_2")
        hdus = [fits.PrimaryHDU(), image]
    else:
        hdus = [fits.PrimaryHDU(np.asarray(data).astype(">f4"), header=header)]
    fits.HDUList(hdus + list(extra_hdus)).writeto(path)


def write_scaled_band(path, raw, wcs, bscale, bzero, blank=None, compressed=False,
                      extra=None):
    """One band stored as scaled integers, as older releases do: BITPIX from ``raw``'s dtype
    (int16 -> 16, int32 -> 32), header BSCALE/BZERO (and BLANK), physical value
    ``bscale * raw + bzero``; plain, or an fpack CompImageHDU (RICE_1) after an empty primary.
    Returns the physical values (float64, NaN where ``raw == blank``)."""
    raw = np.asarray(raw)
    header = wcs.to_header(relax=True)
    for key, value in (extra or {"PSF_FWHM": 1.0, "MAGZP": 30.0}).items():
        header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    if compressed:
        image = fits.CompImageHDU(raw, header=header, compression_type="RICE_1")
        hdus = [fits.PrimaryHDU(), image]
    else:
        image = fits.PrimaryHDU(raw, header=header, do_not_scale_image_data=True)
        hdus = [image]
    image.header["BSCALE"], image.header["BZERO"] = bscale, bzero
    if blank is not None:
        image.header["BLANK"] = blank
    fits.HDUList(hdus).writeto(path)
    with fits.open(path, do_not_scale_image_data=True) as hdul:  # the file is what it claims
        hdu = hdul[-1]
        assert hdu.header["BITPIX"] == 8 * raw.dtype.itemsize and hdu.header["BSCALE"] == bscale
        assert np.array_equal(hdu.data, raw)
    physical = bscale * raw.astype(np.float64) + bzero
    if blank is not None:
        physical[raw == blank] = np.nan
    return physical


def gaussian(shape, x0, y0, sigma=1.3, amp=100.0):
    """A Gaussian blob centred on pixel (x0, y0) (0-based, x along columns)."""
    y, x = np.mgrid[:shape[0], :shape[1]]
    return (amp * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))).astype(np.float32)


def write_tile(root, tile, wcs, shape, rng=None, compressed=False, images=None,
               extra=None, extra_hdus=()):
    """Every band of one tile under root/tiles; returns the images (band, y, x)."""
    rng = rng or np.random.default_rng(0)
    ext = ".fits.fz" if compressed else ".fits"
    out = []
    for b, band in enumerate(BANDS):
        img = (rng.normal(size=shape).astype(np.float32) if images is None
               else np.asarray(images[b], np.float32))
        write_band(root / "tiles" / f"{tile}_{band}{ext}", img, wcs,
                   extra=extra if extra is not None else {"PSF_FWHM": 1.0 + b, "MAGZP": 30.0},
                   compressed=compressed, extra_hdus=extra_hdus)
        out.append(img)
    return np.stack(out)


def write_catalog(path, ids, ra, dec, names=("objid", "ra", "dec")):
    Table({names[0]: ids, names[1]: ra, names[2]: dec}).write(path)


def make_config(root, pattern=None, catalog=None, compressed=False, **sections):
    """A validated config for a survey under root (tiles/{tile}_{band}.fits[.fz])."""
    ext = ".fits.fz" if compressed else ".fits"
    survey = {"kind": "files", "tiles": pattern or str(root / "tiles" / f"{{tile}}_{{band}}{ext}"),
              "bands": BANDS, "catalog": str(catalog or root / "cat.fits"), "labels": None}
    survey.update(sections.pop("survey", {}))
    return validate({"survey": survey, "cutouts": {"stamp_size_pix": 9}, **sections})
