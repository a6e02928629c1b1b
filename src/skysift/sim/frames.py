"""The survey as simulated training sets see it: scanned once, frames built per host.

:func:`scan` reads the per-object columns of every shard's raw cutouts (index, id, flags,
tile, position, aperture photometry through each tile's zero point) and the blank-sky
cutouts into a :class:`Survey`; :class:`Frames` builds the :class:`skysift.sim.paint.Frame` a
simulator paints into for a host (pixel scale, PSF kernels per band, zero point, sky noise,
gain from ``training_set.gain`` or a header key), caching per tile. The PSF is the header's
FWHM (and Moffat beta, ``psf.beta_key``) or, with ``psf.model: stars``, a Moffat fitted to
the tile's own stars (:mod:`skysift.sim.psf`; :class:`StarPsf`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import h5py
import numpy as np

from skysift.errors import DataError, SurveyError
from skysift.io import open_h5, read_attr_json
from skysift.sim.hosts import colour_slope, magnitudes, stamp_photometry
from skysift.sim.paint import Frame, band_wavelengths, psf_kernels, reference_band
from skysift.sim.psf import PsfEstimate, fit_stamps, locus, peak_snr, star_rows, summarise
from skysift.sim.trainfile import STAMP_DATASETS
from skysift.survey.tiles import fits_file

log = logging.getLogger(__name__)

#: Datasets of the raw cutouts a scan reads.
CUTOUT_DATASETS = ("images", "flags", "index", "id", "pos_xy", "tile")


@dataclass
class Survey:
    """Per-object columns of every shard, from the raw cutouts, and per-shard attrs."""

    stamps: list[str]
    cutouts: list[str]
    attrs: list[dict]
    shard: np.ndarray
    row: np.ndarray
    cols: dict = field(default_factory=dict)  # index, id, flags, tile, pos_xy, flux, mag, ...
    blank: dict = field(default_factory=dict)  # shard, row, tile, pos_xy, zeropoint, sky_sigma


def _zeropoints(info: Mapping, bands: Sequence[str], fallback: float | None, path: str) -> list:
    zps = [float(z) for z in info["zeropoint"]]
    for b, z in enumerate(zps):
        if not np.isfinite(z):
            if fallback is None:
                raise SurveyError(f"{path}: band {bands[b]} of a tile has no zero point "
                                  "(survey.zeropoint_key); simulations need the flux units: "
                                  "fix the header key or set training_set.zeropoint")
            zps[b] = float(fallback)
    return zps


def scan(stamp_paths: Sequence[str], cutout_paths: Sequence[str], config: Mapping) -> Survey:
    """Read ids, flags, positions of every object and measure its stamp photometry."""
    if len(stamp_paths) != len(cutout_paths):
        raise DataError(f"{len(stamp_paths)} stamps files but {len(cutout_paths)} cutouts files;"
                        " pass one of each per shard, in the same order")
    tcfg, bands = config["training_set"], list(config["survey"]["bands"])
    ref, lam = reference_band(bands, tcfg["reference_band"]), band_wavelengths(bands)
    chunk = int(config["preprocess"]["chunk_objects"])
    parts, attrs, blanks = [], [], []
    for spath, cpath in zip(stamp_paths, cutout_paths, strict=True):
        with open_h5(cpath, required=CUTOUT_DATASETS) as fc, \
                open_h5(spath, required=STAMP_DATASETS) as fs:
            a = {key: read_attr_json(fs, key) for key in fs.attrs}
            a["tile_info"] = read_attr_json(fc, "tile_info")
            attrs.append(a)
            col = {name: fc[name][()] for name in CUTOUT_DATASETS[1:]}
            if not np.array_equal(col["index"], fs["index"][()]):
                raise DataError(f"{spath} and {cpath} hold different objects; pass the stamps "
                                "and cutouts of the same shards in the same order")
            col["tile"] = np.char.decode(np.asarray(col["tile"], dtype=bytes), "utf-8")
            zp_tile = {t: _zeropoints(a["tile_info"][t], bands, tcfg["zeropoint"], cpath)
                       for t in np.unique(col["tile"])}
            zp = np.array([zp_tile[t] for t in col["tile"]]).reshape(-1, len(bands))
            m = len(col["index"])
            col.update(flux=np.zeros((m, len(bands))), r50_arcsec=np.zeros(m),
                       peak_offset_arcsec=np.zeros(m), sky_sigma=np.ones((m, len(bands))))
            for start in range(0, m, chunk):
                tiles = col["tile"][start:start + chunk]
                raw = fc["images"][start:start + chunk]
                scale = np.array([a["tile_info"][t]["pixscale_arcsec"] for t in tiles])
                for pix in np.unique(scale):  # one pixel scale per tile: few groups
                    rows = np.flatnonzero(scale == pix)
                    phot = stamp_photometry(raw[rows], float(pix),
                                            tcfg["hosts"]["aperture_arcsec"], ref)
                    for name in ("flux", "r50_arcsec", "sky_sigma", "peak_offset_arcsec"):
                        col[name][start + rows] = phot[name]
            col["zeropoint"] = zp
            fwhm = tcfg["psf"]["fwhm_arcsec"]
            col["psf_fwhm_arcsec"] = np.array([
                fwhm if fwhm is not None else a["tile_info"][t]["psf_fwhm_arcsec"][ref]
                for t in col["tile"]], dtype=float)
            col["mag"] = magnitudes(col["flux"], zp)
            col["slope"] = colour_slope(col["mag"], lam, ref)
            parts.append(col)
            blanks.append(_scan_blank(fc, a, bands, tcfg, ref, cpath))
    n = [len(c["index"]) for c in parts]
    cols = {name: np.concatenate([c[name] for c in parts]) for name in parts[0]}
    nb = [len(b["tile"]) for b in blanks]
    blank = {name: np.concatenate([b[name] for b in blanks]) for name in blanks[0]}
    blank.update(shard=np.repeat(np.arange(len(nb)), nb),
                 row=np.concatenate([np.arange(m) for m in nb]))
    return Survey([str(p) for p in stamp_paths], [str(p) for p in cutout_paths], attrs,
                  np.repeat(np.arange(len(n)), n), np.concatenate([np.arange(m) for m in n]),
                  cols, blank)


def _scan_blank(fc: h5py.File, attrs: Mapping, bands: Sequence[str], tcfg: Mapping, ref: int,
                path: str) -> dict:
    """Tile, position, zero points and border noise of a cutouts file's blank-sky stamps."""
    n_band = len(bands)
    if "blank/images" not in fc or not len(fc["blank/images"]):
        return {"tile": np.zeros(0, "U1"), "pos_xy": np.zeros((0, 2)),
                "zeropoint": np.zeros((0, n_band)), "sky_sigma": np.ones((0, n_band))}
    tiles = np.char.decode(np.asarray(fc["blank/tile"][()], dtype=bytes), "utf-8")
    images = fc["blank/images"][()]
    info = attrs["tile_info"]
    sky = stamp_photometry(images, float(info[str(tiles[0])]["pixscale_arcsec"]),
                           tcfg["hosts"]["aperture_arcsec"], ref)["sky_sigma"]
    zp = np.array([_zeropoints(info[t], bands, tcfg["zeropoint"], path) for t in tiles])
    return {"tile": tiles, "pos_xy": fc["blank/pos_xy"][()], "zeropoint": zp.reshape(-1, n_band),
            "sky_sigma": sky}


def _header_value(path: str, key: str) -> float | None:
    with fits_file(path) as hdul:
        for hdu in hdul:
            if key in hdu.header:
                try:
                    return float(hdu.header[key])
                except (TypeError, ValueError):
                    return None
    return None


class Frames:
    """Builds the :class:`skysift.sim.paint.Frame` of a host; caches PSF kernels and gains per
    tile."""

    def __init__(self, config: Mapping, survey: Survey):
        self.tcfg, self.survey = config["training_set"], survey
        self.bands = list(config["survey"]["bands"])
        self.ref = reference_band(self.bands, self.tcfg["reference_band"])
        self.lam = band_wavelengths(self.bands)
        self.size = int(survey.attrs[0]["stamp_size_pix"])
        self._cache: dict = {}
        self.n_no_gain = 0
        self.stars = StarPsf(survey, self.ref, self.tcfg["psf"]["min_stars"])

    def _tile(self, shard: int, tile: str) -> tuple:
        key = (shard, tile)
        if key not in self._cache:
            info = self.survey.attrs[shard]["tile_info"][tile]
            pix = float(info["pixscale_arcsec"])
            pcfg, fwhm, beta = self.tcfg["psf"], info["psf_fwhm_arcsec"], None
            if pcfg["model"] == "stars":
                est = self.stars.estimate(shard, tile)
                fwhm, beta = est.fwhm_arcsec, est.beta
            elif pcfg["model"] == "moffat" and pcfg["beta_key"]:
                beta = [_header_value(p, pcfg["beta_key"]) for p in info["paths"]]
            kernels = psf_kernels(fwhm, pix, self.bands, pcfg, beta)
            gain = self.tcfg["gain"]
            if isinstance(gain, str):
                values = [_header_value(p, gain) for p in info["paths"]]
                if any(v is None or not v > 0 for v in values):
                    (log.debug if self.n_no_gain else log.warning)(
                        "tile %s: no positive header key %s in every band: simulated light "
                        "gets no Poisson noise there (set training_set.gain; further tiles "
                        "are counted in the summary)", tile, gain)
                    self.n_no_gain += 1
                    gain = None
                else:
                    gain = np.array(values)
            elif gain is not None:
                gain = np.full(len(self.bands), float(gain))
            fwhm = np.asarray(fwhm, dtype=float)
            if self.tcfg["psf"]["fwhm_arcsec"] is not None:
                fwhm = np.full(len(self.bands), float(self.tcfg["psf"]["fwhm_arcsec"]))
            self._cache[key] = (pix, kernels, gain, fwhm)
        return self._cache[key]

    def psf_summary(self) -> dict:
        """With ``psf.model: stars``: tiles measured on their own stars, tiles that took the
        pooled stars, and each tile's FWHM (arcsec, per band) and beta; else nothing."""
        if self.tcfg["psf"]["model"] != "stars":
            return {}
        tiles = {f"{shard}/{tile}": {"fwhm_arcsec": [round(float(v), 4) for v in e.fwhm_arcsec],
                                     "beta": [round(float(v), 3) for v in e.beta],
                                     "n_stars": e.n_stars}
                 for (shard, tile), e in self.stars._tiles.items()}
        return {"psf_stars": {"tiles_own_stars": self.stars.measured,
                              "tiles_pooled": self.stars.pooled, "tiles": tiles}}

    def frame(self, obj: int, blank: bool = False) -> tuple[Frame, float]:
        """Frame of object ``obj`` (a position in the survey columns; in ``survey.blank``
        when ``blank``) and its PSF FWHM (reference band)."""
        c = self.survey.blank if blank else self.survey.cols
        shard = c["shard"][obj] if blank else self.survey.shard[obj]
        pix, kernels, gain, fwhm = self._tile(int(shard), str(c["tile"][obj]))
        pos = c["pos_xy"][obj]
        centre = tuple(float(self.size // 2 + p - np.floor(p + 0.5)) for p in pos)
        return Frame(self.size, pix, centre, c["zeropoint"][obj], self.lam,
                     np.maximum(c["sky_sigma"][obj], 1e-30), gain, kernels,
                     self.ref), float(fwhm[self.ref])


class StarPsf:
    """Each tile's PSF measured from its own stars (``training_set.psf.model: stars``).

    Candidates (:func:`skysift.sim.psf.star_rows`: the reference band's half-light radius and
    peak S/N) of every training tile are fitted with Moffats in every band; the stars are the
    locus of the smallest fitted FWHM (:func:`skysift.sim.psf.locus`); a tile's PSF is the
    median over its own stars, or over every training tile's stars pooled where it has fewer
    than ``min_stars``. ``measured`` and ``pooled`` count the
    tiles of each kind (logged in the training set's summary).
    """

    def __init__(self, survey: Survey, ref: int, min_stars: int):
        self.survey, self.ref, self.min_stars = survey, ref, int(min_stars)
        self._by_tile: dict | None = None
        self._pooled_fit: tuple = (np.zeros((0, 1)), np.zeros((0, 1)))
        self._pooled: PsfEstimate | None = None
        self._tiles: dict = {}
        self.measured = self.pooled = 0

    def _fits(self) -> dict:
        """Moffat fits (FWHM pixels, beta; (n, band)) of each (shard, tile)'s stars, made once:
        candidates of every training tile together (:func:`skysift.sim.psf.star_rows`), then
        the stellar locus of their fitted FWHM (:func:`skysift.sim.psf.locus`)."""
        if self._by_tile is None:
            c, snr = self.survey.cols, np.zeros(len(self.survey.shard))
            for shard, path in enumerate(self.survey.cutouts):
                objs = np.flatnonzero(self.survey.shard == shard)
                with open_h5(path, required=("images",)) as fc:
                    for start in range(0, len(objs), 512):
                        part = self.survey.row[objs[start:start + 512]]
                        snr[objs[start:start + 512]] = peak_snr(
                            fc["images"][part[0]:part[-1] + 1, self.ref])
            cands = star_rows(c["r50_arcsec"], snr, self.min_stars)
            n_band = len(self.survey.attrs[0]["bands"])
            fwhm = np.full((cands.size, n_band), np.nan)
            beta = fwhm.copy()
            for shard, path in enumerate(self.survey.cutouts):
                mine = np.flatnonzero(self.survey.shard[cands] == shard)
                if mine.size:
                    with open_h5(path, required=("images",)) as fc:
                        raw = fc["images"][self.survey.row[cands[mine]]]  # rows increase
                    fwhm[mine], beta[mine] = fit_stamps(raw)
            stars = locus(fwhm[:, self.ref], self.min_stars)
            self._pooled_fit = (fwhm[stars], beta[stars])
            groups: dict = {}
            for k in np.flatnonzero(stars):
                key = (int(self.survey.shard[cands[k]]), str(c["tile"][cands[k]]))
                groups.setdefault(key, []).append(k)
            self._by_tile = {key: (fwhm[v], beta[v]) for key, v in groups.items()}
        return self._by_tile

    def estimate(self, shard: int, tile: str) -> PsfEstimate:
        """The tile's PSF (its own stars, else the pooled stars)."""
        key = (int(shard), str(tile))
        if key in self._tiles:
            return self._tiles[key]
        own = self._fits().get(key)
        pix = float(self.survey.attrs[key[0]]["tile_info"][key[1]]["pixscale_arcsec"])
        est = summarise(*own, pix) if own is not None else None
        if est is None or est.n_stars < self.min_stars:
            if self._pooled is None:
                self._pooled = summarise(*self._pooled_fit, pix)
            if self._pooled is None:
                raise SurveyError("training_set.psf.model is stars but the training tiles hold "
                                  "no star bright enough to fit (peak S/N >= 30); use the "
                                  "header's PSF (model gaussian or moffat) or a PSF image")
            est, self.pooled = self._pooled, self.pooled + 1
        else:
            self.measured += 1
        self._tiles[key] = est
        return est
