"""Object ids as exact join keys: the one rule every join of skysift follows.

Catalog, labels-table and stamp ids are kept verbatim whatever their type (DESIGN.md): an
integer id becomes an int64 key, a text id a str key (bytes decoded as UTF-8, whether in a
fixed-width ``S`` array, as FITS and HDF5 give them, or one by one in an object array), and
an integer id meets a text id through its exact decimal string. Never through a float: a
float64 holds integers exactly only up to 2**53, so floating-point ids are refused.
"""

from __future__ import annotations

import numpy as np

from skysift.errors import SurveyError


def id_keys(ids, source: str = "id column") -> np.ndarray:
    """Ids as exact join keys: int64 for integer ids, str for text.

    Parameters
    ----------
    ids : (n,) integer, bytes, str or object array (a masked array is read through its
        data; mask the rows out before when they have no id).
    source : what holds the ids, named in errors (e.g. ``"labels.fits: column 'objid'"``).

    Returns
    -------
    (n,) int64 keys for integer ids, str keys otherwise (``S`` bytes and bytes in an object
    array decoded as UTF-8, any other object by ``str``); unsigned ids above 2**63 - 1 become
    their decimal text, as the catalog step stores them
    (:func:`skysift.survey.catalog.catalog_ids`).

    Raises
    ------
    SurveyError
        Floating-point (or other non-id) ids.
    """
    arr = np.asarray(np.ma.getdata(ids))
    kind = arr.dtype.kind
    if kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        return arr.astype(str)  # as skysift.survey.catalog keeps them: exact decimal text
    if kind in "iu":
        return arr.astype(np.int64, copy=False)
    if kind == "S":
        return np.char.decode(arr, "utf-8")
    if kind == "U":
        return arr
    if kind == "O":
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v)
                         for v in arr.ravel()], dtype=str).reshape(arr.shape)
    what = "floating point" if kind == "f" else f"of type {arr.dtype}"
    raise SurveyError(f"{source}: ids are {what}; ids must be integers or strings (a float "
                      "loses digits above 2**53); store the id column as integer or text")


def mixed(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether keys ``a`` and ``b`` (:func:`id_keys`) are one integer and one text."""
    return (a.dtype.kind == "i") != (b.dtype.kind == "i")


def common_keys(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys ``a`` and ``b`` (:func:`id_keys`) made comparable: unchanged when both are integer
    or both text, both as decimal text when one is integer and the other text."""
    if mixed(a, b):
        return a.astype(str), b.astype(str)
    return a, b


def find_sorted(sorted_keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position of each of ``query`` (n,) in ``sorted_keys`` (m,), -1 where it is absent.

    Both are keys of one kind (:func:`common_keys`); ``sorted_keys`` is sorted ascending and
    its values are unique. Returns (n,) int64.
    """
    out = np.full(query.shape, -1, dtype=np.int64)
    if sorted_keys.size == 0 or query.size == 0:
        return out
    pos = np.minimum(np.searchsorted(sorted_keys, query), sorted_keys.size - 1)
    found = sorted_keys[pos] == query
    out[found] = pos[found]
    return out


def match_ids(ids, ref_ids) -> np.ndarray:
    """Position of each id in ``ref_ids``, -1 where it is absent (the first position where
    ``ref_ids`` repeats an id).

    ids : (n,) and ref_ids : (m,) ids or keys (both go through :func:`id_keys`). Integer ids
    are compared with text ids through their exact decimal string. Returns (n,) int64.
    """
    ids, ref = common_keys(id_keys(ids), id_keys(ref_ids, "reference ids"))
    order = np.argsort(ref, kind="stable")
    pos = find_sorted(ref[order], ids)
    out = np.full(pos.shape, -1, dtype=np.int64)
    out[pos >= 0] = order[pos[pos >= 0]]
    return out
