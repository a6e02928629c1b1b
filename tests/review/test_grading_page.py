"""The grading page as written: what its script reads (ids verbatim, the storage key of the
run and task), the larger view's images (bands, deep composite, the shared lens residual),
the scale bar and the known-lens badge. The page in a real browser: tests/workflow."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import h5py
import numpy as np
import pytest
from PIL import Image
from test_review import BIG, CONFIG, SIZE, candidates_file, cutouts_file

from skysift.config import load
from skysift.io import config_hash
from skysift.review import gallery, page, panels
from skysift.stamps import display as images
from skysift.stamps.residual import lens_residual, residual_bands


def png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def build(tmp_path, known=None, pixscale=0.25, config=CONFIG):
    """A page of three candidates from one cutouts file; returns (html text, figures)."""
    cut = cutouts_file(tmp_path / "s0.h5", [0, 1, 2], [BIG, BIG + 1, BIG + 2], ["a"] * 3)
    if pixscale is not None:
        with h5py.File(cut, "a") as fh:
            fh.attrs["pixscale_arcsec"] = pixscale
    cands = candidates_file(tmp_path / "c.csv", [(2, BIG + 2, "a", 3.0), (0, BIG, "a", 2.0),
                                                 (1, BIG + 1, "a", 1.0)])
    if known is not None:
        with open(cands, newline="") as fh:
            rows = list(csv.reader(fh))
        rows[0].append("known_lens")
        for row, flag in zip(rows[1:], known, strict=True):
            row.append(flag)
        with open(cands, "w", newline="") as fh:
            csv.writer(fh).writerows(rows)
    html_path = tmp_path / "lens.html"
    assert gallery.main(["--config-json", json.dumps(config), "--task", "lens", "--candidates",
                         str(cands), "--cutouts", str(cut), "--html", str(html_path),
                         "--sheet", str(tmp_path / "sheet.csv")]) == 0
    text = html_path.read_text()
    figs = [dict(re.findall(r'(data-[a-z]+)="([^"]*)"', f))
            for f in re.findall(r"<figure [^>]*>", text)]
    return text, figs


def test_page_carries_ids_verbatim_and_a_storage_key_per_run_and_task(tmp_path):
    text, figs = build(tmp_path)
    assert [f["data-id"] for f in figs] == [str(BIG + 2), str(BIG), str(BIG + 1)]
    assert [f["data-index"] for f in figs] == ["2", "0", "1"]
    meta = json.loads(re.search(r'<script type="application/json" id="skysift-meta">(.*?)'
                                r"</script>", text).group(1))
    run = config_hash(load(json_text=json.dumps(CONFIG)))
    assert meta == {"task": "lens", "run": run, "storage_key": f"skysift-grades/{run}/lens"}
    assert page.storage_key(run, "merger") != page.storage_key(run, "lens")
    # the script and style are the package data files, inlined: the page fetches nothing
    assert page.asset("page.js") in text and page.asset("page.css") in text
    assert not re.search(r"""(src|href)=["']?(https?:|file:|/)""", text)


def test_larger_view_has_each_band_a_deep_composite_and_the_shared_lens_residual(tmp_path):
    _, figs = build(tmp_path)
    cut = h5py.File(tmp_path / "s0.h5", "r")
    stamps = cut["images"][()][[2, 0, 1]]  # rank order
    stretch = images.auto_stretch(stamps)
    strip = np.stack([png(f["data-strip"]) for f in figs])
    assert strip.shape == (3, SIZE, 4 * SIZE)  # g, r, i, residual side by side, grey
    np.testing.assert_array_equal(strip[:, :, :3 * SIZE].reshape(3, SIZE, 3, SIZE)
                                  .transpose(0, 2, 1, 3), images.grey(stamps, stretch, 8.0))
    blue, red = residual_bands(["g", "r", "i"])
    core = 0.5 / 0.25  # review.residual_core_arcsec / pixel scale
    np.testing.assert_array_equal(strip[:, :, 3 * SIZE:], images.signed_grey(
        lens_residual(stamps, blue, red, core), stretch, 8.0))
    deep = np.stack([png(f["data-deep"]) for f in figs])
    np.testing.assert_array_equal(deep, images.composite(
        stamps, images.rgb_bands(["g", "r", "i"]), 0.25 * stretch, 8.0))


def test_no_residual_for_other_tasks_and_no_bar_without_pixel_scale(tmp_path):
    text, figs = build(tmp_path, pixscale=None, config={**CONFIG, "review": {
        "residual_tasks": ["merger"]}})
    assert png(figs[0]["data-strip"]).shape == (SIZE, 3 * SIZE)  # bands only
    assert "--bar-label: " not in text and 'class="nobar"' in text
    assert "no scale bar" in text


def test_scale_bar_is_a_round_length_from_the_pixel_scale(tmp_path):
    assert panels.scale_bar(0.2, 48) == (2.0, pytest.approx(2.0 / 9.6))  # under a third
    assert panels.scale_bar(0.168, 64) == (2.0, pytest.approx(2.0 / 10.752))
    assert panels.scale_bar(0.05, 32) == (0.5, pytest.approx(0.5 / 1.6))
    assert panels.scale_bar(None, 48) is None
    text, _ = build(tmp_path)  # 9 pixels of 0.25": 2.25" wide, a 0.5" bar
    assert '--bar-label: "0.5\\2033"' in text and "--bar-frac: 22.222%" in text


def test_known_lenses_get_a_badge_when_the_column_exists(tmp_path):
    text, figs = build(tmp_path, known=["True", "", "0"])
    assert [f["data-known"] for f in figs] == ["1", "0", "0"]
    assert text.count('<span class="known">known</span>') == 1
    assert ">known</th>" in text
    text, figs = build(tmp_path)
    assert {f["data-known"] for f in figs} == {"0"} and ">known</th>" not in text
