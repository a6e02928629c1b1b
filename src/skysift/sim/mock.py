"""The mock survey: tiles, catalog and truth written exactly as a user would bring them.

``survey.kind: mock`` makes the ``mock`` rule write, to the paths of the ``survey`` section,
``mock.n_tiles`` tiles per band (float32 images with rotated TAN/CD WCS, PSF and zero-point
header keys, Gaussian sky noise plus the object light's Poisson noise at a gain of
``GAIN_E_PER_ADU``), a catalog (ids above 2**53, RA/Dec, ``mag_{band}``) and a truth table.
Nothing downstream reads anything mock-specific.

Objects are placed uniformly over the tangent plane of the field (only where some tile
covers the sky) and each is rendered into every tile its light reaches, through that
tile's WCS (light centroids land on the catalog position to ~0.02 px). All randomness
derives from ``numpy.random.default_rng(config["seed"])``; each object draws from its own
generator seeded from it, so runs are bit-identical.

The truth table (``survey.labels``, else ``<catalog stem>_truth.fits``) has one row per
catalog row: the id (``survey.labels_id_column``), ``kind``, ``is_lens``, ``is_merger``,
``is_star`` (0/1), ``theta_e_arcsec``, ``arc_snr``, ``magnification`` (lensed / unlensed
source flux), ``source_mag_r`` (unlensed), ``merger_mass_ratio``, ``merger_separation_arcsec``,
``merger_tidal_snr``, ``merger_stage`` (pair, interacting, coalescing); NaN or "" where not
applicable. ``arc_snr`` is sqrt(sum over bands and pixels of (arc / sky_sigma_band)**2) for
the noiseless PSF-convolved lensed source alone (:func:`skysift.sim.objects.make_lens`);
``merger_tidal_snr`` the same for the tidal features alone (0 for a pair).

When ``survey.known_lenses`` names a table (not ``lenscat``) the mock also writes a
known-lens table there, like a literature sample (:func:`skysift.sim.known.known_lens_table`): the
``mock.known_lenses_fraction`` of the lenses with the brightest arcs (highest ``arc_snr``),
at positions scattered by ``KNOWN_LENS_SCATTER_ARCSEC`` as another survey's astrometry
would be, named in IAU style,
plus ``mock.known_lenses_off_survey`` positions off the footprint. It draws from its own
generator, so the tiles, catalog and truth are the same with or without it.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skysift import cli
from skysift.errors import ConfigError
from skysift.io import atomic_output, provenance
from skysift.sim.known import known_lens_table
from skysift.sim.mockfiles import (
    check_config,
    table_format,
    tile_names,
    truth_path,
)
from skysift.sim.objects import (
    BAND_WAVELENGTH_NM,
    Context,
    Photometry,
    make_galaxy,
    make_lens,
    make_merger,
    make_star,
)
from skysift.sim.render import (
    MockObject,
    add_into,
    psf_sigma_pix,
    render,
    stamp_half_size,
)
from skysift.survey.known import LENSCAT

log = logging.getLogger(__name__)

#: Electrons per ADU: object light adds Gaussian noise of variance max(model, 0) / gain.
GAIN_E_PER_ADU = 4.0
#: Each tile is rotated by a random angle of this magnitude range (degrees), either sign.
ROTATION_DEG = (1.0, 3.0)
KINDS = ("lens", "merger", "galaxy", "star")
_BUILDERS = {"lens": make_lens, "merger": make_merger, "galaxy": make_galaxy, "star": make_star}












@dataclass(frozen=True)
class Tile:
    """One mock tile: name, square size (pixels), WCS header and its CD matrix in arcsec."""

    name: str
    size: int
    header: fits.Header
    wcs: WCS
    cd_arcsec: np.ndarray


def _field_wcs(ra_deg: float, dec_deg: float) -> WCS:
    """Tangent plane of the field whose 'pixels' are arcsec offsets, x East, y North."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra_deg, dec_deg]
    w.wcs.crpix = [1.0, 1.0]
    w.wcs.cd = np.eye(2) / 3600.0
    return w


def tile_layout(mock: dict, names: list[str], rng: np.random.Generator) -> list[Tile]:
    """Tiles on a square-ish grid around the field centre, each rotated by 1-3 degrees.

    Centres are spaced so that, whatever the rotations, neighbours overlap by at least
    ``mock.overlap_pix`` pixels along their shared edge.
    """
    size, pix, n = mock["tile_size_pix"], mock["pixscale_arcsec"], len(names)
    step = size - mock["overlap_pix"] - int(np.ceil(size * np.sin(np.radians(ROTATION_DEG[1]))))
    if step < 1:
        raise ConfigError(f"mock.overlap_pix {mock['overlap_pix']} leaves no room between tiles "
                          f"of mock.tile_size_pix {size}; lower overlap_pix")
    angles = np.radians(rng.uniform(*ROTATION_DEG, n) * rng.choice([-1.0, 1.0], n))
    ncol = int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    field = _field_wcs(mock["ra_center_deg"], mock["dec_center_deg"])
    tiles = []
    for i, (name, a) in enumerate(zip(names, angles, strict=True)):
        xi = (i % ncol - (ncol - 1) / 2) * step * pix
        eta = (i // ncol - (nrow - 1) / 2) * step * pix
        ra, dec = field.wcs_pix2world([[xi, eta]], 0)[0]
        cd = pix * np.array([[-np.cos(a), -np.sin(a)], [-np.sin(a), np.cos(a)]])
        header = fits.Header()
        for key, value in (("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CUNIT1", "deg"),
                           ("CUNIT2", "deg"), ("CRVAL1", ra), ("CRVAL2", dec),
                           ("CRPIX1", (size + 1) / 2), ("CRPIX2", (size + 1) / 2),
                           ("CD1_1", cd[0, 0] / 3600), ("CD1_2", cd[0, 1] / 3600),
                           ("CD2_1", cd[1, 0] / 3600), ("CD2_2", cd[1, 1] / 3600),
                           ("RADESYS", "ICRS")):
            header[key] = value
        tiles.append(Tile(name, size, header, WCS(header), cd))
    return tiles


def _on_tile(tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    x, y = tile.wcs.wcs_world2pix(ra, dec, 0)
    return (x >= -0.5) & (x < tile.size - 0.5) & (y >= -0.5) & (y < tile.size - 0.5)


def sample_positions(rng: np.random.Generator, tiles: list[Tile], field: WCS,
                     n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions (ra, dec in degrees) uniform in the tangent plane over the tiles."""
    def plane_corners(t: Tile) -> np.ndarray:
        c = np.array([[-0.5, -0.5], [-0.5, t.size - 0.5], [t.size - 0.5, -0.5],
                      [t.size - 0.5, t.size - 0.5]])
        return field.wcs_world2pix(t.wcs.wcs_pix2world(c, 0), 0)

    corners = np.vstack([plane_corners(t) for t in tiles])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    ras, decs = [], []
    while sum(len(r) for r in ras) < n:
        xy = rng.uniform(lo, hi, size=(2 * n + 16, 2))
        ra, dec = field.wcs_pix2world(xy, 0).T
        keep = np.any([_on_tile(t, ra, dec) for t in tiles], axis=0)
        ras.append(ra[keep])
        decs.append(dec[keep])
    return np.concatenate(ras)[:n], np.concatenate(decs)[:n]


def model_context(config: dict) -> Context:
    """Photometry, PSF FWHM (band,) arcsec and sky sigma (band,) ADU of the mock bands."""
    survey, mock = config["survey"], config["mock"]
    bands = survey["bands"]
    known = [BAND_WAVELENGTH_NM.get(b) for b in bands]
    # unknown band names: spread in channel order between g and z
    fallback = np.geomspace(475.0, 905.0, len(bands)) if len(bands) > 1 else np.array([622.0])
    lam = np.array([k if k is not None else f for k, f in zip(known, fallback, strict=True)])
    zp = float(mock["zeropoint"])
    sky = np.array([10.0 ** (-0.4 * (mock["sky_sigma_mag"][b] - zp)) for b in bands])
    pix = mock["pixscale_arcsec"]
    return Context(Photometry(zp, lam), mock, np.diag([-pix, pix]),
                   np.array([mock["psf_fwhm_arcsec"][b] for b in bands]), sky)


def object_kinds(mock: dict) -> list[str]:
    """Kinds of all catalogued objects: lenses, mergers, field galaxies, then stars."""
    n_tiles = mock["n_tiles"]
    n_gal = mock["n_galaxies_per_tile"] * n_tiles
    n_lens = int(np.floor(mock["lens_fraction"] * n_gal + 0.5))
    n_merger = min(int(np.floor(mock["merger_fraction"] * n_gal + 0.5)), n_gal - n_lens)
    return (["lens"] * n_lens + ["merger"] * n_merger + ["galaxy"] * (n_gal - n_lens - n_merger)
            + ["star"] * (mock["n_stars_per_tile"] * n_tiles))


def draw_objects(kinds: list[str], seeds: np.ndarray, ctx: Context) -> tuple[list, list[dict]]:
    """Build every object from its own seeded generator: (MockObject list, truth dicts)."""
    objects, truth = [], []
    for kind, seed in zip(cli.progress(kinds, desc="objects"), seeds, strict=True):
        obj, info = _BUILDERS[kind](np.random.default_rng(int(seed)), ctx)
        objects.append(obj)
        truth.append(info)
    return objects, truth


def render_tile(tile: Tile, objects: list[MockObject], ra: np.ndarray, dec: np.ndarray,
                fwhm_arcsec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noiseless tile (band, size, size) float64 ADU and which objects reached it (bool)."""
    sigma_pix, pixscale = psf_sigma_pix(fwhm_arcsec, tile.cd_arcsec)
    x, y = tile.wcs.wcs_world2pix(ra, dec, 0)
    half = np.array([stamp_half_size(o.extent_arcsec, pixscale, sigma_pix.max()) for o in objects])
    last = tile.size - 1
    near = (x + half >= 0) & (x - half <= last) & (y + half >= 0) & (y - half <= last)
    image = np.zeros((len(fwhm_arcsec), tile.size, tile.size))
    reached = np.zeros(len(objects), dtype=bool)
    for i in np.flatnonzero(near):
        x_lo, y_lo, stamp = render(objects[i], x[i], y[i], tile.cd_arcsec, fwhm_arcsec)
        reached[i] = add_into(image, x_lo, y_lo, stamp)
    return image, reached


def add_noise(image: np.ndarray, sky_sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 copy of (band, y, x) ``image`` (ADU) plus Gaussian noise.

    Variance per pixel: sky_sigma[band]**2 + max(image, 0) / GAIN_E_PER_ADU, i.e. sky noise
    plus the object light's Poisson noise in the Gaussian approximation.
    """
    var = sky_sigma[:, None, None] ** 2 + np.clip(image, 0.0, None) / GAIN_E_PER_ADU
    return (image + np.sqrt(var) * rng.standard_normal(image.shape)).astype(np.float32)


def _set_card(header: fits.Header, key: str, value, comment: str) -> None:
    long = len(key) > 8 or not key.replace("_", "").replace("-", "").isalnum()
    header[f"HIERARCH {key}" if long else key] = (value, comment)


def _provenance_cards(header: fits.Header, config: dict) -> None:
    for key, value in provenance(config, step="skysift.sim.mock").items():
        header[f"HIERARCH {key}"] = value


def write_tile(path: str, data: np.ndarray, header: fits.Header) -> None:
    """Write one band of a tile atomically: primary HDU, or fpack (RICE_1) for ``.fz``."""
    with atomic_output(path) as tmp:
        if str(path).endswith(".fz"):
            hdu = fits.CompImageHDU(data=data, header=header, compression_type="RICE_1",
                                    quantize_level=16, quantize_method=1, dither_seed=-1)
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
        else:
            fits.PrimaryHDU(data=data, header=header).writeto(tmp)


def write_table(table: Table, path: Path, config: dict) -> None:
    """Write a table atomically in the format of its suffix, provenance in its header."""
    fmt = table_format(path, "table")
    with atomic_output(path) as tmp:
        if fmt == "fits":
            hdu = fits.table_to_hdu(table)
            _provenance_cards(hdu.header, config)
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
        else:
            table.meta.update(provenance(config, step="skysift.sim.mock"))
            table.write(tmp, format=fmt)


def _tables(config: dict, kinds: list[str], ra: np.ndarray, dec: np.ndarray, objects: list,
            truth: list[dict], ctx: Context, perm: np.ndarray) -> tuple[Table, Table]:
    """Catalog and truth tables, rows in the shuffled order ``perm``."""
    survey, n = config["survey"], len(kinds)
    ids = np.int64(2**53 + 1) + np.arange(n, dtype=np.int64)
    flux = np.array([o.total_flux() for o in objects])
    cols = survey["columns"]
    catalog = Table({cols["id"]: ids, cols["ra"]: ra, cols["dec"]: dec})
    for b, band in enumerate(survey["bands"]):
        catalog[f"mag_{band}"] = ctx.phot.zeropoint - 2.5 * np.log10(flux[:, b])
    kind = np.array(kinds)
    nan = np.full(n, np.nan)
    labels = Table({survey["labels_id_column"]: ids, "kind": kind,
                    "is_lens": (kind == "lens").astype(np.int16),
                    "is_merger": (kind == "merger").astype(np.int16),
                    "is_star": (kind == "star").astype(np.int16)})
    for key in ("theta_e_arcsec", "arc_snr", "magnification", "source_mag_r",
                "merger_mass_ratio", "merger_separation_arcsec", "merger_tidal_snr"):
        labels[key] = [t.get(key, v) for t, v in zip(truth, nan, strict=True)]
    labels["merger_stage"] = [t.get("merger_stage", "") for t in truth]
    return catalog[perm], labels[perm]


def tile_header(tile: Tile, b: int, config: dict, ctx: Context) -> fits.Header:
    """FITS header of band ``b`` of ``tile``: WCS, band, PSF, zero point, noise, provenance."""
    survey = config["survey"]
    header = tile.header.copy()
    header["FILTER"] = (survey["bands"][b], "band name")
    header["BUNIT"] = ("adu", "background-subtracted counts")
    _set_card(header, survey["psf_fwhm_key"], float(ctx.fwhm_arcsec[b]), "PSF FWHM [arcsec]")
    _set_card(header, survey["zeropoint_key"], ctx.phot.zeropoint, "AB zero point")
    header["GAIN"] = (GAIN_E_PER_ADU, "e-/ADU of the object Poisson noise")
    header["SKYSIG"] = (float(ctx.sky_sigma[b]), "sky noise sigma [ADU]")
    _provenance_cards(header, config)
    return header


def write_tiles(config: dict, tiles: list[Tile], objects: list[MockObject], ra: np.ndarray,
                dec: np.ndarray, ctx: Context, noise_seeds: np.ndarray) -> np.ndarray:
    """Render, add noise to and write every tile and band; return tiles reached per object."""
    survey = config["survey"]
    n_reached = np.zeros(len(objects), dtype=int)
    for t, tile in enumerate(cli.progress(tiles, desc="tiles")):
        image, reached = render_tile(tile, objects, ra, dec, ctx.fwhm_arcsec)
        n_reached += reached
        for b, band in enumerate(survey["bands"]):
            noise_rng = np.random.default_rng(int(noise_seeds[t, b]))
            data = add_noise(image[b:b + 1], ctx.sky_sigma[b:b + 1], noise_rng)[0]
            write_tile(survey["tiles"].format(tile=tile.name, band=band), data,
                       tile_header(tile, b, config, ctx))
    return n_reached


def make_survey(config: dict) -> dict:
    """Write the mock survey described by ``config`` (validated); return a summary dict.

    Raises ConfigError when ``survey.kind`` is not mock or the mock settings are inconsistent.
    """
    check_config(config)
    start = time.perf_counter()
    survey, mock = config["survey"], config["mock"]
    rng = np.random.default_rng(config["seed"])
    ctx = model_context(config)
    tiles = tile_layout(mock, tile_names(config), rng)
    kinds = object_kinds(mock)
    field = _field_wcs(mock["ra_center_deg"], mock["dec_center_deg"])
    ra, dec = sample_positions(rng, tiles, field, len(kinds))
    obj_seeds = rng.integers(0, 2**63 - 1, size=len(kinds))
    noise_seeds = rng.integers(0, 2**63 - 1, size=(len(tiles), len(survey["bands"])))
    perm = rng.permutation(len(kinds))
    objects, truth = draw_objects(kinds, obj_seeds, ctx)
    n_reached = write_tiles(config, tiles, objects, ra, dec, ctx, noise_seeds)
    catalog, labels = _tables(config, kinds, ra, dec, objects, truth, ctx, perm)
    write_table(catalog, Path(survey["catalog"]), config)
    write_table(labels, truth_path(config), config)
    n_known = 0
    if survey["known_lenses"] and survey["known_lenses"] != LENSCAT:  # lenscat: shipped
        known = known_lens_table(config, kinds, ra, dec, truth, tiles, field)
        write_table(known, Path(survey["known_lenses"]), config)
        n_known = len(known)
    if np.any(n_reached == 0):
        log.warning("%d catalogued objects reached no tile", int((n_reached == 0).sum()))
    return dict(n_tiles=len(tiles), n_files=len(tiles) * len(survey["bands"]),
                n_catalog=len(kinds), **{f"n_{k}": kinds.count(k) for k in KINDS},
                **{f"n_{k}_brightened": sum(bool(t.get("brightened")) for t, kind
                                            in zip(truth, kinds, strict=True) if kind == k)
                   for k in ("lens", "merger")},
                n_multi_tile=int((n_reached > 1).sum()), n_unrendered=int((n_reached == 0).sum()),
                n_known_lenses=n_known, seconds=time.perf_counter() - start)


def parser() -> argparse.ArgumentParser:
    """Command line of ``skysift mock``."""
    return cli.parser("Write the mock survey (tiles, catalog, truth) to the paths in survey:.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mock step; returns the exit code."""
    def body(args: argparse.Namespace) -> int:
        s = make_survey(cli.load_config(args))
        log.info("mock: %d tiles (%d files), %d objects (%d lenses [%d brightened], %d mergers "
                 "[%d brightened], %d field galaxies, %d stars; %d in several tiles, "
                 "%d unrendered), %d known lenses in %.1f s (%.0f objects/s)",
                 s["n_tiles"], s["n_files"], s["n_catalog"], s["n_lens"], s["n_lens_brightened"],
                 s["n_merger"], s["n_merger_brightened"], s["n_galaxy"], s["n_star"],
                 s["n_multi_tile"], s["n_unrendered"], s["n_known_lenses"], s["seconds"],
                 s["n_catalog"] / max(s["seconds"], 1e-9))
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
