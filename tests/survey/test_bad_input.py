"""Bad input the survey readers and intermediate files must refuse clearly."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from survey_helpers import make_config, write_band

from skysift import io
from skysift.errors import DataError, SurveyError
from skysift.survey.catalog import read_catalog
from skysift.survey.tiles import read_tile


def test_empty_catalog_is_an_error(tmp_path):
    path = tmp_path / "empty.fits"
    Table({"objid": np.zeros(0, np.int64), "ra": np.zeros(0), "dec": np.zeros(0)}).write(path)
    with pytest.raises(SurveyError, match="empty.fits"):
        read_catalog(make_config(tmp_path, catalog=path))


def test_non_celestial_wcs_is_refused(tmp_path):
    w = WCS(naxis=2)
    w.wcs.ctype = ["LINEAR", "LINEAR"]
    w.wcs.cdelt = [1.0, 1.0]
    for band in ("g", "r"):
        write_band(tmp_path / "tiles" / f"t_{band}.fits", np.zeros((32, 32)), w)
    with pytest.raises(SurveyError, match=r"t_g\.fits.*celestial"):
        read_tile(make_config(tmp_path), "t")


def test_hdf5_of_an_older_layout_is_refused(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as fh:
        fh["images"] = np.zeros((1, 1, 8, 8), np.float32)
        fh.attrs["h5_layout_version"] = 0
    with pytest.raises(DataError, match=r"old\.h5.*layout version 0.*re-run"):
        io.open_h5(path, required=("images",))
