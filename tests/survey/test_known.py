"""Known lenses: the shipped lenscat catalogue (filters, pinned checksum, provenance), a
user's table, and the nearest object of each lens over catalog parts seen one at a time."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.table import Table

from skysift.config import validate
from skysift.errors import DataError
from skysift.survey import known as kn


def test_lenscat_is_filtered_by_grading_and_type():
    conf = kn.read_known_lenses(validate({"survey": {"known_lenses": "lenscat"}}))
    assert conf.names.size == 2038  # confident galaxy-scale lenses (the defaults)
    assert set(conf.extra["grading"]) == {"confident"} and set(conf.extra["type"]) == {"galaxy"}
    everything = kn.read_lenscat(["confident", "probable"], ["galaxy", "group", "cluster"])
    assert everything.names.size == 32838
    clusters = kn.read_lenscat(["confident"], ["cluster"])
    assert clusters.names.size == 262 and set(clusters.extra["type"]) == {"cluster"}
    assert np.isfinite(everything.ra_deg).all() and (np.abs(everything.dec_deg) <= 90).all()
    assert all(" | " not in n for n in everything.names.tolist())  # the first alias only
    assert conf.provenance == {"known_lenses": "lenscat", "lenscat_version": "1.1.3",
                               "lenscat_sha256": kn.LENSCAT_SHA256,
                               "lenscat_grading": "confident", "lenscat_kind": "galaxy",
                               "n_known_lenses": 2038}


def test_a_changed_lenscat_file_is_refused(tmp_path, monkeypatch):
    raw = gzip.decompress(kn.lenscat_file().read_bytes())
    (tmp_path / "catalog.csv.gz").write_bytes(gzip.compress(raw.replace(b"galaxy", b"Galaxy",
                                                                        1)))
    monkeypatch.setattr(kn, "lenscat_file", lambda: tmp_path / "catalog.csv.gz")
    with pytest.raises(DataError, match="is not that of lenscat 1.1.3 .*reinstall skysift"):
        kn.read_lenscat(["confident"], ["galaxy"])


def test_a_user_table_records_its_checksum(tmp_path):
    Table({"ra": [1.0, 2.0], "dec": [0.0, np.nan], "name": ["A", "B"]}).write(
        tmp_path / "known.ecsv")
    k = kn.read_known_lenses(validate({"survey": {"known_lenses": str(tmp_path / "known.ecsv")}}))
    assert k.names.tolist() == ["A", "B"] and np.isnan(k.dec_deg[1])
    assert len(k.provenance["known_lenses_sha256"]) == 64 and k.extra == {}


def test_nearest_object_wins_over_parts_ties_to_the_lower_index():
    k = kn.KnownLenses(np.array(["L0", "L1", "L2", "L3"]), np.array([10.0, 10.0, 20.0, 30.0]),
                       np.array([0.0, 0.0, 0.0, 0.0]), {})
    near = kn.NearestObjects(k, 1.0)
    arcsec = 1 / 3600
    near.update(np.array([7, 8]), np.array([10.0, 20.0 + 0.5 * arcsec]), np.array([0.6, 0.0])
                * arcsec)
    near.update(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))  # an empty part
    near.update(np.array([3, 9]), np.array([10.0, 20.0 - 0.5 * arcsec]),
                np.array([0.4 * arcsec, 0.0]))
    # L0, L1: object 3 (0.4") beats 7 (0.6"); L2: 8 and 9 both at 0.5", the lower index wins
    assert near.index.tolist() == [3, 3, 8, -1]
    flag, names = near.columns(np.array([3, 7, 8, 9]))
    assert flag.tolist() == [True, False, True, False]
    assert names.tolist() == ["L0; L1", "", "L2", ""]
    assert near.name_width() == len("L0; L1")
