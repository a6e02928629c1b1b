"""The survey catalog: ids kept verbatim, positions, configured column names, checks.

``survey.catalog`` is a FITS, CSV, ECSV or Parquet table (Rubin's catalogs; read by
:func:`skysift.io.read_table`); ``survey.columns`` names its id, RA and Dec columns (e.g.
``COADD_OBJECT_ID``, ``ALPHAWIN_J2000``, ``objectId``, ``coord_ra``). Ids stay exactly what
the file holds: int64 for integers (also above 2**53), strings otherwise (a CSV id with
leading zeros stays a string; unsigned ids above the int64 range become their decimal
strings); float ids, blank (null) ids and duplicate ids are errors.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
from astropy.io import ascii as fits_ascii
from astropy.table import Table

from skysift.errors import SurveyError
from skysift.ids import id_keys
from skysift.io import read_table, require_columns

log = logging.getLogger(__name__)

_INT_ID = re.compile(r"-?(0|[1-9][0-9]{0,18})")


@dataclass
class Catalog:
    """The catalog columns skysift uses; row ``i`` is catalog row (``index``) ``i``."""

    path: str
    ids: np.ndarray      # (n,) int64, or str (verbatim)
    ra_deg: np.ndarray   # (n,) float64, NaN where missing
    dec_deg: np.ndarray  # (n,) float64, NaN where missing


def catalog_ids(values) -> np.ndarray:
    """Catalog ids: int64 for integer ids, str otherwise (float ids are refused).

    Unsigned ids above the int64 range become their decimal strings (verbatim).
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        log.warning("object ids exceed the int64 range; kept as decimal strings")
    return id_keys(arr, "the ids")  # raises for float ids


def _csv_ids(path: str, column: str) -> np.ndarray:
    """The id column of a CSV read as text: int64 when every value is a canonical int64
    literal (no leading zeros, no '+'), else the strings verbatim."""
    text = Table.read(path, format="ascii.csv", include_names=[column],
                      converters={column: [fits_ascii.convert_numpy(str)]})[column]
    values = np.asarray(np.ma.filled(text, ""), dtype=str)
    if all(_INT_ID.fullmatch(v) for v in values.tolist()):
        as_int = [int(v) for v in values.tolist()]
        if all(-2**63 <= v < 2**63 for v in as_int):
            return np.array(as_int, dtype=np.int64)
    return values


def _coords(table: Table, name: str, path: str) -> np.ndarray:
    try:
        values = np.ma.filled(np.ma.asarray(table[name], dtype=np.float64), np.nan)
    except (TypeError, ValueError):
        raise SurveyError(f"{path}: column '{name}' is not numeric; give RA/Dec in decimal "
                          "degrees (survey.columns)") from None
    return np.asarray(values, dtype=np.float64)


def duplicate_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(duplicated id values, (m,) rows holding them), both in catalog order."""
    order = np.argsort(ids, kind="stable")
    srt = ids[order]
    dup = np.zeros(len(ids), bool)
    same = srt[1:] == srt[:-1]
    dup[1:] |= same
    dup[:-1] |= same
    rows = np.sort(order[dup])
    return ids[rows], rows


def read_catalog(config: dict) -> Catalog:
    """The survey catalog's ids and positions, checked.

    Raises
    ------
    SurveyError
        Missing file or configured column (naming the ``survey.columns`` key), no rows,
        float or blank ids, duplicate ids (listing some with their rows).
    """
    survey = config["survey"]
    path, cols = survey["catalog"], survey["columns"]
    table = read_table(path, "catalog")
    require_columns(table, cols, path, "survey.columns")
    if len(table) == 0:
        raise SurveyError(f"{path}: the catalog has no rows; point survey.catalog at the "
                          "survey's source catalog")
    where = f"{path}: column '{cols['id']}' (survey.columns.id)"
    if np.ma.getmaskarray(table[cols["id"]]).any():
        raise SurveyError(f"{where} has blank ids; every object needs an id")
    try:
        if str(path).lower().endswith(".csv"):
            ids = _csv_ids(path, cols["id"])
        else:
            ids = catalog_ids(table[cols["id"]])
    except SurveyError as exc:
        raise SurveyError(f"{where}: {exc}") from None
    values, rows = duplicate_ids(ids)
    if len(rows):
        shown = ", ".join(f"{v!s} (row {r})" for v, r in zip(values[:6], rows[:6], strict=True))
        raise SurveyError(f"{where}: {len(rows)} rows share an id, e.g. {shown}; ids must be "
                          "unique: de-duplicate the catalog or point survey.columns.id at a "
                          "unique column")
    return Catalog(path=str(path), ids=ids, ra_deg=_coords(table, cols["ra"], path),
                   dec_deg=_coords(table, cols["dec"], path))
