"""survey2 tiles: the patch grid, each tile's WCS, PSF and depth, and its fpack files.

Tiles are HSC-like patches of one tract on a near-square grid; each has its own TAN WCS
(rotated by 0.1-0.4 degrees), PSF FWHM per band within 10 % of nominal and sky noise within
5 %, and overlaps its neighbours by a few pixels. Every random stream of the survey is a
numpy Generator seeded by ``SeedSequence([seed, stream, tile])`` (:func:`rng_for`).
Nothing here imports skysift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from survey2_render import (
    BANDS,
    PIXSCALE,
    PSF_FWHM,
    SKY_MU,
    ZEROPOINT,
    Frame,
    mag_to_flux,
    psf_kernels,
    white_sigma,
)

TRACT = 9813
FIELD_CENTRE = (216.0, 0.5)  #: RA, Dec of the survey centre, degrees
STREAMS = {"tile": 1, "population": 2, "position": 3, "faint": 4, "noise": 5, "catalog": 6}


@dataclass
class Tile:
    """One tile (an HSC patch).

    Attributes
    ----------
    name : ``{tract}-{x}_{y}``, e.g. ``9813-3_4`` (HSC writes ``9813-3,4``).
    index : position in the survey's tile list (seeds its random streams).
    cell : (x, y) cell of the grid.
    wcs : TAN WCS with a CD matrix (degrees per pixel).
    fwhm : (5,) Moffat PSF FWHM per band, arcsec.
    sigma : (5,) white-noise-equivalent sky sigma per pixel (the large-scale depth).
    gain : (5,) counts per image unit of the Poisson noise (sky level / sigma^2).
    """

    name: str
    index: int
    cell: tuple[int, int]
    wcs: WCS
    fwhm: np.ndarray
    sigma: np.ndarray
    gain: np.ndarray

    def frame(self) -> Frame:
        """The tile's :class:`survey2_render.Frame` (CD matrix in arcsec, PSF kernels)."""
        return Frame(self.wcs.wcs.cd * 3600.0, psf_kernels(self.fwhm), self.fwhm)


def rng_for(seed: int, stream: str, index: int = 0) -> np.random.Generator:
    """The generator of ``stream`` (a key of :data:`STREAMS`) for tile ``index``."""
    return np.random.default_rng(np.random.SeedSequence([seed, STREAMS[stream], index]))


def grid_shape(n_tiles: int) -> tuple[int, int]:
    """(nx, ny) of the smallest near-square grid holding ``n_tiles`` cells."""
    nx = int(np.ceil(np.sqrt(n_tiles)))
    return nx, int(np.ceil(n_tiles / nx))


def global_wcs() -> WCS:
    """TAN projection about :data:`FIELD_CENTRE` whose pixel is one arcsec (x east, y north)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(FIELD_CENTRE)
    w.wcs.crpix = [1.0, 1.0]
    w.wcs.cdelt = [1 / 3600.0, 1 / 3600.0]
    return w


def cell_centre(cell: tuple[int, int], shape: tuple[int, int], step: float) -> np.ndarray:
    """(2,) arcsec of a cell's centre in :func:`global_wcs`; ``step`` the cell side, arcsec."""
    return np.array([(cell[0] - (shape[0] - 1) / 2) * step, (cell[1] - (shape[1] - 1) / 2) * step])


def cell_bounds(tile: Tile, shape: tuple[int, int], step: float,
                margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(lo (2,), hi (2,)) arcsec of the tile's own cell, moved ``margin`` arcsec inwards at
    the survey's outer edges (outwards when negative)."""
    centre = cell_centre(tile.cell, shape, step)
    lo, hi = centre - step / 2, centre + step / 2
    for axis in range(2):
        lo[axis] += margin if tile.cell[axis] == 0 else 0.0
        hi[axis] -= margin if tile.cell[axis] == shape[axis] - 1 else 0.0
    return lo, hi


def make_tiles(seed: int, n_tiles: int, size: int, overlap: int) -> list[Tile]:
    """The survey's tiles.

    Parameters
    ----------
    seed : survey seed.
    n_tiles : number of tiles, laid on a near-square grid row by row.
    size : tile side, pixels.
    overlap : pixels each tile shares with its neighbour (cells are ``size - overlap``).

    Returns
    -------
    Tiles with rotated TAN WCSs, PSF FWHM within 10 % of nominal per band and sky sigma
    within 5 % of the nominal depth's (:data:`survey2_render.DEPTH_5SIG`).
    """
    shape, step = grid_shape(n_tiles), (size - overlap) * PIXSCALE
    gw, tiles = global_wcs(), []
    sky_flux = mag_to_flux(SKY_MU) * PIXSCALE**2
    for idx in range(n_tiles):
        rng = rng_for(seed, "tile", idx)
        cell = (idx % shape[0], idx // shape[0])
        ra, dec = gw.wcs_pix2world([cell_centre(cell, shape, step)], 0)[0]
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval, w.wcs.crpix = [ra, dec], [(size + 1) / 2, (size + 1) / 2]
        rot = np.radians(rng.choice([-1, 1]) * rng.uniform(0.1, 0.4))
        c, s = np.cos(rot), np.sin(rot)
        w.wcs.cd = PIXSCALE / 3600.0 * np.array([[-c, -s], [-s, c]])
        fwhm = PSF_FWHM * rng.uniform(0.9, 1.1, len(BANDS))
        sigma = white_sigma(PSF_FWHM) * rng.uniform(0.95, 1.05, len(BANDS))
        tiles.append(Tile(f"{TRACT}-{cell[0]}_{cell[1]}", idx, cell, w, fwhm, sigma,
                          sky_flux / sigma**2))
    return tiles


def tile_path(out: Path, band: str, tile: str) -> Path:
    """``out/tiles/calexp-HSC-{band}-{tile}.fits.fz``."""
    return out / "tiles" / f"calexp-HSC-{band}-{tile}.fits.fz"


def image_header(tile: Tile, b: int) -> fits.Header:
    """Header of band index ``b`` of ``tile``: CD-matrix TAN WCS, SEEING (PSF FWHM, arcsec),
    MAGZERO, FILTER, TRACT and PATCH (HSC's spelling, ``x,y``)."""
    h = fits.Header()
    h["EXTNAME"] = "IMAGE"
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRVAL1"], h["CRVAL2"] = tuple(float(v) for v in tile.wcs.wcs.crval)
    h["CRPIX1"], h["CRPIX2"] = tuple(float(v) for v in tile.wcs.wcs.crpix)
    for (i, j), value in np.ndenumerate(tile.wcs.wcs.cd):
        h[f"CD{i + 1}_{j + 1}"] = float(value)
    h["RADESYS"], h["EQUINOX"] = "ICRS", 2000.0
    h["FILTER"] = (f"HSC-{BANDS[b].upper()}", "filter")
    h["SEEING"] = (round(float(tile.fwhm[b]), 3), "PSF FWHM [arcsec]")
    h["MAGZERO"] = (ZEROPOINT, "AB zero point: mag = MAGZERO - 2.5 log10(flux)")
    h["TRACT"], h["PATCH"] = TRACT, f"{tile.cell[0]},{tile.cell[1]}"
    return h


def write_tile(out: Path, tile: Tile, image: np.ndarray) -> None:
    """Write one fpack file per band: an empty primary HDU and a RICE_1 ``CompImageHDU``
    (subtractive dither with a fixed seed, so files are reproducible) of ``image``
    (5, ny, nx) float32."""
    for b, band in enumerate(BANDS):
        primary = fits.PrimaryHDU()
        primary.header["TELESCOP"], primary.header["INSTRUME"] = "Subaru", "HSC"
        primary.header["ORIGIN"] = "survey2 (synthetic benchmark)"
        hdu = fits.CompImageHDU(image[b], header=image_header(tile, b), name="IMAGE",
                                compression_type="RICE_1", quantize_level=16,
                                quantize_method=1, dither_seed=1 + (tile.index * 5 + b) % 9999)
        fits.HDUList([primary, hdu]).writeto(tile_path(out, band, tile.name), overwrite=True)
