"""survey2 make: populate the tiles, render them with coadd-like noise, write the survey.

Layout of a survey directory::

    tiles/calexp-HSC-{band}-{tile}.fits.fz   fpack (RICE_1) image after an empty primary
                                             HDU; rotated TAN WCS, SEEING, MAGZERO = 27
    catalog.fits    object_id, i_ra, i_dec, {band}_cmodel_mag(err), i_extendedness_value
    labels.fits     object_id, is_lens, is_merger of the first half of the tiles by name
    truth.fits      every object's truth and parameters (never read by the pipeline)

Each tile's catalogued systems (lenses, mergers, stars, field galaxies, projections) are
placed in its own cell; uncatalogued faint galaxies fill the background. A system is
rendered into every tile it touches, so overlaps agree. Nothing here imports skysift.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from astropy.wcs import WCS
from scipy.signal import fftconvolve
from survey2_render import (
    BANDS,
    NOISE_KERNEL_SIGMA,
    PIXSCALE,
    PSF_FWHM,
    Frame,
    System,
    add_stamp,
    psf_kernels,
    render_system,
    role_snr,
    white_sigma,
)
from survey2_systems import faint_population, population
from survey2_tables import truth_rows, write_tables
from survey2_tiles import Tile, cell_bounds, global_wcs, grid_shape, make_tiles, rng_for, write_tile

SHARES = {"lens": 0.12, "merger": 0.12, "star": 0.10}  #: fractions of catalogue entries
FAINT_DENSITY = 80.0  #: uncatalogued background galaxies (i 23.3-26.5) per arcmin^2
ARC_SNR_FLOOR = 6.0  #: lensed sources are redrawn below this arc S/N (nominal tile)
OUTER_MARGIN_PIX = 40  #: catalogued objects keep this far inside the survey's outer cells


def place(rng: np.random.Generator, systems: list[System], lo: np.ndarray, hi: np.ndarray,
          home: int, gw: WCS) -> None:
    """Set ``ra``, ``dec`` and ``home`` of ``systems`` in place.

    Parameters
    ----------
    rng : generator of the positions.
    systems : systems of one tile.
    lo, hi : (2,) corners of the box they are drawn in, arcsec of ``gw``.
    home : index of their tile.
    gw : the survey's :func:`survey2_tiles.global_wcs`.

    Positions are uniform; a catalogued system is redrawn (up to 100 times) while it lies
    within 4" of a catalogued lens or merger (when either is one) or 1.5" of another.
    """
    placed, special = np.empty((0, 2)), np.empty(0, dtype=bool)
    xy = np.empty((len(systems), 2))
    for k, system in enumerate(systems):
        is_special = system.kind in ("lens", "merger")
        for _ in range(100):
            p = lo + rng.random(2) * (hi - lo)
            d = np.hypot(*(placed - p).T) if len(placed) else np.empty(0)
            if not (d < np.where(special | is_special, 4.0, 1.5)).any():
                break
        xy[k] = p
        if system.entries:
            placed, special = np.vstack([placed, p]), np.append(special, is_special)
    for system, (ra, dec) in zip(systems, gw.wcs_pix2world(xy, 0), strict=True):
        system.ra, system.dec, system.home = float(ra), float(dec), home


def draw_systems(seed: int, tiles: list[Tile], per_tile: int, size: int,
                 overlap: int) -> list[System]:
    """Every system of the survey, placed: per tile, ``per_tile`` catalogue entries
    (:func:`survey2_systems.population` at :data:`SHARES`) and faint background galaxies
    (Poisson, :data:`FAINT_DENSITY`)."""
    shape, step = grid_shape(len(tiles)), (size - overlap) * PIXSCALE
    gw = global_wcs()
    nominal = Frame(np.diag([-PIXSCALE, PIXSCALE]), psf_kernels(PSF_FWHM), PSF_FWHM)
    sigma = white_sigma(PSF_FWHM)
    out: list[System] = []
    for tile in tiles:
        systems = population(rng_for(seed, "population", tile.index), per_tile, SHARES, nominal,
                             sigma, ARC_SNR_FLOOR)
        rng = rng_for(seed, "position", tile.index)
        rng.shuffle(systems)
        place(rng, systems, *cell_bounds(tile, shape, step, OUTER_MARGIN_PIX * PIXSCALE),
              tile.index, gw)
        rng = rng_for(seed, "faint", tile.index)
        faint = faint_population(rng, int(rng.poisson(FAINT_DENSITY * step**2 / 3600.0)))
        place(rng, faint, *cell_bounds(tile, shape, step, -(overlap / 2 + 30) * PIXSCALE),
              tile.index, gw)
        out += systems + faint
    return out


def render_tile(tile: Tile, systems: list[System], size: int) -> tuple[np.ndarray, dict]:
    """Noiseless light of one tile.

    Parameters
    ----------
    tile : the tile.
    systems : every system of the survey; those within reach of the tile are rendered.
    size : tile side, pixels.

    Returns
    -------
    model : (5, size, size) image units per pixel.
    records : {index in ``systems``: dict} for the catalogued systems of this home tile:
        ``flux`` (n_entries, 5) pre-PSF flux of each entry's own light, ``arc_snr`` and
        ``tidal_snr`` (:func:`survey2_render.role_snr` at the tile's PSF and depth) and
        ``arc_flux_i`` (lensed-source flux in i).
    """
    frame = tile.frame()
    model = np.zeros((len(BANDS), size, size))
    x, y = tile.wcs.all_world2pix([s.ra for s in systems], [s.dec for s in systems], 0)
    reach = np.array([s.extent for s in systems]) / PIXSCALE + frame.kernels.shape[-1]
    touch = (x > -reach) & (x < size + reach) & (y > -reach) & (y < size + reach)
    records = {}
    for k in np.flatnonzero(touch):
        stamp = render_system(systems[k], float(x[k]), float(y[k]), frame)
        add_stamp(model, stamp)
        if systems[k].home == tile.index and systems[k].entries:
            records[int(k)] = dict(
                flux=stamp.owner_flux, arc_snr=role_snr(stamp, "arc", tile.sigma),
                tidal_snr=role_snr(stamp, "tidal", tile.sigma),
                arc_flux_i=float(stamp.role_flux.get("arc", np.zeros(5))[2]))
    return model, records


def noise_kernel() -> np.ndarray:
    """(5, 5) unit-sum Gaussian (sigma :data:`survey2_render.NOISE_KERNEL_SIGMA` pixels)
    that correlates neighbouring pixels' noise as a coadd's resampling does."""
    ax = np.arange(-2, 3)
    k = np.exp(-0.5 * (ax[:, None] ** 2 + ax[None, :] ** 2) / NOISE_KERNEL_SIGMA**2)
    return k / k.sum()


def observe(model: np.ndarray, tile: Tile, rng: np.random.Generator) -> np.ndarray:
    """The coadd of a tile.

    Parameters
    ----------
    model : (5, n, n) noiseless light, image units.
    tile : its tile (sky sigma and gain per band).
    rng : generator of the noise.

    Returns
    -------
    (5, n, n) float32: ``model`` plus sky and Poisson noise (white, then correlated by
    :func:`noise_kernel`, which keeps the large-scale depth ``tile.sigma`` while the
    per-pixel scatter drops to ~0.64 of it) plus a smooth background residual of three
    waves (300-1500 pixels) of 0.1 sky sigma each.
    """
    out = np.empty(model.shape, np.float32)
    n = model.shape[-1]
    yy, xx = np.mgrid[0:n, 0:n]
    for b in range(len(BANDS)):
        var = tile.sigma[b] ** 2 + np.clip(model[b], 0, None) / tile.gain[b]
        noise = fftconvolve(rng.standard_normal((n, n)) * np.sqrt(var), noise_kernel(),
                            mode="same")
        background = np.zeros((n, n))
        for _ in range(3):
            k, phi = 2 * np.pi / rng.uniform(300, 1500), rng.uniform(0, 2 * np.pi)
            background += np.cos(k * (np.cos(phi) * xx + np.sin(phi) * yy) + rng.uniform(0, 6.3))
        out[b] = model[b] + noise + 0.1 * tile.sigma[b] * background
    return out


def make_survey(out: Path, seed: int, n_tiles: int, per_tile: int, size: int = 1000,
                overlap: int = 40) -> dict:
    """Write a survey (module docstring) to ``out``.

    Parameters
    ----------
    out : survey directory (created).
    seed : the only source of randomness.
    n_tiles : tiles; the first ``n_tiles // 2`` by name are labelled.
    per_tile : catalogued objects per tile.
    size, overlap : tile side and overlap of neighbours, pixels.

    Returns
    -------
    ``tiles``, ``objects``, ``density_per_arcmin2``, ``halves`` ({labelled, scored}: objects,
    lenses, mergers) and ``seconds``.
    """
    start = time.perf_counter()
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    tiles = make_tiles(seed, n_tiles, size, overlap)
    systems = draw_systems(seed, tiles, per_tile, size, overlap)
    records: dict = {}
    for tile in tiles:
        model, rec = render_tile(tile, systems, size)
        records.update(rec)
        write_tile(out, tile, observe(model, tile, rng_for(seed, "noise", tile.index)))
    rows = truth_rows(systems, records, tiles)
    labelled = set(sorted(t.name for t in tiles)[: n_tiles // 2])
    write_tables(out, rows, tiles, seed, labelled)
    halves = {}
    for name, want in (("labelled", True), ("scored", False)):
        sel = [r for r in rows if (r["tile"] in labelled) == want]
        halves[name] = dict(objects=len(sel), lenses=sum(r["is_lens"] for r in sel),
                            mergers=sum(r["is_merger"] for r in sel))
    area = n_tiles * ((size - overlap) * PIXSCALE / 60) ** 2
    return dict(tiles=n_tiles, objects=len(rows), density_per_arcmin2=len(rows) / area,
                halves=halves, seconds=time.perf_counter() - start)
