"""Survey tiles and catalog: tile discovery, FITS reading, and the survey index.

The index step decides, once for the whole survey, which tile cuts which catalog object:
an object inside several (overlapping) tiles goes to the tile where it lies farthest from
an edge; objects on no tile are written to a rejects table with the reason. Layouts of
``tiles.json``, ``assignment.fits`` and ``rejects.ecsv`` are in docs/formats.md.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import string
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales, wcs_to_celestial_frame
from scipy.spatial import cKDTree

from skysift import cli
from skysift.errors import SurveyError
from skysift.io import atomic_output, id_array, provenance, read_table, require_columns, write_json

log = logging.getLogger(__name__)

#: Rejection reasons written to rejects.ecsv.
REASON_NONFINITE = "non-finite coordinates"
REASON_DEC = "dec outside [-90, 90]"
REASON_OFF = "off every tile"
#: Largest tolerated misalignment between the pixel grids of two bands of a tile (pixels).
MAX_BAND_OFFSET_PIX = 0.1


@dataclass
class TileHeader:
    """What the headers of one tile say: geometry, pixel scale, PSF and zero point per band."""

    tile: str
    bands: list[str]
    paths: list[str]
    wcs: WCS                      # celestial WCS of the first band, pixel_shape (nx, ny)
    shape: tuple[int, int]        # (ny, nx)
    pixscale_arcsec: float
    psf_fwhm_arcsec: list[float]  # per band, NaN where the header key is missing
    zeropoint: list[float]        # per band (AB), NaN where the header key is missing


@dataclass
class TileStack(TileHeader):
    """A tile's pixels, ``images`` (band, y, x) float32 in native byte order."""

    images: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0), np.float32))


# --------------------------------------------------------------------------- discovery

def tile_path(pattern: str, tile: str, band: str) -> str:
    """The file of ``tile`` in ``band``: ``pattern.format(tile=tile, band=band)``."""
    try:
        return pattern.format(tile=tile, band=band)
    except (KeyError, IndexError, ValueError) as exc:
        raise SurveyError(f"survey.tiles '{pattern}': bad pattern ({exc}); use only the "
                          "fields {tile} and {band}") from None


def _pattern_parts(pattern: str) -> list[tuple[str, str | None]]:
    try:
        parts = [(lit, name) for lit, name, _, _ in string.Formatter().parse(pattern)]
    except ValueError as exc:
        raise SurveyError(f"survey.tiles '{pattern}': bad pattern ({exc})") from None
    bad = {name for _, name in parts if name not in (None, "tile", "band")}
    if bad or not any(name == "tile" for _, name in parts):
        raise SurveyError(f"survey.tiles '{pattern}': the pattern must contain {{tile}} and "
                          f"may contain {{band}}, nothing else (found {sorted(bad)})")
    return parts


def discover_tiles(pattern: str, bands: Sequence[str]) -> list[str]:
    """Tile names matching ``pattern`` (``{tile}`` and ``{band}`` fields), sorted.

    Raises
    ------
    SurveyError
        If a tile lacks the file of some band (naming the missing file), or the pattern
        has no ``{band}`` while several bands are configured.
    """
    parts = _pattern_parts(pattern)
    if len(bands) > 1 and not any(name == "band" for _, name in parts):
        raise SurveyError(f"survey.tiles '{pattern}' has no {{band}} but survey.bands lists "
                          f"{list(bands)}; put {{band}} in the pattern")
    found: dict[str, set[str]] = {}
    for band in bands:
        glob_pat, regex, seen_tile = "", "", False
        for literal, name in parts:
            glob_pat += glob.escape(literal)
            regex += re.escape(literal)
            if name == "band":
                glob_pat += glob.escape(band)
                regex += re.escape(band)
            elif name == "tile":
                glob_pat += "*"
                regex += "(?P=tile)" if seen_tile else "(?P<tile>[^/\\\\]+)"
                seen_tile = True
        for path in glob.glob(glob_pat):
            match = re.fullmatch(regex, path)
            if match:
                found.setdefault(match["tile"], set()).add(band)
    tiles = sorted(found)
    for tile in tiles:
        for band in bands:
            if band not in found[tile]:
                missing = tile_path(pattern, tile, band)
                raise SurveyError(f"{missing}: band '{band}' of tile '{tile}' is missing; add "
                                  f"the file, remove the tile's other bands, or fix survey.bands")
    return tiles


# --------------------------------------------------------------------------- FITS reading

def _image_shape(header: fits.Header) -> tuple[int, int] | None:
    """(ny, nx) when the HDU holds a 2-D image (extra axes of length 1 allowed)."""
    naxis = int(header.get("NAXIS", 0))
    dims = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]
    if naxis < 2 or dims[0] < 1 or dims[1] < 1 or any(d != 1 for d in dims[2:]):
        return None
    return dims[1], dims[0]


def _celestial_wcs(header: fits.Header, hdul: fits.HDUList) -> WCS | None:
    try:
        full = WCS(header, fobj=hdul)
    except Exception as exc:  # wcslib raises many types for malformed headers
        log.debug("cannot parse WCS: %s", exc)
        return None
    if not full.has_celestial or full.wcs.lng not in (0, 1) or full.wcs.lat not in (0, 1):
        return None
    return full.celestial


def find_image_hdu(hdul: fits.HDUList, hdu: int | str | None, path: str) -> int:
    """Index of the image HDU: ``hdu`` (index or EXTNAME) or, if None, the first HDU with
    2-D data and a celestial WCS (compressed ``CompImageHDU`` included)."""
    names = [f"{i}:{h.name or type(h).__name__}" for i, h in enumerate(hdul)]
    if hdu is None:
        for i, h in enumerate(hdul):
            if h.is_image and _image_shape(h.header) and _celestial_wcs(h.header, hdul):
                return i
        raise SurveyError(f"{path}: no HDU holds a 2-D image with a celestial WCS (HDUs "
                          f"{names}); set survey.hdu or add CTYPE1/CTYPE2 to the image header")
    if isinstance(hdu, int):
        if not -len(hdul) <= hdu < len(hdul):
            raise SurveyError(f"{path}: survey.hdu is {hdu} but the file has HDUs {names}; "
                              "fix survey.hdu (null finds the image)")
        return hdu % len(hdul)
    try:
        return hdul.index_of(hdu)
    except KeyError:
        raise SurveyError(f"{path}: no HDU named '{hdu}' (HDUs {names}); fix survey.hdu "
                          "(null finds the image)") from None


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


def _read_band(path: str, survey: dict, load_data: bool) -> tuple:
    """(celestial wcs, (ny, nx), psf, zp, data or None) of one band file."""
    if not os.path.exists(path):
        raise SurveyError(f"{path}: tile file not found; create it or fix survey.tiles / "
                          "survey.bands in config")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path) as hdul:
                index = find_image_hdu(hdul, survey["hdu"], path)
                header = hdul[index].header
                shape = _image_shape(header)
                if shape is None:
                    raise SurveyError(f"{path}: HDU {index} is not a 2-D image; set survey.hdu "
                                      "to the image HDU (null finds it)")
                wcs = _celestial_wcs(header, hdul)
                if wcs is None:
                    raise SurveyError(f"{path}: HDU {index} has no celestial WCS; set "
                                      "survey.hdu in config or add CTYPE1/CTYPE2 to the header")
                heads = [header, hdul[0].header]
                psf = _header_float(heads, survey["psf_fwhm_key"], path)
                zp = _header_float(heads, survey["zeropoint_key"], path)
                data = None
                if load_data:
                    data = np.array(hdul[index].data, dtype=np.float32).reshape(shape)
        except SurveyError:
            raise
        except Exception as exc:  # astropy raises OSError/TypeError/ValueError on bad files
            _raise_if_truncated(caught, path)
            raise SurveyError(f"{path}: not a readable FITS file ({exc}); re-create or "
                              "re-download it") from None
    _raise_if_truncated(caught, path)
    for warning in caught:
        log.debug("%s: %s", path, warning.message)
    wcs.pixel_shape = (shape[1], shape[0])
    return wcs, shape, psf, zp, data


def _check_aligned(ref: WCS, other: WCS, shape: tuple[int, int], path: str, band0: str) -> None:
    ny, nx = shape
    x = np.array([0, nx - 1, 0, nx - 1, (nx - 1) / 2])
    y = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xo, yo = other.world_to_pixel_values(*ref.pixel_to_world_values(x, y))
    offset = float(np.max(np.hypot(xo - x, yo - y)))
    if not offset <= MAX_BAND_OFFSET_PIX:
        raise SurveyError(f"{path}: pixel grid differs from band '{band0}' by up to "
                          f"{offset:.3g} pixels; resample the bands of a tile onto one pixel "
                          "grid (e.g. with reproject)")


def _read(config: dict, tile: str, load_data: bool) -> TileHeader | TileStack:
    survey = config["survey"]
    bands = list(survey["bands"])
    paths = [tile_path(survey["tiles"], tile, band) for band in bands]
    wcs0, shape0, psfs, zps, images = None, None, [], [], None
    for b, path in enumerate(paths):
        wcs, shape, psf, zp, data = _read_band(path, survey, load_data)
        if b == 0:
            wcs0, shape0 = wcs, shape
            if load_data:
                images = np.empty((len(bands),) + shape, np.float32)
        elif shape != shape0:
            raise SurveyError(f"{path}: image shape {shape} differs from band '{bands[0]}' "
                              f"{shape0} ({paths[0]}); every band of a tile must share one "
                              "pixel grid")
        else:
            _check_aligned(wcs0, wcs, shape, path, bands[0])
        psfs.append(psf)
        zps.append(zp)
        if load_data:
            images[b] = data
    scales = proj_plane_pixel_scales(wcs0)
    to_arcsec = [u.Unit(c).to(u.arcsec) for c in wcs0.wcs.cunit]
    pixscale = float(np.mean(np.asarray(scales) * np.asarray(to_arcsec)))
    kw = dict(tile=tile, bands=bands, paths=paths, wcs=wcs0, shape=shape0,
              pixscale_arcsec=pixscale, psf_fwhm_arcsec=psfs, zeropoint=zps)
    return TileStack(images=images, **kw) if load_data else TileHeader(**kw)


def read_tile_header(config: dict, tile: str) -> TileHeader:
    """Headers of every band of ``tile`` (no pixels are read); see :class:`TileHeader`."""
    return _read(config, tile, load_data=False)


def read_tile(config: dict, tile: str) -> TileStack:
    """All bands of ``tile``: ``images`` (band, y, x) float32 plus the header information.

    Raises
    ------
    SurveyError
        Missing band file, unreadable or truncated FITS, no celestial WCS, bands of
        different shapes or misaligned pixel grids; the message names the file and the fix.
    """
    return _read(config, tile, load_data=True)


def read_catalog(config: dict) -> Table:
    """The survey catalog, checked for the configured ``survey.columns`` and non-empty."""
    survey = config["survey"]
    path = survey["catalog"]
    table = read_table(path, "catalog")
    require_columns(table, survey["columns"], path, "survey.columns")
    if len(table) == 0:
        raise SurveyError(f"{path}: the catalog has no rows; point survey.catalog at the "
                          "survey's source catalog")
    return table


# --------------------------------------------------------------------------- assignment

def normalise_ra(ra_deg: np.ndarray) -> np.ndarray:
    """RA wrapped into [0, 360) degrees (NaN stays NaN)."""
    ra = np.mod(np.asarray(ra_deg, dtype=np.float64), 360.0)
    ra[ra >= 360.0] = 0.0  # mod of a tiny negative number rounds to 360
    return ra


def _unit(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def _frame(wcs: WCS):
    try:
        return wcs_to_celestial_frame(wcs)
    except ValueError:  # unknown frame: the catalog's ICRS is the best guess
        return ICRS()


def _tile_cap(wcs: WCS, shape: tuple[int, int]) -> tuple[np.ndarray, float] | None:
    """(centre unit vector, chord radius) of a cap containing the tile in its WCS frame."""
    ny, nx = shape
    t = np.linspace(0.0, 1.0, 17)
    x = np.concatenate([t * nx, t * nx, np.zeros_like(t), np.full_like(t, nx), [nx / 2]]) - 0.5
    y = np.concatenate([np.zeros_like(t), np.full_like(t, ny), t * ny, t * ny, [ny / 2]]) - 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = wcs.pixel_to_world_values(x, y)
    lon, lat = world[wcs.wcs.lng], world[wcs.wcs.lat]
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        return None  # e.g. an all-sky projection with off-sky corners: no prefilter
    vec = _unit(lon, lat)
    angle = np.arccos(np.clip(vec[:-1] @ vec[-1], -1.0, 1.0)).max()
    angle = min(math.pi, angle * 1.05 + 1e-6)
    return vec[-1], 2.0 * math.sin(angle / 2.0)


def assign_objects(ra_deg: np.ndarray, dec_deg: np.ndarray,
                   footprints: Sequence[tuple[WCS, tuple[int, int]]]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Assign each object to the tile where it lies farthest from an edge.

    Parameters
    ----------
    ra_deg, dec_deg : (n,) float, ICRS degrees; RA outside [0, 360) is wrapped.
    footprints : per tile ``(celestial wcs, (ny, nx))``.

    Returns
    -------
    tile_idx : (n,) int64, index into ``footprints``, -1 when rejected.
    x_pix, y_pix : (n,) float64, 0-based pixel position in that tile (NaN when rejected).
    reason : (n,) str, empty when assigned, else the rejection reason.

    A pixel ``(x, y)`` is inside when ``-0.5 <= x < nx - 0.5`` (same for y); the edge
    distance is ``min(x + 0.5, nx - 0.5 - x, y + 0.5, ny - 0.5 - y)``; ties go to the first
    tile. Candidates are prefiltered with a k-d tree on unit vectors (no RA seam).
    """
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    n = ra.size
    finite = np.isfinite(ra) & np.isfinite(dec)
    valid = finite & (np.abs(np.where(finite, dec, 0.0)) <= 90.0)
    n_wrapped = int(np.count_nonzero(finite & ((ra < 0) | (ra >= 360))))
    if n_wrapped:
        log.info("%d objects with RA outside [0, 360) wrapped into it", n_wrapped)
    ra = normalise_ra(ra)
    tile_idx = np.full(n, -1, np.int64)
    x_pix, y_pix = np.full(n, np.nan), np.full(n, np.nan)
    best = np.full(n, -np.inf)
    valid_rows = np.flatnonzero(valid)
    frames: dict[str, tuple] = {}
    for t, (wcs, (ny, nx)) in enumerate(footprints):
        frame = _frame(wcs)
        key = repr(frame)
        if key not in frames:
            if isinstance(frame, ICRS):
                lon, lat = ra[valid_rows], dec[valid_rows]
            else:
                sph = SkyCoord(ra[valid_rows] * u.deg, dec[valid_rows] * u.deg,
                               frame="icrs").transform_to(frame).spherical
                lon, lat = sph.lon.deg, sph.lat.deg
            frames[key] = (lon, lat, cKDTree(_unit(lon, lat)) if len(lon) else None)
        lon, lat, tree = frames[key]
        if tree is None:
            break
        cap = _tile_cap(wcs, (ny, nx))
        cand = (np.sort(np.asarray(tree.query_ball_point(cap[0], cap[1]), dtype=np.int64))
                if cap else np.arange(len(lon)))
        if not len(cand):
            continue
        world = [None, None]
        world[wcs.wcs.lng], world[wcs.wcs.lat] = lon[cand], lat[cand]
        x, y = wcs.all_world2pix(world[0], world[1], 0, quiet=True)
        with np.errstate(invalid="ignore"):
            inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
            dist = np.minimum(np.minimum(x + 0.5, nx - 0.5 - x), np.minimum(y + 0.5, ny - 0.5 - y))
            rows = valid_rows[cand]
            win = inside & (dist > best[rows])
        rows = rows[win]
        tile_idx[rows], x_pix[rows], y_pix[rows], best[rows] = t, x[win], y[win], dist[win]
    reason = np.full(n, "", dtype="<U32")
    reason[valid & (tile_idx < 0)] = REASON_OFF
    reason[finite & ~valid] = REASON_DEC
    reason[~finite] = REASON_NONFINITE
    return tile_idx, x_pix, y_pix, reason


# --------------------------------------------------------------------------- CLI

def _footprint_radec(wcs: WCS, shape: tuple[int, int]) -> list[list[float]]:
    ny, nx = shape
    x, y = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5]), np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = wcs.pixel_to_world_values(x, y)
        sky = SkyCoord(world[wcs.wcs.lng] * u.deg, world[wcs.wcs.lat] * u.deg,
                       frame=_frame(wcs)).icrs
    return [[float(r), float(d)] for r, d in zip(sky.ra.deg, sky.dec.deg, strict=True)]


def catalog_ids(values) -> np.ndarray:
    """Catalog ids for FITS/ECSV tables: int64 for integer ids, str otherwise (checked)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise SurveyError("object ids exceed the int64 range; store them as strings")
    ids = id_array(arr)  # raises for float ids
    return ids if ids.dtype.kind == "i" else np.char.decode(ids, "utf-8")


def _coords(table: Table, name: str, path: str) -> np.ndarray:
    col = table[name]
    try:
        values = np.ma.filled(np.ma.asarray(col, dtype=np.float64), np.nan)
    except (TypeError, ValueError):
        raise SurveyError(f"{path}: column '{name}' is not numeric; give RA/Dec in decimal "
                          "degrees (survey.columns)") from None
    return np.asarray(values, dtype=np.float64)


def _write_table(path: str, table: Table, prov: dict, fmt: str) -> None:
    with atomic_output(path) as tmp:
        if fmt == "fits":
            hdu = fits.BinTableHDU(table)
            for key, value in prov.items():
                hdu.header[f"HIERARCH {key}"] = value
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
        else:
            table.meta.update(prov)
            table.write(tmp, format=fmt)


def _body(args) -> int:
    start = time.perf_counter()
    config = cli.load_config(args)
    survey = config["survey"]
    tiles = discover_tiles(survey["tiles"], survey["bands"])
    if not tiles:
        raise SurveyError(f"no tile files match survey.tiles '{survey['tiles']}' (band "
                          f"'{survey['bands'][0]}'); fix the pattern, or run the mock step "
                          "first when survey.kind is mock")
    headers = [read_tile_header(config, t) for t in cli.progress(tiles, desc="headers")]
    catalog = read_catalog(config)
    cols, path = survey["columns"], survey["catalog"]
    try:
        ids = catalog_ids(catalog[cols["id"]])
    except SurveyError as exc:
        raise SurveyError(f"{path}: column '{cols['id']}' (survey.columns.id): {exc}") from None
    if len(np.unique(ids)) != len(ids):
        log.warning("%s: %d duplicate ids in column '%s'; rows stay distinct by index",
                    path, len(ids) - len(np.unique(ids)), cols["id"])
    ra, dec = _coords(catalog, cols["ra"], path), _coords(catalog, cols["dec"], path)
    tile_idx, x_pix, y_pix, reason = assign_objects(
        ra, dec, [(h.wcs, h.shape) for h in headers])
    ra = normalise_ra(ra)
    index = np.arange(len(catalog), dtype=np.int64)
    ok = np.flatnonzero(tile_idx >= 0)
    ok = ok[np.lexsort((index[ok], tile_idx[ok]))]
    names = np.array(tiles, dtype=str)
    # FITS strings are bytes: string ids go in as their UTF-8 encoding, verbatim
    assignment = Table({"index": index[ok], "id": id_array(ids[ok]), "ra": ra[ok],
                        "dec": dec[ok], "tile": names[tile_idx[ok]],
                        "x_pix": x_pix[ok], "y_pix": y_pix[ok]})
    bad = np.flatnonzero(tile_idx < 0)
    rejects = Table({"index": index[bad], "id": ids[bad], "reason": reason[bad].astype(str)})
    counts = np.bincount(tile_idx[ok], minlength=len(tiles))
    prov = provenance(config, inputs=[survey["tiles"], path])
    out = args.out_dir
    _write_table(os.path.join(out, "assignment.fits"), assignment, prov, "fits")
    _write_table(os.path.join(out, "rejects.ecsv"), rejects, prov, "ascii.ecsv")
    write_json(os.path.join(out, "tiles.json"), {
        "tiles": [{"tile": h.tile, "shape": list(h.shape), "pixscale_arcsec": h.pixscale_arcsec,
                   "footprint_radec": _footprint_radec(h.wcs, h.shape),
                   "n_objects": int(c)} for h, c in zip(headers, counts, strict=True)],
        "bands": list(survey["bands"]), "n_catalog": len(catalog),
        "n_assigned": len(ok), "n_rejected": len(bad), "provenance": prov})
    for h, c in zip(headers, counts, strict=True):
        log.info("tile %s: %d objects", h.tile, c)
    for why, c in sorted(Counter(reason[bad].tolist()).items()):
        log.warning("rejected %d objects: %s (listed in %s)", c, why,
                    os.path.join(out, "rejects.ecsv"))
    seconds = time.perf_counter() - start
    log.info("survey index: %d tiles, %d catalog objects, %d assigned, %d rejected in %.1f s "
             "(%.0f objects/s)", len(tiles), len(catalog), len(ok), len(bad), seconds,
             len(catalog) / max(seconds, 1e-9))
    return 0


def parser():
    """Command-line parser of ``python -m skysift.survey``."""
    p = cli.parser("Discover the survey's tiles and assign every catalog object to one tile.")
    p.add_argument("--out-dir", default="results/index",
                   help="directory of tiles.json, assignment.fits and rejects.ecsv")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Build the survey index (results/index); see docs/formats.md."""
    return cli.run(_body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
