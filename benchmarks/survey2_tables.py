"""survey2 tables: the catalog a user brings, the labels of half the tiles, and the truth.

- ``catalog.fits``: ``object_id`` (int64 above 2**53, HSC-like), ``i_ra``, ``i_dec``
  (degrees), ``{band}_cmodel_mag`` and ``_magerr`` (NaN where the measured flux is not
  positive), ``i_extendedness_value`` (0 stars, 1 galaxies); no truth.
- ``labels.fits``: ``object_id``, ``is_lens``, ``is_merger`` (int16 0/1) of the objects of
  the first half of the tiles by name.
- ``truth.fits``: every object: ids, tile, ``labelled``, kind, true magnitudes and the
  parameters of lenses (theta_E, arc S/N, magnification, ...) and mergers (stage, mass
  ratio, separation, tidal fraction and S/N); the pipeline never reads it.

Nothing here imports skysift.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from survey2_render import BANDS, ZEROPOINT, System, mag_to_flux, psf_kernels
from survey2_tiles import TRACT, Tile, rng_for

_TRUTH_FLOATS = ("theta_e_arcsec", "source_i_mag", "deflector_i_mag", "merger_mass_ratio",
                 "merger_separation_arcsec", "merger_tidal_fraction")


def object_id(tile: Tile, number: int) -> int:
    """HSC-like id above 2**53: ``tract << 42 | (x << 5 | y) << 32 | number``."""
    return (TRACT << 42) | ((tile.cell[0] << 5 | tile.cell[1]) << 32) | number


def truth_rows(systems: list[System], records: dict, tiles: list[Tile]) -> list[dict]:
    """One row per catalogue entry.

    Parameters
    ----------
    systems : every system of the survey (placed).
    records : {system index: what its home tile measured} (:func:`survey2_make.render_tile`).
    tiles : the survey's tiles.

    Returns
    -------
    Rows with the id, tile, kind, labels, position (degrees), pre-PSF ``flux`` (5,) of the
    entry's own light, and the truth of its system (NaN or '' where it does not apply).
    """
    rows, numbers = [], {}
    for k, system in enumerate(systems):
        if not system.entries:
            continue
        tile, rec, t = tiles[system.home], records[k], system.truth
        for e, entry in enumerate(system.entries):
            numbers[tile.index] = numbers.get(tile.index, 0) + 1
            row = dict(object_id=object_id(tile, numbers[tile.index]), tile=tile.name,
                       kind=entry["kind"], system_kind=system.kind, system=k,
                       is_lens=entry["is_lens"], is_merger=entry["is_merger"],
                       ra=system.ra + entry["u"] / 3600 / np.cos(np.radians(system.dec)),
                       dec=system.dec + entry["v"] / 3600, flux=rec["flux"][e],
                       arc_snr=rec["arc_snr"] if system.kind == "lens" else np.nan,
                       merger_tidal_snr=rec["tidal_snr"] if system.kind == "merger" else np.nan,
                       merger_stage=t.get("merger_stage", "-"),
                       merger_major=t.get("merger_major", -1))
            row.update({name: float(t.get(name, np.nan)) for name in _TRUTH_FLOATS})
            row["magnification"] = (rec["arc_flux_i"] / mag_to_flux(t["source_i_mag"])
                                    if system.kind == "lens" else np.nan)
            rows.append(row)
    return rows


def _measure(flux: np.ndarray, sigma: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noisy fluxes (n, 5) with noise ``sigma`` (n, 5): (mag, magerr), NaN where <= 0."""
    meas = flux + rng.normal(0, 1, flux.shape) * sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = np.where(meas > 0, ZEROPOINT - 2.5 * np.log10(meas), np.nan)
        err = np.where(meas > 0, 1.0857 * sigma / meas, np.nan)
    return mag, err


def measured_catalog(rows: list[dict], tiles: list[Tile], seed: int) -> dict:
    """Catalog columns of ``rows`` (:func:`truth_rows`).

    Magnitudes carry twice the point-source sky noise of the tile (sqrt(4 NEA) sigma) plus
    the objects' Poisson noise; positions scatter by 0.7 PSF FWHM / (S/N in i), at least
    3 mas. Returns {column: (n,) array}.
    """
    rng = rng_for(seed, "catalog")
    by_name = {t.name: t for t in tiles}
    nea = {t.name: np.array([1 / np.sum(k * k) for k in psf_kernels(t.fwhm)]) for t in tiles}
    flux = np.array([r["flux"] for r in rows])
    sky = np.array([by_name[r["tile"]].sigma * np.sqrt(4 * nea[r["tile"]]) for r in rows])
    gain = np.array([by_name[r["tile"]].gain for r in rows])
    mag, err = _measure(flux, np.sqrt(sky**2 + np.abs(flux) / gain), rng)
    snr_i = np.clip(flux[:, 2] / sky[:, 2], 1, None)
    pos_sig = np.clip(0.7 * 0.6 / snr_i, 0.003, 0.1) / 3600
    dec = np.array([r["dec"] for r in rows]) + rng.normal(0, 1, len(rows)) * pos_sig
    ra = np.array([r["ra"] for r in rows]) + (rng.normal(0, 1, len(rows)) * pos_sig
                                              / np.cos(np.radians(dec)))
    cols = {"object_id": np.array([r["object_id"] for r in rows], np.int64), "i_ra": ra,
            "i_dec": dec}
    for b, band in enumerate(BANDS):
        cols[f"{band}_cmodel_mag"], cols[f"{band}_cmodel_magerr"] = mag[:, b], err[:, b]
    cols["i_extendedness_value"] = np.array([0.0 if r["kind"] == "star" else 1.0 for r in rows])
    return cols


def _fits_format(v: np.ndarray) -> str:
    """FITS column format of a 1-D array: K int64, I int16, D float64, nA strings."""
    if v.dtype.kind in "US":
        return f"{max(1, int(v.dtype.itemsize // (4 if v.dtype.kind == 'U' else 1)))}A"
    return {"i8": "K", "i2": "I", "f8": "D"}[v.dtype.str[1:]]


def write_table(path: Path, cols: dict, meta: dict) -> None:
    """Write ``cols`` ({name: (n,) array}) as a FITS binary table, ``meta`` in its header."""
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, array=v, format=_fits_format(v)) for k, v in cols.items()])
    for key, value in meta.items():
        hdu.header[key] = value
    hdu.writeto(path, overwrite=True)


def truth_columns(rows: list[dict], ids: np.ndarray, labelled: np.ndarray) -> dict:
    """truth.fits columns ({name: (n,) array}) of ``rows`` with ``ids`` (n,) and the
    ``labelled`` (n,) bool flag of their tile."""
    cols = {"object_id": ids, "tile": np.array([r["tile"] for r in rows]),
            "labelled": labelled.astype(np.int16),
            "is_lens": np.array([r["is_lens"] for r in rows], np.int16),
            "is_merger": np.array([r["is_merger"] for r in rows], np.int16),
            "kind": np.array([r["kind"] for r in rows]),
            "system_kind": np.array([r["system_kind"] for r in rows]),
            "system": np.array([r["system"] for r in rows], np.int64),
            "ra": np.array([r["ra"] for r in rows]), "dec": np.array([r["dec"] for r in rows])}
    flux = np.array([r["flux"] for r in rows])
    with np.errstate(invalid="ignore", divide="ignore"):
        for b, band in enumerate(BANDS):
            cols[f"{band}_mag_true"] = ZEROPOINT - 2.5 * np.log10(flux[:, b])
    for name in ("theta_e_arcsec", "arc_snr", "magnification", "source_i_mag",
                 "deflector_i_mag", "merger_mass_ratio", "merger_separation_arcsec",
                 "merger_tidal_fraction", "merger_tidal_snr"):
        cols[name] = np.array([r[name] for r in rows], np.float64)
    cols["merger_stage"] = np.array([r["merger_stage"] for r in rows])
    cols["merger_major"] = np.array([r["merger_major"] for r in rows], np.int16)
    return cols


def write_tables(out: Path, rows: list[dict], tiles: list[Tile], seed: int,
                 labelled: set[str]) -> None:
    """Write catalog.fits, labels.fits (the objects of the ``labelled`` tile names) and
    truth.fits to ``out``, every table sorted by ``object_id``."""
    cat = measured_catalog(rows, tiles, seed)
    order = np.argsort(cat["object_id"], kind="stable")
    write_table(out / "catalog.fits", {k: v[order] for k, v in cat.items()}, {"SEED": seed})
    is_lab = np.array([r["tile"] in labelled for r in rows])
    truth = truth_columns(rows, cat["object_id"], is_lab)
    sel = order[is_lab[order]]
    write_table(out / "labels.fits", {k: truth[k][sel] for k in ("object_id", "is_lens",
                                                                 "is_merger")}, {"SEED": seed})
    write_table(out / "truth.fits", {k: v[order] for k, v in truth.items()}, {"SEED": seed})
