"""Known lenses: the user's table or the shipped lenscat catalogue, matched by sky position.

``survey.known_lenses`` is either a table of known lenses (RA/Dec in degrees and a name,
columns ``survey.known_lenses_columns``) or the word ``lenscat``: the lenscat catalogue of
known lenses and candidates (Vujeva et al. 2025), version :data:`LENSCAT_VERSION`, shipped
inside skysift as ``skysift/data/lenscat/catalog.csv.gz`` (MIT, its licence beside it) and read
here as plain CSV: the ``lenscat`` package, which imports ligo.skymap, healpy and lalsuite, is
neither needed nor imported, and nothing is downloaded. Its rows are filtered by
``survey.lenscat.grading`` and ``survey.lenscat.kind``; a lens is named by the first of its
aliases (the catalogue lists them separated by `` | ``). The CSV's sha256 is checked on every
read, and the version and sha256 go into the provenance of every output that used it
(:attr:`KnownLenses.provenance`).

Matching (:func:`match_positions`): each known lens goes to the nearest catalog object within
``survey.known_lenses_match_arcsec`` (RA wrap handled). The gather step streams shard by shard,
so :class:`NearestObjects` keeps, per known lens, the nearest object seen so far.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from skysift.errors import ConfigError, DataError, SurveyError
from skysift.io import read_table, require_columns

#: The value of ``survey.known_lenses`` that selects the shipped catalogue.
LENSCAT = "lenscat"
LENSCAT_VERSION = "1.1.3"
#: sha256 of the uncompressed CSV, as the lenscat 1.1.3 wheel's RECORD gives it.
LENSCAT_SHA256 = "7de5111afb6486c119198cb2df868a2e6a15f79869e6cdc8109ec7d59b06a7cc"
LENSCAT_COLUMNS = ("name", "RA [deg]", "DEC [deg]", "zlens", "type", "grading", "ref")


@dataclass
class KnownLenses:
    """Known lenses in their file's order: (m,) ``names``, ``ra_deg``, ``dec_deg`` (float64,
    NaN where unusable), ``extra`` columns to carry into reports (lenscat: ``type``,
    ``grading``, ``zlens``, ``ref``), and ``provenance`` (str values) of where they came from."""

    names: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    provenance: dict[str, str | int]
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def is_lenscat(config: Mapping) -> bool:
    """Whether ``survey.known_lenses`` names the shipped lenscat catalogue."""
    return config["survey"]["known_lenses"] == LENSCAT


def lenscat_file():
    """The shipped lenscat CSV (gzipped), a :mod:`importlib.resources` traversable."""
    return resources.files("skysift").joinpath("data", "lenscat", "catalog.csv.gz")


def read_lenscat(grading: Sequence[str], kinds: Sequence[str]) -> KnownLenses:
    """The shipped lenscat rows whose ``grading`` and ``type`` are among those given.

    Raises DataError when the shipped file is missing or its sha256 is not the pinned one.
    """
    path = lenscat_file()
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: the shipped lenscat catalogue is unreadable ({exc}); "
                        "reinstall skysift") from None
    sha = hashlib.sha256(raw).hexdigest()
    if sha != LENSCAT_SHA256:
        raise DataError(f"{path}: sha256 {sha} is not that of lenscat {LENSCAT_VERSION} "
                        f"({LENSCAT_SHA256}); reinstall skysift")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    if tuple(rows[0]) != LENSCAT_COLUMNS:
        raise DataError(f"{path}: columns {rows[0]} are not lenscat's {LENSCAT_COLUMNS}; "
                        "reinstall skysift")
    cols = {name: np.array(values, dtype=str) for name, values
            in zip(LENSCAT_COLUMNS, zip(*rows[1:], strict=True), strict=True)}
    keep = np.isin(cols["grading"], list(grading)) & np.isin(cols["type"], list(kinds))
    names = np.array([n.split(" | ")[0].strip() for n in cols["name"][keep].tolist()],
                     dtype=str)
    prov = {"known_lenses": LENSCAT, "lenscat_version": LENSCAT_VERSION,
            "lenscat_sha256": sha, "lenscat_grading": ",".join(grading),
            "lenscat_kind": ",".join(kinds), "n_known_lenses": int(keep.sum())}
    return KnownLenses(names, cols["RA [deg]"][keep].astype(np.float64),
                       cols["DEC [deg]"][keep].astype(np.float64), prov,
                       {k: cols[k][keep] for k in ("type", "grading", "zlens", "ref")})


def read_known_table(config: Mapping) -> KnownLenses:
    """The user's ``survey.known_lenses`` table with its configured columns."""
    survey = config["survey"]
    path, cols = survey["known_lenses"], survey["known_lenses_columns"]
    table = read_table(path, "known-lens table")
    require_columns(table, {k: v for k, v in cols.items() if v}, path,
                    "survey.known_lenses_columns")
    coords = []
    for key in ("ra", "dec"):
        col = table[cols[key]]
        if col.dtype.kind not in "iuf":
            raise SurveyError(f"{path}: column '{cols[key]}' (survey.known_lenses_columns."
                              f"{key}) is not numeric; give degrees")
        coords.append(np.ma.filled(np.ma.asarray(col, np.float64), np.nan))
    names = (np.asarray(table[cols["name"]]).astype(str) if cols["name"]
             else np.array([f"row {i}" for i in range(len(table))], dtype=str))
    with open(path, "rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    prov = {"known_lenses": str(path), "known_lenses_sha256": sha,
            "n_known_lenses": len(table)}
    return KnownLenses(names, np.asarray(coords[0]), np.asarray(coords[1]), prov)


def read_known_lenses(config: Mapping) -> KnownLenses:
    """The known lenses of ``survey.known_lenses``: the lenscat rows kept by
    ``survey.lenscat``, or the user's table."""
    survey = config["survey"]
    if not survey["known_lenses"]:
        raise ConfigError("survey.known_lenses is null; set it to a table of known lenses "
                          "(ra, dec in degrees, name), or to lenscat for the shipped catalogue")
    if is_lenscat(config):
        return read_lenscat(survey["lenscat"]["grading"], survey["lenscat"]["kind"])
    return read_known_table(config)


def match_positions(ra_deg: np.ndarray, dec_deg: np.ndarray, cat_ra_deg: np.ndarray,
                    cat_dec_deg: np.ndarray, max_sep_arcsec: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest catalog row of each position within ``max_sep_arcsec``.

    Parameters
    ----------
    ra_deg, dec_deg : (m,) float, ICRS degrees of the known lenses.
    cat_ra_deg, cat_dec_deg : (n,) float, ICRS degrees of the catalog; non-finite rows are
        never matched.
    max_sep_arcsec : match radius, arcsec.

    Returns
    -------
    row : (m,) int64, catalog row, -1 when none lies within the radius or the position is
        not usable.
    sep_arcsec : (m,) float64, separation to that row, NaN when unmatched.
    """
    ra, dec = np.asarray(ra_deg, np.float64), np.asarray(dec_deg, np.float64)
    row, sep = np.full(ra.size, -1, np.int64), np.full(ra.size, np.nan)
    cra, cdec = np.asarray(cat_ra_deg, np.float64), np.asarray(cat_dec_deg, np.float64)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
        good = np.flatnonzero(np.isfinite(cra) & np.isfinite(cdec) & (np.abs(cdec) <= 90))
    if not usable.any() or not good.size:
        return row, sep
    known = SkyCoord(ra[usable] * u.deg, dec[usable] * u.deg)
    cat = SkyCoord(cra[good] * u.deg, cdec[good] * u.deg)
    if good.size == 1:  # match_to_catalog_sky needs a catalog of at least one row as array
        near, dist = np.zeros(known.size, np.int64), known.separation(cat[0]).arcsec
    else:
        near, d2d, _ = known.match_to_catalog_sky(cat)
        dist = d2d.arcsec
    hit = dist <= max_sep_arcsec
    rows = np.flatnonzero(usable)
    row[rows[hit]], sep[rows[hit]] = good[near[hit]], dist[hit]
    return row, sep


class NearestObjects:
    """The nearest catalog object of each known lens over catalog parts seen one at a time.

    ``update`` with each part's ``index`` and positions; afterwards ``index`` (m,) holds the
    catalog ``index`` of each lens's nearest object within the radius (-1: none; equal
    separations go to the lower ``index``), and :meth:`columns` gives the catalog columns.
    """

    def __init__(self, known: KnownLenses, max_sep_arcsec: float) -> None:
        self.known, self.max_sep_arcsec = known, max_sep_arcsec
        self.index = np.full(known.names.size, -1, np.int64)
        self.sep_arcsec = np.full(known.names.size, np.inf)

    def update(self, index: np.ndarray, ra_deg: np.ndarray, dec_deg: np.ndarray) -> None:
        """Consider the objects (n,) ``index`` at (n,) ``ra_deg``, ``dec_deg``."""
        if not len(index):
            return
        row, sep = match_positions(self.known.ra_deg, self.known.dec_deg, ra_deg, dec_deg,
                                   self.max_sep_arcsec)
        cand = np.where(row >= 0, np.asarray(index, np.int64)[np.maximum(row, 0)], -1)
        better = (row >= 0) & ((sep < self.sep_arcsec) | (
            (sep == self.sep_arcsec) & (cand < self.index)))
        self.index[better], self.sep_arcsec[better] = cand[better], sep[better]

    def columns(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``known_lens`` (n,) bool and ``known_name`` (n,) str (the names of the lenses whose
        nearest object it is, joined by "; ", in the known-lens table's order; "" if none)
        of the objects ``index`` (n,)."""
        index = np.asarray(index, np.int64)
        objects, joined = self._names()
        pos = np.minimum(np.searchsorted(objects, index), max(objects.size - 1, 0))
        flag = objects[pos] == index if objects.size else np.zeros(index.size, bool)
        names = np.zeros(index.size, dtype=joined.dtype if joined.size else "<U1")
        names[flag] = joined[pos[flag]]
        return flag, names

    def _names(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted matched object indices and the joined names of their lenses."""
        by_index: dict[int, list[str]] = {}
        for i in np.flatnonzero(self.index >= 0):
            by_index.setdefault(int(self.index[i]), []).append(str(self.known.names[i]))
        objects = np.array(sorted(by_index), np.int64)
        return objects, np.array(["; ".join(by_index[i]) for i in objects.tolist()], dtype=str)

    def name_width(self) -> int:
        """UTF-8 bytes of the longest ``known_name`` (at least 1): the FITS column width."""
        return max((len(n.encode()) for n in self._names()[1].tolist()), default=1) or 1
