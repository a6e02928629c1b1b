"""Candidate review on the tiny run: the gallery per task, in a real headless browser (Debian's
chromium through selenium), and the `snakemake --report` that embeds it with the config.

Each page holds the top K, a random sample in bins of score and (lens page) known lenses as
checks, shuffled (review.random_fraction, n_checks; results/review/{task}_sample.csv), so
the page's objects are read from the sample file, in page order."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser

import pytest
from conftest import REPO, TINY, run_env, snakemake_cmd

from skysift import config
from skysift.modelspec import primary_specs

TASKS = ("lens", "merger")
TOP_K = 10  # infer.top_k of tests/workflow/tiny.yaml
N_RANDOM = 3  # ceil(TOP_K x review.random_fraction 0.2 / 0.8), at least one per non-empty bin
N_CHECKS = {"lens": 2, "merger": 2}  # review.n_checks: known lenses; labelled test mergers
STAMP_PIX = 32  # cutouts.stamp_size_pix of tests/workflow/tiny.yaml
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.rows, self._body = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "img" and "src" in dict(attrs):  # thumbnails; the larger view's are scripted
            self.imgs.append(dict(attrs))
        elif tag == "tbody":
            self._body = True
        elif tag == "tr" and self._body and "data-rank" in dict(attrs):  # a candidate
            self.rows.append(dict(attrs))

    def handle_endtag(self, tag):
        self._body = self._body and tag != "tbody"


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _sample(tiny_run, task):
    """The page's objects in page order (results/review/{task}_sample.csv)."""
    return _csv(tiny_run / "results" / "review" / f"{task}_sample.csv")


@pytest.mark.parametrize("task", TASKS)
def test_gallery_has_k_rows_and_images_and_a_matching_sheet(tiny_run, task):
    cands = _csv(tiny_run / "results" / "candidates" / f"{task}.csv")
    assert len(cands) == TOP_K
    sample = _sample(tiny_run, task)
    n_page = TOP_K + N_RANDOM + N_CHECKS[task]
    sources = [r["source"] for r in sample]
    assert len(sample) == n_page and sources.count("random") == N_RANDOM
    assert sources.count("check") == N_CHECKS[task]
    assert all(r["known"] == "1" for r in sample if r["source"] == "check")
    assert [(r["index"], r["id"]) for r in sample if r["source"] == "top"] != [
        (c["index"], c["id"]) for c in cands]  # shuffled among the others
    assert sorted((r["index"], r["id"]) for r in sample if r["source"] == "top") == sorted(
        (c["index"], c["id"]) for c in cands)  # the top K, all of it
    rank = primary_specs(config.load(TINY))[task].column.replace("score_", "rank_", 1)
    ranked = sum(int(r[rank]) > 0 for r in _csv(tiny_run / "results" / "catalog.csv"))
    assert TOP_K + sum(float(r["weight"]) for r in sample if r["source"] == "random") == (
        pytest.approx(ranked))  # the weights sum to the scored catalog outside the top K
    text = (tiny_run / "results" / "review" / f"{task}.html").read_text()
    page = _Page()
    page.feed(text)
    assert len(page.rows) == n_page and len(page.imgs) == n_page
    assert [r["data-rank"] for r in page.rows] == [r["position"] for r in sample]
    assert "logit" not in text.split('<div id="grid">')[1].split('<table id="metrics">')[0]
    metrics = json.loads((tiny_run / "results" / "metrics.json").read_text())["models"][task]
    table = text.split('<table id="metrics">')[1].split("</table>")[0]
    assert table.count("<tr>") == len(metrics) + 1  # the header and one row per model
    for name, m in metrics.items():
        assert name in table and (m['auroc'] is None or f"{m['auroc']:.3f}" in table)
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.imgs)
    assert not re.search(r"""(src|href)=["']?https?:""", text)  # self-contained
    for row in sample:
        assert f'data-value="{row["id"]}"' in text  # ids verbatim (int64 above 2**53)
    sheet = _csv(tiny_run / "results" / "review" / f"{task}_grades.csv")
    assert [(r["rank"], r["index"], r["id"]) for r in sheet] == [
        (r["position"], r["index"], r["id"]) for r in sample]
    assert all(r["grade"] == "" and r["score"] == "" for r in sheet)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by selenium; installed by tests/browser/install.sh."""
    if os.environ.get("SKYSIFT_NO_BROWSER") == "1":
        pytest.skip("SKYSIFT_NO_BROWSER=1: browser test of the review gallery skipped")
    proc = subprocess.run(["bash", str(REPO / "tests" / "browser" / "install.sh")],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail("chromium/chromedriver unavailable (tests/browser/install.sh failed; it "
                    f"needs root and apt):\n{proc.stderr}\nSet SKYSIFT_NO_BROWSER=1 to skip "
                    "this test on a machine without them.")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]' -c constraints.txt")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager never downloads anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--allow-file-access-from-files", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _column(driver, col):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#candidates tbody tr'))"
        ".map(r => r.cells[arguments[0]].getAttribute('data-value'));", col)


def _header(driver, name):
    heads = driver.find_elements("css selector", "#candidates thead th")
    names = [h.text.rstrip(" \u25b2\u25bc") for h in heads]
    return names.index(name), heads[names.index(name)]


@pytest.mark.browser
@pytest.mark.parametrize("task", TASKS)
def test_gallery_in_headless_chromium_images_load_and_sorting_works(tiny_run, browser, task):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((tiny_run / "results" / "review" / f"{task}.html").as_uri())
    # thumbnails load lazily, near the viewport: bring the last one in and wait for all
    browser.execute_script("document.querySelector('#grid figure:last-child').scrollIntoView();")
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('#grid img')).every(i => i.complete);"))
    widths = browser.execute_script(
        "return Array.from(document.querySelectorAll('#grid img'))"
        ".map(i => i.complete ? i.naturalWidth : -1);")
    n_page = len(_sample(tiny_run, task))
    assert widths == [STAMP_PIX] * n_page  # every PNG decoded, at the stamp's size

    col, head = _header(browser, "RA (deg)")
    ras = [float(v) for v in _column(browser, col)]
    head.click()  # first click: ascending, numerically
    asc = [float(v) for v in _column(browser, col)]
    assert asc == sorted(ras)
    assert head.get_attribute("aria-sort") == "ascending"
    head.click()
    desc = [float(v) for v in _column(browser, col)]
    assert desc == sorted(ras, reverse=True) and asc != desc
    assert head.get_attribute("aria-sort") == "descending"
    grid = browser.execute_script(
        "return Array.from(document.querySelectorAll('#grid figure')).map(f => f.dataset.rank);")
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#candidates tbody tr'))"
        ".map(r => r.dataset.rank);")
    assert grid == rows  # thumbnails follow the table

    pos_col, pos_head = _header(browser, "#")  # the position on the page (no rank shown)
    pos_head.click()  # a column not sorted yet sorts ascending first
    assert [int(v) for v in _column(browser, pos_col)] == list(range(1, n_page + 1))
    assert head.get_attribute("aria-sort") == "none"
    pos_head.click()
    assert [int(v) for v in _column(browser, pos_col)] == list(range(n_page, 0, -1))
    names = [h.text for h in browser.find_elements("css selector", "#candidates thead th")]
    assert not {"logit", "rank", "known", "probability"} & {n.rstrip(" \u25b2\u25bc")
                                                            for n in names}


# --- grading in the browser: keys, kept across a reload, exported, read back -------------

#: Keys pressed on the lens page, the current object first #1 (docs/review.md): four
#: grades, u undoes N (back on #4), C grades it; ←/→ and k/j move; six more grades (A and N
#: typed upper case); ctrl-z undoes the last (#10) and n gives it again.
GRADED = ["A", "B", "C", "C", "A", "N", "N", "B", "A", "N"]  # by position on the page
GRADER = "ann o'hara"
COMMENT = 'arc at 2 o\'clock, "faint"'


def _keys(browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    chain = ActionChains(browser).send_keys("abcn", "u", "c", Keys.ARROW_LEFT,
                                            Keys.ARROW_RIGHT, "k", "j", "ANnban")
    chain.key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).send_keys("n").perform()


def _page_grades(browser):
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#grid figure')).map(f => "
        "[f.dataset.id, f.querySelector('.grade').textContent]);")


@pytest.fixture(scope="module")
def graded(tiny_run, browser):
    """The lens page graded with the keyboard from a clean state: what the page shows."""
    browser.get((tiny_run / "results" / "review" / "lens.html").as_uri())
    browser.execute_script("localStorage.removeItem(window.skysift.storageKey);")
    browser.refresh()
    browser.find_element("id", "grader").send_keys(GRADER)
    browser.find_element("css selector", "#grid figure").click()  # current: #1, page focus
    _keys(browser)
    browser.find_element("css selector", "#grid figure:nth-child(3)").click()
    browser.find_element("id", "comment").send_keys(COMMENT)
    return {"grades": _page_grades(browser),
            "progress": browser.find_element("id", "progress").text,
            "table": browser.execute_script(
                "return Array.from(document.querySelectorAll('#candidates tbody tr'))"
                ".map(r => r.querySelector('td.gradecell').dataset.value);")}


@pytest.mark.browser
def test_ten_objects_graded_with_the_keyboard(tiny_run, graded):
    ids = [r["id"] for r in _sample(tiny_run, "lens")]
    n_page = len(ids)
    assert graded["grades"] == [[i, g] for i, g in
                                zip(ids, GRADED + [""] * (n_page - len(GRADED)), strict=True)]
    assert graded["table"][:len(GRADED)] == GRADED
    assert graded["progress"] == f"{len(GRADED)} of {n_page} graded"


@pytest.mark.browser
def test_reload_keeps_grades_comment_and_grader_per_run_and_task(tiny_run, browser, graded):
    browser.refresh()
    assert _page_grades(browser) == graded["grades"]
    assert browser.find_element("id", "grader").get_attribute("value") == GRADER
    browser.find_element("css selector", "#grid figure:nth-child(3)").click()
    assert browser.find_element("id", "comment").get_attribute("value") == COMMENT
    key = browser.execute_script("return window.skysift.storageKey;")
    footer = browser.find_element("css selector", "footer").text
    browser.get((tiny_run / "results" / "review" / "merger.html").as_uri())  # same origin
    assert browser.find_element("id", "grader").get_attribute("value") == ""  # its own state
    n_merger = len(_sample(tiny_run, "merger"))
    assert browser.find_element("id", "progress").text == f"0 of {n_merger} graded"
    assert key.endswith("/lens") and key.split("/")[1] in footer  # the run's config hash


@pytest.fixture(scope="module")
def exported(tiny_run, browser, graded, tmp_path_factory):
    """The file the export button downloads (chromium's download folder set over CDP)."""
    folder = tmp_path_factory.mktemp("downloads")
    browser.execute_cdp_cmd("Browser.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(folder)})
    browser.get((tiny_run / "results" / "review" / "lens.html").as_uri())
    browser.find_element("id", "export").click()
    path = folder / "lens_grades_ann_o_hara.csv"
    for _ in range(100):
        if path.exists():
            break
        time.sleep(0.1)
    return path


@pytest.mark.browser
def test_export_button_downloads_the_grades_file(tiny_run, exported):
    rows = _csv(exported)
    sample = _sample(tiny_run, "lens")[:len(GRADED)]
    assert list(rows[0]) == ["rank", "index", "id", "grade", "grader", "comment", "timestamp",
                             "task", "run"]
    assert [(r["rank"], r["index"], r["id"]) for r in rows] == [
        (c["position"], c["index"], c["id"]) for c in sample]  # ids verbatim, as text
    assert [r["grade"] for r in rows] == GRADED and {r["grader"] for r in rows} == {GRADER}
    assert [r["comment"] for r in rows] == ["", "", COMMENT] + [""] * (len(GRADED) - 3)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["timestamp"])
               for r in rows)
    page = (tiny_run / "results" / "review" / "lens.html").read_text()
    assert {r["task"] for r in rows} == {"lens"} and f"config_hash {rows[0]['run']}" in page


@pytest.mark.browser
def test_skysift_grades_reads_the_export_back(tiny_run, exported, tmp_path):
    second = tmp_path / "bob.csv"  # a second grader: the export with bob's name and N for A
    text = exported.read_text().replace(f",{GRADER},", ",bob,").replace(",A,bob,", ",N,bob,")
    second.write_text(text)
    out = tmp_path / "purity.json"
    proc = subprocess.run(
        [sys.executable, "-m", "skysift", "grades", "--grades", str(exported), str(second),
         "--candidates", str(tiny_run / "results" / "review" / "lens_grades.csv"),
         "--out", str(out)], capture_output=True, text=True, env=run_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    n = len(GRADED)
    assert res["graders"] == {GRADER: n, "bob": n}
    # A with N: mean 1.5, C; the others agree
    assert res["counts"] == {"A": 0, "B": 2, "C": 5, "N": 3}
    assert res["agreement"]["n_disagree_more_than_one_step"] == GRADED.count("A")
    assert res["purity"]["A+B+C"]["value"] == pytest.approx(7 / n)


@pytest.mark.browser
def test_skysift_grades_joins_the_export_to_the_sample(tiny_run, exported, tmp_path):
    """With the page's sample file: purity by grade of the top K alone, and the random
    sample's and the checks' figures from the objects graded among the first ten."""
    out = tmp_path / "purity.json"
    review = tiny_run / "results" / "review"
    proc = subprocess.run(
        [sys.executable, "-m", "skysift", "grades", "--grades", str(exported), "--candidates",
         str(review / "lens_grades.csv"), "--sample", str(review / "lens_sample.csv"),
         "--out", str(out)], capture_output=True, text=True, env=run_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    sources = [r["source"] for r in _sample(tiny_run, "lens")[:len(GRADED)]]
    top = [g for g, s in zip(GRADED, sources, strict=True) if s == "top"]
    assert res["purity_over"] == "top" and res["n_graded"] == len(top)
    assert res["counts"] == {g: top.count(g) for g in "ABCN"}
    est = res["sample"]
    assert est["n_graded"] == {s: sources.count(s) for s in ("top", "random", "check")}
    assert est["checks"]["n_graded"] == sources.count("check")
    assert est["checks"]["n_called_lens"] == sum(
        g in "AB" for g, s in zip(GRADED, sources, strict=True) if s == "check")


def test_snakemake_report_embeds_gallery_and_config(tiny_run, tmp_path):
    out = tmp_path / "report.html"
    proc = subprocess.run(snakemake_cmd(tiny_run, "--report", str(out)), capture_output=True,
                          text=True, env=run_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    gallery = (tiny_run / "results" / "review" / "lens.html").read_bytes()
    embedded = [base64.b64decode(m) for m in
                re.findall(r"data:text/html;[^,\"]*base64,([A-Za-z0-9+/=]+)", text)]
    assert gallery in embedded  # the whole page, self-contained in the report
    assert "Candidates" in text and "Training" in text
    # the run's effective config (workflow/report/workflow.rst): tiny.yaml's keys, defaults
    assert "n_galaxies_per_tile" in text and "thumb_px" in text


def test_pages_read_stamps_cut_after_ranking_equal_to_the_cutouts(tiny_run):
    """Rule review_stamps cut exactly the objects of every page (results/review/stamps.h5)
    from the tiles after gather; they are the cutouts' pixels and flags for the same objects
    (the tiny run cuts every shard: all are training shards), and review read no cutouts."""
    import h5py
    import numpy as np

    results = tiny_run / "results"
    pages = {int(r["index"]) for task in TASKS for r in _sample(tiny_run, task)}
    with h5py.File(results / "review" / "stamps.h5") as fh:
        index, images, flags = fh["index"][()], fh["images"][()], fh["flags"][()]
        assert fh["images"].shape[1:] == (3, STAMP_PIX, STAMP_PIX)
    assert index.tolist() == sorted(pages)
    found = 0
    for path in sorted((results / "cutouts").glob("s*.h5")):
        with h5py.File(path) as fh:
            rows = np.flatnonzero(np.isin(fh["index"][()], index))
            at = np.searchsorted(index, fh["index"][()][rows])
            assert np.array_equal(images[at], fh["images"][rows], equal_nan=True)
            assert np.array_equal(flags[at], fh["flags"][rows])
            found += rows.size
    assert found == index.size
    text = "\n".join(p.read_text() for p in (tiny_run / ".snakemake" / "log").glob("*.log"))
    jobs = [block.split("\n\n")[0] for block in re.split(r"^(?:local)?rule review:$", text,
                                                       flags=re.M)[1:]]
    assert len(jobs) >= len(TASKS), text[-3000:]  # a job per task, in every run's log
    assert all("results/review/stamps.h5" in job and "results/cutouts" not in job
               for job in jobs), jobs
