"""End to end (the shared tiny run): blank-sky cutouts and mergers drawn on them."""

from __future__ import annotations

import h5py
import numpy as np
from astropy.table import Table


def test_blank_sky_cutouts_beside_unchanged_object_datasets(tiny_run):
    n_catalog = 0
    for path in sorted((tiny_run / "results" / "cutouts").glob("*.h5")):
        with h5py.File(path, "r") as fh:
            n = len(fh["index"])
            n_catalog += n
            assert len(fh["images"]) == n and len(fh["flags"]) == n  # objects only
            assert 0 < len(fh["blank/images"]) == fh.attrs["n_blank"]
            assert np.isfinite(fh["blank/images"][()]).all()
        with h5py.File(tiny_run / "results" / "stamps" / path.name, "r") as fh:
            assert len(fh["images"]) == n and fh["blank/mask"][()].all()
    catalog = Table.read(tiny_run / "results" / "catalog.fits")
    assert len(catalog) == n_catalog  # inference scored the objects, not the blank sky


def test_merger_training_set_draws_on_blank_sky(tiny_run):
    with h5py.File(tiny_run / "results" / "train" / "merger.h5", "r") as fh:
        background, label = fh["background"][()], fh["label"][()]
        sim, index = fh["sim"][()], fh["index"][()]
        n_isolated = int(fh.attrs["n_isolated"])
    blank = background == b"blank"
    assert blank[label == 1].any() and blank[label == 0].any()
    assert (sim[blank] != b"").all() and (index[blank] == -1).all()
    # isolated galaxies (simulated negatives) are drawn only without labelled negatives
    # (use: simulated; tests/sim/test_trainset.py); the tiny run has labels (use: both)
    assert (sim == b"isolated").sum() == n_isolated
    with h5py.File(tiny_run / "results" / "train" / "lens.h5", "r") as fh:
        assert (fh["background"][()] == b"galaxy").all()  # lenses need a real deflector
