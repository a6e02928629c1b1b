"""Gather: one streamed catalog, ids exact in FITS and CSV, probabilities at the stated
prevalence, survey-wide ranks without a survey-wide sort, candidates ranked."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table, vstack

from skysift.score import gather, prior
from skysift.score import tables as score_tables
from skysift.score.tables import ids_for_fits, write_fits_table
from skysift.stamps.flags import FLAG_BITS

BIG = 2**62 + 1  # far above 2**53: a float would lose its last digits
CONFIG = {"infer": {"top_k": 3}, "tasks": [{"name": "lens", "label": "is_lens"},
                                            {"name": "merger", "label": "is_merger"}],
          "models": [{"name": "cnn", "architecture": "baseline3"}]}


def scores_file(path, index, ids, lens, tile, extra=None):
    n = len(index)
    table = Table()
    table["index"] = np.asarray(index, dtype=np.int64)
    table["id"] = ids_for_fits(np.asarray(ids))
    table["ra"] = np.linspace(10, 11, n)
    table["dec"] = np.linspace(-1, 1, n)
    table["tile"] = np.full(n, tile.encode(), dtype="S8")
    table["flags"] = (np.asarray(index) % 3).astype(np.uint8)
    table["score_lens_cnn"] = np.asarray(lens, dtype=np.float32)
    table["score_merger_cnn"] = -np.asarray(lens, dtype=np.float32)
    for name, values in (extra or {}).items():
        table[name] = np.asarray(values, dtype=np.float32)
    write_fits_table(path, table, [("SEED", 1)])
    return path


def run(tmp_path, files, config=CONFIG):
    return gather.main(["--config-json", json.dumps(config), "--scores", *map(str, files),
                        "--out", str(tmp_path / "catalog.fits"),
                        "--csv", str(tmp_path / "catalog.csv"),
                        "--candidates-dir", str(tmp_path / "candidates")])


@pytest.fixture
def int_files(tmp_path):
    return [
        scores_file(tmp_path / "b.fits", [7, 2, 9], [BIG + 7, BIG + 2, BIG + 9],
                    [0.5, 2.0, 0.5], "b"),
        scores_file(tmp_path / "a.fits", [4, 0], [BIG + 4, BIG], [2.0, -1.0], "a"),
        scores_file(tmp_path / "empty.fits", [], np.zeros(0, np.int64), [], "c"),
    ]


def test_catalog_is_shard_by_shard_by_index_and_keeps_int64_ids(tmp_path, int_files):
    assert run(tmp_path, int_files) == 0
    cat = Table.read(tmp_path / "catalog.fits")
    assert list(cat["index"]) == [2, 7, 9, 0, 4]  # shard b, then shard a; by index within
    assert list(cat["id"]) == [BIG + 2, BIG + 7, BIG + 9, BIG, BIG + 4]
    assert list(cat["tile"]) == ["b", "b", "b", "a", "a"]
    assert cat.meta["SEED"] == 42 and "config_hash" in cat.meta
    with open(tmp_path / "catalog.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [str(BIG + i) for i in (2, 7, 9, 0, 4)]
    assert list(rows[0]) == ["index", "id", "ra", "dec", "tile", "flags",
                             "score_lens_cnn", "score_merger_cnn", "prob_lens_cnn",
                             "prob_merger_cnn", "rank_lens_cnn", "rank_merger_cnn"]
    sidecar = json.loads((tmp_path / "catalog.json").read_text())
    assert sidecar["counts"]["n_rows"] == 5 and sidecar["counts"]["n_files"] == 3
    assert sidecar["counts"]["n_empty_files"] == 1 and sidecar["counts"]["n_tiles"] == 2
    # flags 0, 2, 1, 1, 0: counted with cutouts.FLAG_BITS, every bit named
    assert sidecar["counts"]["flags"] == {"EDGE": 2, "MASKED": 1, "NAN": 0, "CENTRE": 0,
                                          "EMPTY": 0}
    assert set(sidecar["counts"]["flags"]) == set(FLAG_BITS)
    assert [c["name"] for c in sidecar["columns"]][:2] == ["index", "id"]
    assert sidecar["provenance"]["seed"] == 42


def test_candidates_are_ranked_with_ties_by_index(tmp_path, int_files):
    assert run(tmp_path, int_files) == 0
    with open(tmp_path / "candidates" / "lens.csv") as fh:
        lens = list(csv.DictReader(fh))
    # scores: index 2 -> 2.0, 4 -> 2.0, 7 -> 0.5, 9 -> 0.5, 0 -> -1.0; top_k = 3
    assert [(r["rank"], r["index"], r["id"]) for r in lens] == [
        ("1", "2", str(BIG + 2)), ("2", "4", str(BIG + 4)), ("3", "7", str(BIG + 7))]
    with open(tmp_path / "candidates" / "merger.csv") as fh:
        merger = list(csv.DictReader(fh))
    assert [r["index"] for r in merger] == ["0", "7", "9"]


def test_string_ids_survive(tmp_path):
    files = [scores_file(tmp_path / "s.fits", [1, 0], ["J1+ñ, b", "0042"], [1.0, 0.0], "s")]
    assert run(tmp_path, files) == 0
    with open(tmp_path / "catalog.csv", encoding="utf-8") as fh:
        assert [r["id"] for r in csv.DictReader(fh)] == ["0042", "J1+ñ, b"]
    cat = score_tables.read_scores(tmp_path / "catalog.fits")
    assert list(cat["id"]) == ["0042", "J1+ñ, b"]


def test_only_empty_tiles_give_an_empty_catalog(tmp_path):
    files = [scores_file(tmp_path / "e.fits", [], np.zeros(0, np.int64), [], "e")]
    assert run(tmp_path, files) == 0
    assert len(Table.read(tmp_path / "catalog.fits")) == 0
    assert (tmp_path / "candidates" / "lens.csv").read_text().startswith("rank,index,id")


def test_duplicate_index_and_missing_task_are_user_errors(tmp_path, int_files, capsys):
    dup = scores_file(tmp_path / "dup.fits", [4], [BIG + 4], [0.0], "d")
    assert run(tmp_path, int_files + [dup]) == 2
    assert "occur in several score files" in capsys.readouterr().err
    config = {**CONFIG, "tasks": CONFIG["tasks"] + [{"name": "ring", "label": "is_ring"}],
              "evaluate": {"prevalence": {"lens": 0.001, "merger": 0.01, "ring": 0.01}}}
    assert run(tmp_path, int_files, config) == 2
    assert "['score_ring_cnn']" in capsys.readouterr().err
    assert not (tmp_path / "catalog.fits").exists()


def test_candidates_follow_the_primary_model(tmp_path):
    files = [scores_file(tmp_path / "p.fits", [0, 1, 2], [5, 6, 7], [3.0, 2.0, 1.0], "p",
                         extra={"score_lens_inv": [-1.0, 0.0, 9.0]})]
    config = {**CONFIG, "models": [{"name": "cnn", "architecture": "baseline3"},
                                   {"name": "inv", "architecture": "d4", "tasks": ["lens"],
                                    "primary": True}]}
    assert run(tmp_path, files, config) == 0
    with open(tmp_path / "candidates" / "lens.csv") as fh:
        assert [r["index"] for r in csv.DictReader(fh)] == ["2", "1", "0"]
    with open(tmp_path / "candidates" / "merger.csv") as fh:  # cnn: the only merger model
        assert [r["index"] for r in csv.DictReader(fh)] == ["2", "1", "0"]
    sidecar = json.loads((tmp_path / "catalog.json").read_text())
    assert sidecar["counts"]["tasks"]["lens"]["ranked_by"] == "score_lens_inv"
    assert sidecar["counts"]["tasks"]["merger"]["ranked_by"] == "score_merger_cnn"
    config["models"][0]["primary"] = True
    config["models"][0]["tasks"] = ["lens"]
    assert run(tmp_path, files, config) == 2  # two primaries for lens, none for merger


def test_probability_is_at_the_stated_prevalence(tmp_path, int_files):
    config = {**CONFIG, "evaluate": {"prevalence": {"lens": 1e-4, "merger": 0.02}}}
    assert run(tmp_path, int_files, config) == 0
    cat = Table.read(tmp_path / "catalog.fits")
    for task, prevalence in (("lens", 1e-4), ("merger", 0.02)):
        p = np.asarray(cat[f"prob_{task}_cnn"])
        assert p.dtype.kind == "f" and p.dtype.itemsize == 4
        expected = prior.probability(np.asarray(cat[f"score_{task}_cnn"]), prevalence)
        np.testing.assert_allclose(p, expected, rtol=1e-6)
    # a logit of 2 is 88 % on a balanced set; at 1 lens in 10^4 it is about 7 in 10^4
    assert np.asarray(cat["prob_lens_cnn"]).max() < 1e-3
    sidecar = json.loads((tmp_path / "catalog.json").read_text())
    assert sidecar["counts"]["tasks"]["lens"]["prevalence"] == 1e-4


def reference_ranks(index, scores):
    """Ranks by a full in-memory sort: 1 = highest score, ties by index, 0 when not finite."""
    ranks = np.zeros(len(scores), np.int64)
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.lexsort((index[finite], -scores[finite]))]
    ranks[order] = np.arange(1, order.size + 1)
    return ranks


@pytest.mark.parametrize("block", [1, 3, 1000])
def test_merge_ranks_equal_a_full_sort_with_ties_and_nan(block):
    rng = np.random.default_rng(5)
    index = rng.permutation(400).astype(np.int64)
    scores = rng.integers(0, 6, 400).astype(np.float32)  # many ties across runs
    scores[::17] = np.nan
    scores[[3, 4]] = [-0.0, 0.0]
    bounds = [0, 1, 90, 90, 250, 400]  # runs of 1, 89, 0, 160, 150 objects
    runs = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        z, ix = scores[a:b], index[a:b]
        ok = np.flatnonzero(np.isfinite(z))
        ok = ok[np.lexsort((ix[ok], -z[ok]))]
        runs.append((-z[ok], ix[ok], a + ok))
    got = np.zeros(400, np.int64)
    rank = 1
    for run, pos in gather.merge_runs([(k, t) for k, t, _ in runs], block=block):
        rows = np.array([runs[r][2][p] for r, p in zip(run, pos, strict=True)], dtype=np.int64)
        got[rows] = np.arange(rank, rank + len(rows))
        rank += len(rows)
    np.testing.assert_array_equal(got, reference_ranks(index, scores))


def shard_files(tmp_path, rng, n_shards=4):
    files, index = [], rng.permutation(200).astype(np.int64)
    cuts = np.sort(rng.choice(np.arange(1, 200), n_shards - 1, replace=False))
    for i, part in enumerate(np.split(index, cuts)):
        lens = rng.integers(-3, 4, len(part)).astype(np.float32)  # ties across shards
        lens[rng.random(len(part)) < 0.1] = np.nan
        files.append(scores_file(tmp_path / f"s{i}.fits", part, BIG + part, lens,
                                 f"tile{i:03d}" * (i + 1)))
    return files


def test_streamed_catalog_equals_the_in_memory_concatenation(tmp_path, monkeypatch):
    monkeypatch.setattr(gather, "MERGE_BLOCK", 7)  # many merge rounds
    files = shard_files(tmp_path, np.random.default_rng(11))
    assert run(tmp_path, files, {**CONFIG, "infer": {"top_k": 25}}) == 0
    cat = score_tables.read_scores(tmp_path / "catalog.fits")
    tables = [score_tables.read_scores(f) for f in files]
    memory = vstack([t[np.argsort(np.asarray(t["index"]), kind="stable")] for t in tables])
    assert cat.colnames[:len(memory.colnames)] == memory.colnames
    for name in memory.colnames:
        np.testing.assert_array_equal(np.asarray(cat[name]), np.asarray(memory[name]))
    index = np.asarray(memory["index"])
    for task in ("lens", "merger"):
        scores = np.asarray(memory[f"score_{task}_cnn"])
        np.testing.assert_array_equal(cat[f"rank_{task}_cnn"], reference_ranks(index, scores))
    # byte for byte what astropy writes for the whole table at once
    whole = Table.read(tmp_path / "catalog.fits", character_as_bytes=True)
    whole.meta.clear()
    write_fits_table(tmp_path / "whole.fits", whole, [])
    streamed = fits.getdata(tmp_path / "catalog.fits", 1)
    written = fits.getdata(tmp_path / "whole.fits", 1)
    assert streamed.dtype == written.dtype and len(streamed) == len(written) == 200
    for name in streamed.dtype.names:  # NaN == NaN whatever its sign bit
        np.testing.assert_array_equal(streamed[name], written[name])
    with open(tmp_path / "catalog.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["index"]) for r in rows] == list(index)
    assert [r["tile"] for r in rows] == list(memory["tile"])
    # candidates: the top 25 of the full sort, rank column first
    cand = Table.read(tmp_path / "candidates" / "lens.csv", format="ascii.csv")
    ref = reference_ranks(index, np.asarray(memory["score_lens_cnn"]))
    top = np.argsort(np.where(ref > 0, ref, 10**9))[:25]
    assert list(cand["rank"]) == list(range(1, 26))
    assert list(cand["index"]) == list(index[top])
    assert list(cand["rank_lens_cnn"]) == list(range(1, 26))


def test_unselected_objects_are_kept_unranked(tmp_path):
    files = [scores_file(tmp_path / "u.fits", [0, 1, 2], [5, 6, 7], [np.nan, 1.0, np.nan], "u",
                         extra={"selected": [0, 1, 0]})]
    assert run(tmp_path, files) == 0
    cat = Table.read(tmp_path / "catalog.fits")
    assert len(cat) == 3 and list(cat["rank_lens_cnn"]) == [0, 1, 0]
    assert np.isnan(fits.getdata(tmp_path / "catalog.fits", 1)["prob_lens_cnn"][[0, 2]]).all()
    with open(tmp_path / "candidates" / "lens.csv") as fh:
        assert [r["index"] for r in csv.DictReader(fh)] == ["1"]
    sidecar = json.loads((tmp_path / "catalog.json").read_text())
    assert sidecar["counts"]["tasks"]["lens"]["n_nonfinite"] == 2


def test_shards_scored_by_other_checkpoints_are_refused(tmp_path, capsys):
    a = scores_file(tmp_path / "a.fits", [0], [5], [1.0], "a")
    b = scores_file(tmp_path / "b.fits", [1], [6], [1.0], "b")
    with fits.open(b, mode="update") as hdul:
        hdul[1].header["MSHA1"] = "beef"
    assert run(tmp_path, [a, b]) == 2
    assert "other checkpoints" in capsys.readouterr().err


def test_outputs_may_go_to_a_new_folder(tmp_path, int_files):
    out = tmp_path / "new" / "results"
    assert gather.main(["--config-json", json.dumps(CONFIG), "--scores", *map(str, int_files),
                        "--out", str(out / "catalog.fits"), "--csv", str(out / "catalog.csv"),
                        "--candidates-dir", str(out / "candidates")]) == 0
    assert len(Table.read(out / "catalog.fits")) == 5
    assert sorted(p.name for p in out.iterdir()) == ["candidates", "catalog.csv", "catalog.fits",
                                                     "catalog.json"]  # no spill left behind


def _move(path, positions):
    """Rewrite the ra/dec of a scores file: {index: (ra_deg, dec_deg)}."""
    t = Table.read(path)
    for row in range(len(t)):
        t["ra"][row], t["dec"][row] = positions[int(t["index"][row])]
    write_fits_table(path, t, [("SEED", 1)])


def test_known_lenses_are_flagged_on_their_nearest_object_across_shards(tmp_path):
    """L0 lies 0.4" from object 2 (shard b, read first) and 0.6" from object 4 (shard a): only
    2 is flagged; L1 and L2 share object 9; L3 is off the survey. The names reach the FITS, the CSV
    and the candidates; the provenance names the table and its checksum."""
    arcsec = 1 / 3600
    pos = {7: (30.0, 0.0), 2: (50.0, 1.0 * arcsec), 9: (40.0, 0.0), 4: (50.0, 0.0),
           0: (60.0, 0.0)}
    files = [scores_file(tmp_path / "b.fits", [7, 2, 9], [BIG + 7, BIG + 2, BIG + 9],
                         [0.5, 2.0, 0.5], "b"),
             scores_file(tmp_path / "a.fits", [4, 0], [BIG + 4, BIG], [2.0, -1.0], "a")]
    for f in files:
        _move(f, pos)
    Table({"ra": [50.0, 40.0, 40.0, 200.0], "dec": [0.6 * arcsec, 0.0, -0.2 * arcsec, 0.0],
           "name": ["L0", "L1", "Lens two", "L3"]}).write(tmp_path / "known.csv")
    config = {**CONFIG, "survey": {"kind": "files", "known_lenses": str(tmp_path / "known.csv")}}
    assert gather.main(["--config-json", json.dumps(config), "--scores", *map(str, files),
                        "--out", str(tmp_path / "catalog.fits"),
                        "--csv", str(tmp_path / "catalog.csv"),
                        "--candidates-dir", str(tmp_path / "candidates"),
                        "--known-lenses"]) == 0
    cat = score_tables.read_scores(tmp_path / "catalog.fits")
    assert cat["index"].tolist() == [2, 7, 9, 0, 4]
    assert cat["known_lens"].tolist() == [True, False, True, False, False]
    assert cat["known_name"].tolist() == ["L0", "", "L1; Lens two", "", ""]
    with open(tmp_path / "catalog.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["known_name"] for r in rows] == ["L0", "", "L1; Lens two", "", ""]
    cand = Table.read(tmp_path / "candidates" / "lens.csv", format="ascii.csv")
    assert cand["index"].tolist() == [2, 4, 7]
    assert cand["known_lens"].tolist() == ["True", "False", "False"]
    side = json.loads((tmp_path / "catalog.json").read_text())
    assert side["provenance"]["known_lenses"] == str(tmp_path / "known.csv")
    assert len(side["provenance"]["known_lenses_sha256"]) == 64
    assert side["counts"]["known_lenses"] == {"n_known": 4, "n_matched": 3, "n_objects": 2}
    assert run(tmp_path, files) == 0  # without --known-lenses: no such columns
    assert "known_lens" not in score_tables.read_scores(tmp_path / "catalog.fits").colnames


@pytest.mark.parametrize("fmt", ["fits_per_shard", "parquet_per_shard"])
def test_per_shard_catalog_holds_the_one_file_catalog_and_readers_take_either(tmp_path, fmt):
    """infer.catalog_format: one file per shard (named by its scores file), the same rows and
    values as the one FITS file; no CSV without infer.catalog_csv; one candidates table; and
    evaluate and recover read the folder as they read the file."""
    from skysift.evaluate.inputs import read_catalog as evaluate_reads

    files = shard_files(tmp_path, np.random.default_rng(8))
    config = {**CONFIG, "infer": {"top_k": 5}}
    one = tmp_path / "one"
    gather.main(["--config-json", json.dumps(config), "--scores", *map(str, files),
                 "--out", str(one / "catalog.fits"), "--csv", str(one / "catalog.csv"),
                 "--candidates-dir", str(one / "candidates")])
    config["infer"].update(catalog_format=fmt, catalog_csv=False)
    parts = tmp_path / "parts"
    assert gather.main(["--config-json", json.dumps(config), "--scores", *map(str, files),
                        "--out", str(parts / "catalog"), "--candidates-dir",
                        str(parts / "candidates"),
                        "--candidates-table", str(parts / "candidates.fits")]) == 0
    suffix = ".fits" if fmt == "fits_per_shard" else ".parquet"
    assert sorted(p.name for p in (parts / "catalog").iterdir()) == [
        f"s{i}{suffix}" for i in range(4)]
    assert not list(parts.glob("*.csv")) and (parts / "catalog.json").exists()
    expected = Table.read(one / "catalog.fits")
    got = score_tables.read_gathered(parts / "catalog")
    assert got.colnames == expected.colnames and len(got) == len(expected) == 200
    for name in expected.colnames:
        a, b = np.asarray(expected[name]), np.asarray(got[name])
        a = a.astype(str) if a.dtype.kind == "S" else a  # read as str from either form
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    ev = evaluate_reads(parts / "catalog", {"lens/cnn": "score_lens_cnn"})
    assert ev.colnames == ["index", "id", "score_lens_cnn"]
    assert np.array_equal(ev["id"], expected["id"]) and ev["id"].dtype.kind == "i"
    cand = Table.read(parts / "candidates.fits")
    lens = Table.read(one / "candidates" / "lens.csv")
    merger = Table.read(one / "candidates" / "merger.csv")
    both = set(lens["index"]) | set(merger["index"])
    assert sorted(cand["index"]) == sorted(both) and len(cand) == len(both) > 5
    tasks = dict(zip(cand["index"].tolist(), cand["candidate_tasks"].tolist(),
                     strict=True))
    assert all("lens" in tasks[i] for i in lens["index"])
    assert all("merger" in tasks[i] for i in merger["index"])
