"""The review pages' stamps cut again from the tiles after ranking (skysift.review.stamps):
the cutouts step's pixels and flags for the same objects, and the page reads them."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
from astropy.table import Table
from survey_helpers import BANDS, gaussian, make_config, make_wcs, write_tile

from skysift.modelspec import primary_specs
from skysift.review import gallery
from skysift.review import stamps as review_stamps
from skysift.review.sample import read_scored_catalog
from skysift.review.selection import page_candidates, page_selection, read_candidates
from skysift.stamps.cutouts import cut_objects
from skysift.survey.index import build_index, write_index
from skysift.survey.shards import load_shards, read_assignment_rows

SHAPE = (50, 58)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """Three fpack tiles (zero points 30, 29, 30; the last one rejected: a band without a
    valid pixel), 14 objects each, some at the edges; one tile per shard."""
    root = tmp_path_factory.mktemp("survey")
    rng = np.random.default_rng(11)
    ids, ra, dec = [], [], []
    for t in range(3):
        wcs = make_wcs(40.0 + 0.02 * t, 2.0, SHAPE)
        xy = np.column_stack([rng.uniform(-2, SHAPE[1] + 1, 14),
                              rng.uniform(-2, SHAPE[0] + 1, 14)])
        images = rng.normal(size=(len(BANDS),) + SHAPE).astype(np.float32) + 5
        for x, y in xy:
            images += gaussian(SHAPE, x, y, sigma=1.5, amp=rng.uniform(10, 90))[None]
        if t == 2:
            images[0] = np.nan
        write_tile(root, f"T{t}", wcs, SHAPE, compressed=True, images=images,
                   extra={"PSF_FWHM": 1.0, "MAGZP": 30.0 - (t == 1)})
        r, d = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
        ra += list(r)
        dec += list(d)
        ids += [f"obj{t}-{k:02d}" for k in range(14)]
    Table({"objid": np.array(ids), "ra": ra, "dec": dec}).write(root / "cat.fits")
    config = make_config(root, compressed=True, cutouts={"stamp_size_pix": 11},
                         index={"tiles_per_shard": 1}, infer={"top_k": 4, "tiles_in_flight": 0},
                         review={"random_fraction": 0.5, "n_checks": 0})
    write_index(root / "index", build_index(config), config)
    cutouts = []
    for entry in load_shards(root / "index")["shards"]:
        rows = read_assignment_rows(root / "index", shard=entry["shard"])
        path = root / f"{entry['shard']}.h5"
        cut_objects(config, rows, path, root / f"{entry['shard']}.rejects.ecsv",
                    entry["shard"])
        cutouts.append(path)
    return root, config, cutouts


def _cutouts_by_index(paths):
    images, flags = {}, {}
    for path in paths:
        with h5py.File(path) as fh:
            for k, i in enumerate(fh["index"][()]):
                images[int(i)], flags[int(i)] = fh["images"][k], int(fh["flags"][k])
    return images, flags


@pytest.mark.parametrize("in_flight", [0, 2])
def test_stamps_cut_after_ranking_are_the_cutouts_pixels(survey, in_flight):
    root, config, cutouts = survey
    images, flags = _cutouts_by_index(cutouts)
    wanted = np.unique(sorted(images)[::3] + [max(images)]).astype(np.int64)  # both tiles
    rows = review_stamps.wanted_rows(root / "index", wanted, None)
    cfg = {**config, "infer": {**config["infer"], "tiles_in_flight": in_flight}}
    cut = review_stamps.cut_rows(cfg, rows)
    assert sorted(rows["index"].tolist()) == wanted.tolist()
    assert set(cut["tiles"]) == {"T0", "T1"}
    assert any(flags[int(i)] for i in rows["index"])  # edge objects among them
    for k, i in enumerate(rows["index"]):
        assert np.array_equal(cut["images"][k], images[int(i)], equal_nan=True), i
        assert int(cut["flags"][k]) == flags[int(i)]
    assert np.array_equal(np.unique(cut["zeropoint"][:, 0]), [29.0, 30.0])


def _catalog_and_candidates(root, config, cutouts):
    """A gathered catalog (every cut object, random scores) and each task's top_k list."""
    rng = np.random.default_rng(3)
    cols = {"index": [], "id": [], "ra": [], "dec": [], "tile": []}
    for path in cutouts:
        with h5py.File(path) as fh:
            for name in cols:
                cols[name] += list(fh[name][()])
    cat = Table({k: np.char.decode(np.asarray(v)) if k in ("id", "tile") else np.asarray(v)
                 for k, v in cols.items()})
    candidates = {}
    for task, spec in primary_specs(config).items():
        cat[spec.column] = rng.normal(size=len(cat)).astype(np.float32)
        top = np.argsort(-np.asarray(cat[spec.column]), kind="stable")[:4]  # infer.top_k
        path = root / f"{task}.csv"
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["rank", "index", "id", "ra", "dec", "tile", spec.column])
            for rank, r in enumerate(top, start=1):
                w.writerow([rank, int(cat["index"][r]), str(cat["id"][r]),
                            repr(float(cat["ra"][r])), repr(float(cat["dec"][r])),
                            str(cat["tile"][r]), repr(float(cat[spec.column][r]))])
        candidates[task] = path
    cat.write(root / "catalog.fits", overwrite=True)
    return root / "catalog.fits", candidates


def test_review_pages_read_the_stamps_cut_after_ranking(survey, tmp_path):
    root, config, cutouts = survey
    catalog, candidates = _catalog_and_candidates(root, config, cutouts)
    out = tmp_path / "stamps.h5"
    res = review_stamps.review_stamps(config, root / "index", candidates, catalog, out)
    with h5py.File(out) as fh:
        index = fh["index"][()]
    pages = set()
    for task, path in candidates.items():
        html, sheet, sample = (tmp_path / f"{task}.{ext}" for ext in ("html", "csv", "s.csv"))
        n, counts = gallery.review_task(config, task, path, [out], html, sheet,
                                        catalog=catalog, sample_out=sample)
        assert counts["random"] > 0 and n == counts["top"] + counts["random"]
        with open(sample, newline="") as fh:
            page = [int(r["index"]) for r in csv.DictReader(fh)]
        pages.update(page)
        spec = primary_specs(config)[task]
        cat = read_scored_catalog(catalog, spec.column)
        cands = page_candidates(page_selection(config, task,
                                               read_candidates(path, spec.column), cat), cat)
        new, new_flags, bands, _ = gallery.read_stamps(cands, [out])
        old, old_flags, _, _ = gallery.read_stamps(cands, cutouts)
        assert bands == BANDS
        assert np.array_equal(new, old, equal_nan=True) and np.array_equal(new_flags, old_flags)
    assert sorted(pages) == index.tolist() and res["n_objects"] == len(index)  # index order
    n_cut = 0
    for path in cutouts:
        with h5py.File(path) as fh:
            n_cut += len(fh["index"])
    assert len(index) < n_cut  # the pages only


def test_listed_mode_cuts_the_list_as_it_is(survey, tmp_path):
    """``--listed`` (rule similar_stamps): exactly the objects of the list, the cutouts'
    pixels, no sample or checks drawn, and no catalog read."""
    import json

    root, config, cutouts = survey
    images, _ = _cutouts_by_index(cutouts)
    listed = sorted(images)[1::4]
    path = tmp_path / "similar.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "index", "id", "ra", "dec", "tile", "distance"])
        for k, i in enumerate(reversed(listed), start=1):
            w.writerow([k, i, f"x{i}", 0.0, 0.0, "", 0.1 * k])
    out = tmp_path / "stamps.h5"
    assert review_stamps.main(["--config-json", json.dumps(config), "--listed", "--index-dir",
                               str(root / "index"), "--candidates", str(path), "--out",
                               str(out)]) == 0
    with h5py.File(out) as fh:
        assert fh["index"][()].tolist() == listed
        for k, i in enumerate(listed):
            np.testing.assert_array_equal(fh["images"][k], images[i])
    assert review_stamps.main(["--config-json", json.dumps(config), "--index-dir",
                               str(root / "index"), "--candidates", str(path), "--out",
                               str(tmp_path / "no.h5")]) != 0  # no --catalog, no --listed
    assert not (tmp_path / "no.h5").exists()
