"""Candidate review on the tiny run: the gallery per task, in a real headless browser (Debian's
chromium through selenium), and the `snakemake --report` that embeds it with the config."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import subprocess
from html.parser import HTMLParser

import pytest
from conftest import REPO, run_env, snakemake_cmd

TASKS = ("lens", "merger")
TOP_K = 10  # infer.top_k of tests/workflow/tiny.yaml
STAMP_PIX = 32  # cutouts.stamp_size_pix of tests/workflow/tiny.yaml
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.rows, self._body = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
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


@pytest.mark.parametrize("task", TASKS)
def test_gallery_has_k_rows_and_images_and_a_matching_sheet(tiny_run, task):
    cands = _csv(tiny_run / "results" / "candidates" / f"{task}.csv")
    assert len(cands) == TOP_K
    text = (tiny_run / "results" / "review" / f"{task}.html").read_text()
    page = _Page()
    page.feed(text)
    assert len(page.rows) == TOP_K and len(page.imgs) == TOP_K
    metrics = json.loads((tiny_run / "results" / "metrics.json").read_text())["models"][task]
    table = text.split('<table id="metrics">')[1].split("</table>")[0]
    assert table.count("<tr>") == len(metrics) + 1  # the header and one row per model
    for name, m in metrics.items():
        assert name in table and (m['auroc'] is None or f"{m['auroc']:.3f}" in table)
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.imgs)
    assert not re.search(r"""(src|href)=["']?https?:""", text)  # self-contained
    for row in cands:
        assert f'data-value="{row["id"]}"' in text  # ids verbatim (int64 above 2**53)
    sheet = _csv(tiny_run / "results" / "review" / f"{task}_grades.csv")
    assert [(r["rank"], r["index"], r["id"]) for r in sheet] == [
        (r["rank"], r["index"], r["id"]) for r in cands]
    assert all(r["grade"] == "" for r in sheet)


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
                "--allow-file-access-from-files"):
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
    browser.get((tiny_run / "results" / "review" / f"{task}.html").as_uri())
    widths = browser.execute_script(
        "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1);")
    assert widths == [STAMP_PIX] * TOP_K  # every PNG decoded, at the stamp's size

    col, head = _header(browser, "logit")
    scores = [float(v) for v in _column(browser, col)]
    head.click()  # first click on a score: highest first
    desc = [float(v) for v in _column(browser, col)]
    assert desc == sorted(scores, reverse=True)
    assert head.get_attribute("aria-sort") == "descending"
    head.click()
    asc = [float(v) for v in _column(browser, col)]
    assert asc == sorted(scores) and asc != desc
    assert head.get_attribute("aria-sort") == "ascending"
    grid = browser.execute_script(
        "return Array.from(document.querySelectorAll('#grid figure')).map(f => f.dataset.rank);")
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#candidates tbody tr'))"
        ".map(r => r.dataset.rank);")
    assert grid == rows  # thumbnails follow the table

    rank_col, rank_head = _header(browser, "rank")
    rank_head.click()  # a column not sorted yet sorts ascending first
    assert [int(v) for v in _column(browser, rank_col)] == list(range(1, TOP_K + 1))
    assert head.get_attribute("aria-sort") == "none"
    rank_head.click()
    assert [int(v) for v in _column(browser, rank_col)] == list(range(TOP_K, 0, -1))

    ra_col, ra_head = _header(browser, "RA (deg)")
    ra_head.click()
    ras = [float(v) for v in _column(browser, ra_col)]
    assert ras == sorted(ras)  # numerically


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
