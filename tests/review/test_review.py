"""Candidate review: colour composites, the HTML gallery, the grading sheet and its read-back."""

from __future__ import annotations

import base64
import csv
import io
import json
from html.parser import HTMLParser

import h5py
import numpy as np
import pytest
from matplotlib.image import imread

from skysift.errors import DataError
from skysift.io import H5_LAYOUT_VERSION
from skysift.review import gallery as review
from skysift.review import grades
from skysift.stamps import display as images
from skysift.survey.grades import SHEET_COLUMNS

BIG = 2**62 + 1  # far above 2**53: a float would lose its last digits
CONFIG = {"tasks": [{"name": "lens", "label": "is_lens"}],
          "models": [{"name": "cnn", "architecture": "baseline3"}]}
SIZE = 9


def cutouts_file(path, index, ids, tiles, zeropoint=(30.0, 30.0, 30.0), bands=("g", "r", "i")):
    """A cutouts file (docs/formats.md) whose object k is bright in band (index[k] % 3) only."""
    n = len(index)
    images = np.zeros((n, len(bands), SIZE, SIZE), np.float32)
    for k, i in enumerate(index):
        images[k, i % 3, 3:6, 3:6] = 100.0
    images[:, :, 0, 0] = np.nan  # off the tile
    with h5py.File(path, "w") as fh:
        fh["images"] = images
        fh["index"] = np.asarray(index, np.int64)
        fh["id"] = np.asarray(ids)
        fh["flags"] = np.array([1] + [0] * (n - 1), np.uint8)
        fh["tile"] = np.array([t.encode() for t in tiles])
        fh.attrs["bands"] = json.dumps(list(bands))
        fh.attrs["tiles"] = json.dumps(sorted(set(tiles)))
        fh.attrs["zeropoint"] = json.dumps(list(zeropoint))
        fh.attrs["h5_layout_version"] = H5_LAYOUT_VERSION
    return path


def candidates_file(path, rows, prob=False):
    """A candidate list as gather writes it: rank, index, id, ra, dec, tile, flags, scores."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "index", "id", "ra", "dec", "tile", "flags", "score_lens_cnn"]
                   + (["prob_lens_cnn"] if prob else []))
        for rank, (index, id_, tile, score) in enumerate(rows, start=1):
            w.writerow([rank, index, id_, 10.0 + index / 100, -1.0 - index / 100, tile, 0,
                        score] + ([1e-3 * score] if prob else []))
    return path


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.rows, self.heads, self.figures = [], [], [], []
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and "src" in a:  # a thumbnail (the larger view's are set by script)
            self.imgs.append(a)
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append(a)
        elif tag == "th":
            self.heads.append(a)
        elif tag == "figure":
            self.figures.append(a)

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False


def decode_png(uri):
    assert uri.startswith("data:image/png;base64,")
    return imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")


@pytest.fixture
def survey(tmp_path):
    """Two shards; the candidates come from both, in score order."""
    cutouts = [
        cutouts_file(tmp_path / "s0000.h5", [0, 1, 2, 3], [BIG, BIG + 1, BIG + 2, BIG + 3],
                     ["a", "a", "b", "b"]),
        cutouts_file(tmp_path / "s0001.h5", [4, 5], [BIG + 4, BIG + 5], ["c", "c"]),
    ]
    cands = candidates_file(tmp_path / "lens.csv", [(5, BIG + 5, "c", 4.0), (2, BIG + 2, "b", 3.0),
                                                    (0, BIG, "a", 1.5)], prob=True)
    return tmp_path, cands, cutouts


def run_review(tmp_path, cands, cutouts, config=CONFIG):
    return review.main(["--config-json", json.dumps(config), "--task", "lens",
                        "--candidates", str(cands), "--cutouts", *map(str, cutouts),
                        "--html", str(tmp_path / "review" / "lens.html"),
                        "--sheet", str(tmp_path / "review" / "lens_grades.csv")])


def test_rgb_bands_show_the_reddest_band_as_red():
    assert images.rgb_bands(["g", "r", "i"]) == [2, 1, 0]
    assert images.rgb_bands(["i", "g", "r"]) == [0, 2, 1]
    assert images.rgb_bands(["g", "r", "i", "z"]) == [2, 1, 0]  # gri preferred
    assert images.rgb_bands(["r", "i", "z", "y"]) == [3, 2, 1]  # else the reddest three
    assert images.rgb_bands(["HSC-G", "HSC-R", "HSC-I"]) == [2, 1, 0]
    assert images.rgb_bands(["b1", "b2", "b3"]) == [2, 1, 0]  # unknown: as listed, blue first
    assert images.rgb_bands(["g", "r", "i"], ["r", "i", "g"]) == [1, 2, 0]
    assert images.rgb_bands(["r"]) == [0, 0, 0]
    assert images.rgb_bands(["g", "i"]) == [1, -1, 0]
    with pytest.raises(DataError, match="rgb_bands"):
        images.rgb_bands(["g", "r", "i"], ["z", "r", "g"])


def test_composite_takes_red_from_the_reddest_band_and_nan_as_zero():
    stamps = np.zeros((2, 3, SIZE, SIZE), np.float32)  # bands g, r, i
    stamps[0, 2, 4, 4] = 50.0  # light only in i
    stamps[1, 0, 4, 4] = 50.0  # light only in g
    stamps[:, :, 0, 0] = np.nan
    rgb = images.composite(stamps, images.rgb_bands(["g", "r", "i"]), stretch=5.0, q=8.0)
    assert rgb.shape == (2, SIZE, SIZE, 3) and rgb.dtype == np.uint8
    assert rgb[0, 4, 4, 0] == 255 and rgb[0, 4, 4, 1] == 0 and rgb[0, 4, 4, 2] == 0
    assert rgb[1, 4, 4, 2] == 255 and rgb[1, 4, 4, 0] == 0
    assert (rgb[:, 0, 0] == 0).all()  # NaN shown black, like empty sky


def test_band_scales_put_bands_on_one_ab_flux_scale():
    # The same source flux reads 10**1.2 times fainter at zero point 27 than at 30.
    np.testing.assert_allclose(images.band_scales([30.0, 27.0, np.nan], 30.0),
                               [1.0, 10**1.2, 1.0])


def test_auto_stretch_is_ten_times_the_robust_noise():
    rng = np.random.default_rng(1)
    stamps = rng.normal(0, 2.0, (20, 3, 33, 33))
    assert images.auto_stretch(stamps) == pytest.approx(20.0, rel=0.05)


def test_gallery_and_sheet_of_candidates_from_two_shards(survey):
    tmp_path, cands, cutouts = survey
    assert run_review(tmp_path, cands, cutouts) == 0
    text = (tmp_path / "review" / "lens.html").read_text()
    page = _Page()
    page.feed(text)
    assert len(page.rows) == 3 and len(page.imgs) == 3 and len(page.figures) == 3
    assert [r["data-rank"] for r in page.rows] == ["1", "2", "3"]
    for k, id_ in enumerate([BIG + 5, BIG + 2, BIG]):
        assert f'data-value="{id_}"' in text  # verbatim, not through a float
        png = decode_png(page.imgs[k]["src"])
        assert png.shape[:2] == (SIZE, SIZE)
    # index 5 is bright in band 5 % 3 = i (red), index 2 in i too, index 0 in g (blue)
    for k, channel in enumerate([0, 0, 2]):
        png = decode_png(page.imgs[k]["src"])
        assert png[4, 4, channel] == 1.0 and png[4, 4, (channel + 1) % 3] == 0.0
    types = {h.get("data-type") for h in page.heads}
    assert types == {"num", "int", "text"}
    assert "probability" in text and "http" not in text.split("<footer>")[0]  # nothing fetched
    with open(tmp_path / "review" / "lens_grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(SHEET_COLUMNS)
    assert [(r["rank"], r["index"], r["id"], r["grade"]) for r in rows] == [
        ("1", "5", str(BIG + 5), ""), ("2", "2", str(BIG + 2), ""), ("3", "0", str(BIG), "")]
    assert float(rows[0]["score"]) == 4.0


def test_the_page_shows_each_models_real_test_metrics_and_sim_to_real_gap(survey):
    tmp_path, cands, cutouts = survey
    metrics = {"models": {"lens": {
        "cnn": {"primary": True, "n_pos": 40, "n_neg": 2000, "auroc": 0.91,
                "auroc_ci": [0.88, 0.94],
                "tpr0": 0.1, "tpr10": 0.35, "simulated_test": {"auroc": 0.99},
                "sim_to_real_gap": {"auroc": 0.08}},
        "classical": {"n_pos": 40, "n_neg": 2000, "auroc": 0.95, "tpr0": 0.2, "tpr10": 0.5,
                      "simulated_test": None, "sim_to_real_gap": None}}}}
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    argv = ["--config-json", json.dumps(CONFIG), "--task", "lens", "--candidates", str(cands),
            "--cutouts", *map(str, cutouts), "--html", str(tmp_path / "m.html"),
            "--sheet", str(tmp_path / "m.csv"), "--metrics", str(path)]
    assert review.main(argv) == 0
    table = (tmp_path / "m.html").read_text().split('<table id="metrics">')[1].split("</table>")[0]
    rows = [r for r in table.split("<tr>")[2:]]
    assert "cnn (primary)" in rows[0] and "0.910 [0.880, 0.940]" in rows[0]
    assert "0.990" in rows[0] and "+0.080" in rows[0] and "40 / 2000" in rows[0]
    assert "classical" in rows[1] and "0.950" in rows[1] and rows[1].count("–") == 2
    path.write_text("{not json")
    assert review.main(argv) == 2  # a broken metrics file is named, not skipped


def test_string_ids_and_zero_points(tmp_path):
    cut = cutouts_file(tmp_path / "s0.h5", [0, 1], [b"000123", b"gal,2"], ["a", "a"],
                       zeropoint=(30.0, 30.0, 27.5))
    cands = candidates_file(tmp_path / "c.csv", [(1, "gal,2", "a", 2.0), (0, "000123", "a", 1.0)])
    out = review.read_candidates(cands, "score_lens_cnn")
    assert out.ids == ["gal,2", "000123"] and out.prob is None
    images, flags, bands, zp = review.read_stamps(out, [cut])
    assert bands == ["g", "r", "i"] and zp == [30.0, 30.0, 27.5]
    assert images[0, 1, 4, 4] == pytest.approx(100.0)  # index 1: band r, zp 30
    assert images[1, 0, 4, 4] == pytest.approx(100.0)
    assert run_review(tmp_path, cands, [cut]) == 0
    page = _Page()
    page.feed((tmp_path / "review" / "lens.html").read_text())
    assert ("data-type", "text") in [(k, v) for h in page.heads for k, v in h.items()
                                     if h.get("aria-sort") == "none"][:2]


def test_stale_or_missing_candidates_exit_2(survey, capsys):
    tmp_path, _, cutouts = survey
    stale = candidates_file(tmp_path / "stale.csv", [(2, BIG + 7, "b", 1.0)])
    assert run_review(tmp_path, stale, cutouts) == 2
    assert "stale" in capsys.readouterr().err
    missing = candidates_file(tmp_path / "missing.csv", [(2, BIG + 2, "b", 1.0),
                                                         (4, BIG + 4, "c", 0.5)])
    assert run_review(tmp_path, missing, cutouts[:1]) == 2
    assert "index 4" in capsys.readouterr().err
    assert not (tmp_path / "review" / "lens.html").exists()


def test_empty_candidate_list_gives_an_empty_page(survey):
    tmp_path, _, cutouts = survey
    empty = candidates_file(tmp_path / "empty.csv", [])
    assert run_review(tmp_path, empty, cutouts) == 0
    page = _Page()
    page.feed((tmp_path / "review" / "lens.html").read_text())
    assert page.rows == [] and page.imgs == []


# --- grading sheet read-back -------------------------------------------------------------

def fill(sheet, out, grades_, edit=None):
    with open(sheet, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row, grade in zip(rows, grades_, strict=True):
        row["grade"] = grade
    if edit:
        edit(rows)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(SHEET_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    return out


@pytest.fixture
def sheet(tmp_path):
    rows = [(i, BIG + i, "a", 10.0 - i) for i in range(10)]
    cands = candidates_file(tmp_path / "c.csv", rows)
    review.write_sheet(tmp_path / "sheet.csv", review.read_candidates(cands, "score_lens_cnn"))
    return tmp_path / "sheet.csv"


def run_grades(sheet_path, filled, tmp_path):
    return grades.main(["--sheet", str(filled), "--candidates", str(sheet_path),
                        "--out", str(tmp_path / "purity.json")])


def test_grading_round_trip_purity_by_hand(sheet, tmp_path):
    filled = fill(sheet, tmp_path / "filled.csv",
                  ["A", "a", " B ", "C", "N", "N", "", "N", "n", ""])
    assert run_grades(sheet, filled, tmp_path) == 0
    res = json.loads((tmp_path / "purity.json").read_text())
    assert res["counts"] == {"A": 2, "B": 1, "C": 1, "N": 4}
    assert (res["n_rows"], res["n_graded"], res["n_ungraded"]) == (10, 8, 2)
    assert res["purity"]["A"]["value"] == pytest.approx(2 / 8)
    assert res["purity"]["A+B"]["value"] == pytest.approx(3 / 8)
    assert res["purity"]["A+B+C"]["value"] == pytest.approx(4 / 8)
    # Wilson 95 % interval of 2/8 by hand: z = 1.959964, centre (p + z^2/2n) / (1 + z^2/n)
    # = 0.331102, half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n) = 0.259623
    np.testing.assert_allclose(res["purity"]["A"]["interval"], [0.071479, 0.590725], atol=5e-6)
    lo, hi = res["purity"]["A+B+C"]["interval"]
    assert lo == pytest.approx(1 - hi)  # symmetric about 1/2
    assert res["provenance"]["step"] == "grades"


def test_wilson_interval_edges():
    assert grades.wilson_interval(0, 10, 0.95)[0] == 0.0
    assert grades.wilson_interval(10, 10, 0.95)[1] == pytest.approx(1.0)
    assert np.isnan(grades.wilson_interval(0, 0, 0.95)).all()


def test_invalid_grades_exit_2_naming_row_and_allowed(sheet, tmp_path, capsys):
    filled = fill(sheet, tmp_path / "filled.csv", ["A", "yes", "B", "", "", "", "", "", "", "D"])
    assert run_grades(sheet, filled, tmp_path) == 2
    err = capsys.readouterr().err
    assert "line 3 (rank 2" in err and "'yes'" in err and "line 11" in err
    assert "A, B, C, N" in err
    assert not (tmp_path / "purity.json").exists()


def test_rounded_or_dropped_rows_are_caught(sheet, tmp_path, capsys):
    def rounded(rows):
        rows[3]["id"] = f"{float(rows[3]['id']):.14E}"  # what a spreadsheet shows

    filled = fill(sheet, tmp_path / "f1.csv", ["A"] * 10, rounded)
    assert run_grades(sheet, filled, tmp_path) == 2
    assert "line 5 (index 3" in capsys.readouterr().err

    filled = fill(sheet, tmp_path / "f2.csv", ["A"] * 10, lambda rows: rows.pop(7))
    assert run_grades(sheet, filled, tmp_path) == 2
    assert f"index 7, id {BIG + 7}" in capsys.readouterr().err

    filled = fill(sheet, tmp_path / "f3.csv", ["A"] * 10, lambda rows: rows.append(rows[0]))
    assert run_grades(sheet, filled, tmp_path) == 2
    assert "repeats" in capsys.readouterr().err


def test_nothing_graded_exits_2(sheet, tmp_path, capsys):
    filled = fill(sheet, tmp_path / "filled.csv", [""] * 10)
    assert run_grades(sheet, filled, tmp_path) == 2
    assert "no row has a grade" in capsys.readouterr().err
