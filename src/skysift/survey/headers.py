"""The header summary: what ``skysift check`` read from the tile headers, for the index.

``check`` reads every tile header; the survey index needs the same WCS, shapes, PSF and zero
points. :func:`write_header_summary` stores them (the WCS as its parameters, floats exact),
:func:`read_header_summary` rebuilds the tiles, bit for bit: a tile whose WCS cannot be
rebuilt exactly (e.g. distortion lookup tables) is stored without one and read again. Layout
in docs/formats.md (``results/tile_headers.json``).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.wcs import WCS, Sip

from skysift.io import provenance, write_json
from skysift.survey.footprints import celestial_frame
from skysift.survey.tiles import TileHeader

log = logging.getLogger(__name__)


#: Config keys of ``survey`` that decide what a header summary holds; a summary written
#: under other values is ignored.
SUMMARY_KEYS = ("tiles", "bands", "hdu", "mask", "psf_fwhm_key", "zeropoint_key")


def _float_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _same_transform(a: WCS, b: WCS, shape: tuple[int, int]) -> bool:
    """True when ``a`` and ``b`` map a grid of pixels (corners included) to identical sky
    positions and back, bit for bit, in the same celestial frame."""
    ny, nx = shape
    x, y = np.meshgrid(np.linspace(-0.5, nx - 0.5, 5), np.linspace(-0.5, ny - 0.5, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wa, wb = a.all_pix2world(x.ravel(), y.ravel(), 0), b.all_pix2world(x.ravel(), y.ravel(), 0)
        if not all(np.array_equal(p, q, equal_nan=True) for p, q in zip(wa, wb, strict=True)):
            return False
        pa = a.all_world2pix(*wa, 0, quiet=True)
        pb = b.all_world2pix(*wa, 0, quiet=True)
    return (all(np.array_equal(p, q, equal_nan=True) for p, q in zip(pa, pb, strict=True))
            and repr(celestial_frame(a)) == repr(celestial_frame(b)))


def wcs_to_json(wcs: WCS, shape: tuple[int, int]) -> dict | None:
    """The parameters of a 2-D celestial ``wcs`` as JSON values (floats exact), or None.

    None when :func:`wcs_from_json` cannot rebuild a WCS that maps pixels to the sky bit for
    bit like ``wcs`` over a tile of ``shape`` (ny, nx) (e.g. distortion lookup tables).
    """
    if any(getattr(wcs, k, None) is not None for k in ("cpdis1", "cpdis2", "det2im1", "det2im2")):
        return None
    p = wcs.wcs
    with warnings.catch_warnings():
        # astropy warns "cdelt will be ignored since cd is present" on every read of cdelt of
        # a CD-matrix WCS, once per tile; check says it once for all tiles instead
        warnings.simplefilter("ignore", RuntimeWarning)
        cdelt = p.cdelt.tolist()
    out = {"ctype": list(p.ctype), "cunit": [str(c) for c in p.cunit], "crval": p.crval.tolist(),
           "crpix": p.crpix.tolist(), "cdelt": cdelt, "lonpole": float(p.lonpole),
           "latpole": float(p.latpole), "radesys": p.radesys,
           "equinox": _float_or_none(p.equinox), "dateobs": p.dateobs,
           "mjdobs": _float_or_none(p.mjdobs),
           "pv": [list(v) for v in p.get_pv()], "ps": [list(v) for v in p.get_ps()]}
    has = {"pc": p.has_pc(), "cd": p.has_cd(), "crota": p.has_crota()}
    has["pc"] = has["pc"] or not (has["cd"] or has["crota"])  # the identity default
    out.update({key: np.asarray(getattr(p, key)).tolist() for key, present in has.items()
                if present})
    if wcs.sip is not None:
        out["sip"] = {k: None if getattr(wcs.sip, k) is None else getattr(wcs.sip, k).tolist()
                      for k in ("a", "b", "ap", "bp")}
        out["sip"]["crpix"] = np.asarray(wcs.sip.crpix).tolist()
    try:
        rebuilt = wcs_from_json(out, shape)
    except Exception as exc:  # wcslib raises many types; such a tile is read again
        log.debug("WCS not summarised: %s", exc)
        return None
    return out if _same_transform(wcs, rebuilt, shape) else None


def wcs_from_json(params: dict, shape: tuple[int, int]) -> WCS:
    """The celestial WCS of :func:`wcs_to_json` parameters, ``pixel_shape`` (nx, ny)."""
    w = WCS(naxis=2)
    p = w.wcs
    p.ctype, p.cunit = params["ctype"], params["cunit"]
    p.crval, p.crpix, p.cdelt = params["crval"], params["crpix"], params["cdelt"]
    for key in ("pc", "cd", "crota"):
        if key in params:
            setattr(p, key, params[key])
    p.lonpole, p.latpole, p.radesys, p.dateobs = (params["lonpole"], params["latpole"],
                                                  params["radesys"], params["dateobs"])
    if params["equinox"] is not None:
        p.equinox = params["equinox"]
    if params["mjdobs"] is not None:
        p.mjdobs = params["mjdobs"]
    if params["pv"]:
        p.set_pv([(int(i), int(m), float(v)) for i, m, v in params["pv"]])
    if params["ps"]:
        p.set_ps([(int(i), int(m), str(v)) for i, m, v in params["ps"]])
    sip = params.get("sip")
    if sip:
        w.sip = Sip(*(None if sip[k] is None else np.array(sip[k]) for k in ("a", "b", "ap", "bp")),
                    sip["crpix"])
    p.set()
    w.pixel_shape = (shape[1], shape[0])
    return w


def write_header_summary(path: str | Path, headers: Sequence[TileHeader], config: dict) -> int:
    """Write what the tile headers said (docs/formats.md); return how many tiles hold a WCS.

    The index rebuilds each tile from it instead of reading the headers again; a tile whose
    WCS cannot be summarised exactly gets ``"wcs": null`` and is read again by the index.
    """
    survey = config["survey"]
    tiles = []
    for h in headers:
        tiles.append({"tile": h.tile, "bands": list(h.bands), "paths": list(h.paths),
                      "mask_paths": list(h.mask_paths), "shape": list(h.shape),
                      "pixscale_arcsec": float(h.pixscale_arcsec),
                      "psf_fwhm_arcsec": [_float_or_none(v) for v in h.psf_fwhm_arcsec],
                      "zeropoint": [_float_or_none(v) for v in h.zeropoint],
                      "wcs": wcs_to_json(h.wcs, h.shape)})
    write_json(path, {"survey": {k: survey[k] for k in SUMMARY_KEYS}, "tiles": tiles,
                      "provenance": provenance(config, step="check")})
    return sum(t["wcs"] is not None for t in tiles)


def read_header_summary(path: str | Path, config: dict) -> dict[str, TileHeader]:
    """{tile: TileHeader} from a header summary; {} (logged) when it is missing, unreadable
    or written under other ``survey`` settings (:data:`SUMMARY_KEYS`)."""
    path = Path(path)
    survey = config["survey"]
    try:
        with open(path) as fh:
            summary = json.load(fh)
    except (OSError, ValueError) as exc:
        log.warning("%s: header summary not usable (%s); reading every header", path, exc)
        return {}
    if summary.get("survey") != json.loads(json.dumps({k: survey[k] for k in SUMMARY_KEYS})):
        log.warning("%s: written for other survey settings; reading every header", path)
        return {}
    out = {}
    for t in summary["tiles"]:
        if t["wcs"] is None:
            continue
        shape = (int(t["shape"][0]), int(t["shape"][1]))
        out[t["tile"]] = TileHeader(
            t["tile"], t["bands"], t["paths"], t["mask_paths"], wcs_from_json(t["wcs"], shape),
            shape, t["pixscale_arcsec"],
            [math.nan if v is None else v for v in t["psf_fwhm_arcsec"]],
            [math.nan if v is None else v for v in t["zeropoint"]])
    return out
