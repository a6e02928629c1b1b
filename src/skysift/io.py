"""I/O at the edges: atomic outputs, provenance, tables, HDF5 helpers."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table

from skysift import __version__
from skysift.config import config_hash
from skysift.errors import DataError, SurveyError
from skysift.ids import id_keys

#: Version of the HDF5 layouts written by skysift (docs/formats.md); bumped on change.
H5_LAYOUT_VERSION = 1


def partial_path(path: str | Path) -> Path:
    """Temporary name an output is written under before its final rename."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; rename it to ``path`` only if the block succeeds.

    A process killed at any moment leaves the old output or the new one, never a
    truncated file; on error the temporary file is removed. A full disk (``ENOSPC``,
    ``EDQUOT``) raised by the writer (h5py and file objects name no file) carries ``path``
    as its ``filename``, so the message names the output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            exc.filename = str(path)
        raise


def git_commit() -> str:
    """The git commit of the skysift source, or 'unknown' outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def provenance(config: Mapping, **extra) -> dict:
    """Provenance recorded in every output: version, commit, config hash, seed, extras."""
    prov = {
        "skysift_version": __version__,
        "git_commit": git_commit(),
        "config_hash": config_hash(config),
        "seed": int(config.get("seed", 0)),
        "h5_layout_version": H5_LAYOUT_VERSION,
    }
    prov.update({k: (v if isinstance(v, (int, float, str)) else json.dumps(v, default=str))
                 for k, v in extra.items()})
    return prov


def write_attrs(h5obj, attrs: Mapping) -> None:
    """Write a mapping into HDF5 attrs (lists and dicts as JSON strings)."""
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, default=str)
        h5obj.attrs[key] = value


def read_attr_json(h5obj, key: str):
    """Read an attr written by :func:`write_attrs` (JSON-decoded when it was a list or dict)."""
    value = h5obj.attrs[key]
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def open_h5(path: str | Path, required: tuple[str, ...] = ()) -> h5py.File:
    """Open a skysift HDF5 file read-only, checking its layout version and datasets."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; run the step that makes it (snakemake {path})")
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc}); "
                        "delete it and re-run its rule") from None
    version = fh.attrs.get("h5_layout_version")
    if version != H5_LAYOUT_VERSION:
        fh.close()
        raise DataError(f"{path}: HDF5 layout version {version}, this skysift reads "
                        f"{H5_LAYOUT_VERSION}; delete it and re-run its rule")
    missing = [name for name in required if name not in fh]
    if missing:
        fh.close()
        raise DataError(f"{path}: missing datasets {missing}; delete it and re-run its rule")
    return fh


def id_array(values) -> np.ndarray:
    """Ids as stored in HDF5: int64 for integer ids, UTF-8 bytes for everything else
    (the keys of :func:`skysift.ids.id_keys`; float ids raise SurveyError)."""
    keys = id_keys(values, "object ids")
    return keys if keys.dtype.kind == "i" else np.char.encode(keys, "utf-8")


def _read_parquet(path: Path) -> Table:
    """A Parquet table (Rubin's catalogs) with exact integers and verbatim strings: a null
    entry is masked, never turned into a float NaN (astropy's reader would turn an integer
    column with nulls into floats)."""
    import pyarrow as pa  # only Parquet inputs need it
    import pyarrow.parquet as pq

    arrow = pq.read_table(path)
    columns = {}
    for name, col in zip(arrow.column_names, arrow.columns, strict=True):
        col = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        nulls = col.is_null().to_numpy(zero_copy_only=False)
        text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        if nulls.any() and not pa.types.is_floating(col.type):
            fill = "" if text else (False if pa.types.is_boolean(col.type) else 0)
            col = col.fill_null(pa.scalar(fill, col.type))
        values = col.to_numpy(zero_copy_only=False)
        values = values.astype(str) if text else values
        columns[name] = np.ma.MaskedArray(values, nulls) if nulls.any() else values
    return Table(columns)


def read_table(path: str | Path, what: str = "table") -> Table:
    """Read a FITS, CSV, ECSV or Parquet table, with a user-facing error."""
    path = Path(path)
    if not path.exists():
        raise SurveyError(f"{path}: {what} not found; check the path in config")
    suffix = "".join(path.suffixes).lower()
    fmt = None
    if suffix.endswith(".csv"):
        fmt = "ascii.csv"
    elif suffix.endswith(".ecsv"):
        fmt = "ascii.ecsv"
    try:
        if suffix.endswith((".parquet", ".parq", ".pq")):
            return _read_parquet(path)
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy and pyarrow raise many types for unreadable tables
        raise SurveyError(f"{path}: cannot read {what} ({exc}); "
                          "give a FITS, CSV, ECSV or Parquet table") from None


def read_csv_rows(path: str | Path, not_found: str,
                  encoding: str = "utf-8") -> tuple[list[dict[str, str]], list[str]]:
    """(rows as text, column names) of a CSV file with a header line; DataError
    ``"{path}: {not_found}"`` when the file does not exist."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {not_found}")
    with open(path, newline="", encoding=encoding) as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return rows, list(reader.fieldnames or [])


def require_columns(table: Table, columns: Mapping[str, str], path: str | Path, key: str) -> None:
    """Raise a SurveyError naming the config key when a configured column is missing."""
    for role, name in columns.items():
        if name not in table.colnames:
            raise SurveyError(
                f"{path}: no column '{name}' (configured as {key}.{role}); "
                f"columns are {', '.join(table.colnames)}; set {key}.{role} in config")


def write_json(path: str | Path, payload) -> None:
    """Write JSON atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")


def compression_kw(name: str) -> dict:
    """h5py dataset keywords of a ``compression`` config value (none | lzf | gzip)."""
    if name == "none":
        return {}
    if name == "lzf":
        return {"compression": "lzf", "shuffle": True}
    return {"compression": "gzip", "compression_opts": 1, "shuffle": True}


def write_stamps(path: str | Path, arrays: Mapping[str, np.ndarray], attrs: Mapping,
                 chunk_objects: int = 256) -> None:
    """Write a stamps HDF5 file (layout in docs/formats.md) atomically.

    ``arrays`` maps dataset names to arrays whose first axis is the object axis; image-like
    arrays (ndim 4) are chunked one ``chunk_objects`` slab of objects at a time and
    gzip-compressed at level 1 (shuffle on).
    """
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            for name, arr in arrays.items():
                arr = np.asarray(arr)
                kw = {}
                if arr.ndim >= 3 and arr.shape[0] > 0:
                    kw = dict(chunks=(min(chunk_objects, arr.shape[0]),) + arr.shape[1:],
                              compression="gzip", compression_opts=1, shuffle=True)
                fh.create_dataset(name, data=arr, **kw)
            write_attrs(fh, attrs)
            fh.attrs["h5_layout_version"] = H5_LAYOUT_VERSION


def read_arrays(path: str | Path, names: tuple[str, ...]) -> tuple[dict, dict]:
    """Read whole datasets and all attrs (JSON-decoded) of a skysift HDF5 file."""
    with open_h5(path, required=names) as fh:
        arrays = {name: fh[name][()] for name in names}
        attrs = {key: read_attr_json(fh, key) for key in fh.attrs}
    return arrays, attrs
