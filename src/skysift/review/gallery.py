"""Candidate review: a grading page and a grading sheet per task (rule ``review``).

For the ranked candidates of ``results/candidates/{task}.csv`` (gather) the raw flux stamps
are read back from ``results/review/stamps.h5`` (cut from the tiles after ranking by
:mod:`skysift.review.stamps`; or from ``results/cutouts/{shard}.h5``) and shown in
``results/review/{task}.html`` (:mod:`.page`, images :mod:`.panels`): a grid of Lupton et
al. (2004) asinh colour composites at one stretch with a scale bar, graded in the browser
with the keyboard and exported as a grades file; a larger view of the current object (each
band, a composite at a deeper stretch, the lens residual); a table sortable by every column.
Beside it ``{task}_grades.csv``, the sheet a person may fill by hand instead. ``skysift
grades`` (:mod:`skysift.review.grades`) reads either back into purity by grade. Given the
catalog (``--catalog``), the page also holds a random sample in bins of score and known
lenses as checks, shuffled with the candidates and without ranks or scores (:mod:`.sample`),
and each page object's source and sampling weight go to ``--sample``
(``{task}_sample.csv``).
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from skysift import cli
from skysift.errors import ConfigError, DataError
from skysift.io import atomic_output, open_h5, provenance, read_attr_json
from skysift.modelspec import primary_specs
from skysift.review.page import render_page
from skysift.review.panels import Panels, make_panels, scale_bar
from skysift.review.sample import SOURCES, read_scored_catalog, write_sample
from skysift.review.selection import (
    Candidates,
    labelled_test_positives,
    page_candidates,
    page_selection,
    read_candidates,
)
from skysift.review.summary import metrics_table, task_metrics
from skysift.stamps.display import band_scales
from skysift.stamps.flags import FLAG_BITS
from skysift.survey.grades import SHEET_COLUMNS

log = logging.getLogger(__name__)

def _id_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_stamps(cands: Candidates, cutouts: Sequence[str | Path]
                ) -> tuple[np.ndarray, np.ndarray, list[str], list[float]]:
    """The raw stamps of the candidates, found by catalog ``index`` in the stamps the review
    cut after ranking (``results/review/stamps.h5``, :mod:`skysift.review.stamps`) or in
    cutouts files (``results/cutouts/{shard}.h5``).

    Files whose tiles hold no candidate are skipped when the list has a ``tile`` column.
    Returns images (n, band, s, s) float32 on one AB flux scale (that of the first file's
    first band, :func:`band_scales`), flags (n,) uint8, bands, and the first file's zero
    points (band,). Raises DataError when a candidate is missing or its id differs
    (stale files).
    """
    n = len(cands.index)
    where = {int(i): k for k, i in enumerate(cands.index)}
    images = flags = bands = zeropoints = None
    found = np.zeros(n, bool)
    wanted_tiles = set(cands.tile) if cands.tile is not None else None
    for path in cutouts:
        with open_h5(path, required=("images", "index", "id", "flags")) as fh:
            if wanted_tiles is not None and not wanted_tiles & set(read_attr_json(fh, "tiles")):
                continue
            rows = np.flatnonzero(np.isin(fh["index"][()], cands.index))
            if not rows.size:
                continue
            file_bands = list(read_attr_json(fh, "bands"))
            if bands is None:
                bands = file_bands
                zeropoints = list(read_attr_json(fh, "zeropoint"))
                images = np.full((n, len(bands)) + fh["images"].shape[2:], np.nan, np.float32)
                flags = np.zeros(n, np.uint8)
            elif file_bands != bands:
                raise DataError(f"{path}: bands {file_bands} differ from {bands} of the other "
                                "cutouts files; re-run cutouts for every shard")
            if "zeropoint" in fh:  # results/review/stamps.h5: each object's tile's
                scale = band_scales(fh["zeropoint"][rows], zeropoints[0])[:, :, None, None]
            else:  # a cutouts file: its shard's median
                scale = band_scales(read_attr_json(fh, "zeropoint"), zeropoints[0])[
                    None, :, None, None]
            dest = [where[int(i)] for i in fh["index"][rows]]
            for k, file_id in zip(dest, fh["id"][rows], strict=True):
                if _id_text(file_id) != cands.ids[k]:
                    raise DataError(f"{path}: catalog index {cands.index[k]} has id "
                                    f"{_id_text(file_id)!r}, the candidate list says "
                                    f"{cands.ids[k]!r}; stale files: re-run gather and review")
            images[dest] = fh["images"][rows] * scale.astype(np.float32)
            flags[dest] = fh["flags"][rows]
            found[dest] = True
    if n and not found.all():
        k = int(np.flatnonzero(~found)[0])
        raise DataError(f"{int((~found).sum())} candidates (e.g. index {cands.index[k]}, id "
                        f"{cands.ids[k]}) are in no stamps file given; pass "
                        "results/review/stamps.h5 (rule review_stamps) or every "
                        "results/cutouts/*.h5, or re-run gather")
    if images is None:
        return np.zeros((0, 0, 0, 0), np.float32), np.zeros(0, np.uint8), [], []
    return images, flags, bands, zeropoints


def flag_names(flags: int) -> str:
    """Names of the bits set in one object's flags, e.g. 'EDGE,MASKED'."""
    return ",".join(name for name, bit in FLAG_BITS.items() if int(flags) & bit)


def write_sheet(path: str | Path, cands: Candidates, blind: bool = False) -> None:
    """The grading sheet (``SHEET_COLUMNS``, grade empty), atomically; ids verbatim.
    ``blind``: a page with a random sample and checks: ``rank`` is the position on the page
    and ``score`` is left empty, so the sheet does not tell a grader the source."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(SHEET_COLUMNS)
        for k in range(len(cands.rank)):
            writer.writerow([int(cands.rank[k]), int(cands.index[k]), cands.ids[k],
                             repr(float(cands.ra[k])), repr(float(cands.dec[k])),
                             "" if blind else repr(float(cands.score[k])), ""])


def read_pixscale(cutouts: Sequence[str | Path]) -> float | None:
    """The pixel scale (arcsec) of the first cutouts file, None when it records none."""
    if not cutouts:
        return None
    with open_h5(cutouts[0]) as fh:
        value = fh.attrs.get("pixscale_arcsec")
    return float(value) if value is not None and np.isfinite(value) else None


def _panels(config: Mapping, task: str, images: np.ndarray, bands: list[str],
            pixscale: float | None) -> Panels:
    """The page's images; the lens residual for ``review.residual_tasks``."""
    opts = config["review"]
    if not len(images):
        return Panels([], [], [], [], [], float("nan"), float("nan"))
    size = images.shape[-1]
    core_pix = (opts["residual_core_arcsec"] / pixscale if pixscale
                else 0.1 * size)  # pixel scale unknown: a tenth of the stamp
    return make_panels(images, bands, opts,
                       core_pix if task in opts["residual_tasks"] else None)


def review_task(config: Mapping, task: str, candidates: str | Path,
                cutouts: Sequence[str | Path], html_out: str | Path,
                sheet_out: str | Path, metrics: str | Path | None = None,
                catalog: str | Path | None = None, sample_out: str | Path | None = None,
                split: str | Path | None = None) -> tuple[int, dict]:
    """Write one task's grading page and sheet; returns the number of page objects and the
    count per source. ``metrics`` (results/metrics.json) adds the models' test metrics and
    sim→real gaps; ``catalog`` (results/catalog.fits) with ``sample_out`` adds the random
    sample and checks (:mod:`.sample`), shuffled with the candidates and written to
    ``sample_out``: the page then hides ranks, scores and the known-lens badge. ``split``
    (results/split.fits) lets labelled test-split positives serve as the checks where the
    catalog flags no known lens."""
    spec = primary_specs(config)[task]
    opts = config["review"]
    cands = read_candidates(candidates, spec.column,
                            (spec.column.replace("score_", "prob_", 1), f"prob_{task}"))
    sel = None
    if catalog is not None:
        cat = read_scored_catalog(catalog, spec.column)
        sel = page_selection(config, task, cands, cat,
                             labelled_test_positives(config, task, catalog, split))
        cands = page_candidates(sel, cat)
    blind = sel is not None and bool(np.any(sel.source != "top"))
    images, flags, bands, _ = read_stamps(cands, cutouts)
    pixscale = read_pixscale(cutouts)
    panels = _panels(config, task, images, bands, pixscale)
    page = render_page(
        task=task, cands=cands, panels=panels, flags=[flag_names(f) for f in flags],
        score_column=spec.column, q=opts["q"], thumb_px=opts["thumb_px"],
        view_px=opts["view_px"],
        scale=scale_bar(pixscale, images.shape[-1] if len(images) else 0),
        sheet_name=Path(sheet_out).name, prov=provenance(config, step="review", task=task),
        metrics_html=metrics_table(task_metrics(metrics, task)),
        blind=None if not blind else {s: int(np.sum(sel.source == s)) for s in SOURCES})
    with atomic_output(html_out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    write_sheet(sheet_out, cands, blind)
    if sel is not None and sample_out is not None:
        write_sample(sample_out, sel, cat)
    counts = ({s: int(np.sum(sel.source == s)) for s in SOURCES} if sel is not None
              else {"top": len(cands.rank)})
    return len(cands.rank), counts


def parser():
    """The ``skysift review`` argument parser."""
    p = cli.parser("HTML gallery and grading sheet of one task's ranked candidates.")
    p.add_argument("--task", required=True, help="task name (config tasks[].name)")
    p.add_argument("--candidates", required=True, help="results/candidates/{task}.csv")
    p.add_argument("--stamps", "--cutouts", dest="cutouts", nargs="+", required=True,
                   help="results/review/stamps.h5 (rule review_stamps), or "
                        "results/cutouts/*.h5")
    p.add_argument("--html", required=True, help="gallery, results/review/{task}.html")
    p.add_argument("--sheet", required=True, help="grading sheet, results/review/{task}_grades.csv")
    p.add_argument("--catalog", default=None,
                   help="results/catalog.fits: draw the random sample and checks from it "
                        "(review.random_fraction, score_bins, n_checks); with --sample")
    p.add_argument("--sample", default=None,
                   help="results/review/{task}_sample.csv to write: each page object's "
                        "source (top, random, check), score bin and sampling weight")
    p.add_argument("--metrics", default=None,
                   help="results/metrics.json: each model's test metrics and sim→real gap")
    p.add_argument("--split", default=None,
                   help="results/split.fits: labelled test-split positives are the checks "
                        "where the catalog flags no known lens (survey.labels)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the review CLI; returns the exit code."""
    def body(args) -> int:
        if (args.catalog is None) != (args.sample is None):
            raise ConfigError("skysift review: pass --catalog and --sample together (the "
                              "random sample is drawn from the one and written to the other)")
        t0 = time.perf_counter()
        n, counts = review_task(cli.load_config(args), args.task, args.candidates,
                                args.cutouts, args.html, args.sheet, args.metrics,
                                args.catalog, args.sample, args.split)
        seconds = time.perf_counter() - t0
        log.info("%s: %d objects reviewed (%s) in %.1f s (%.0f stamps/s) -> %s, %s%s",
                 args.task, n, " ".join(f"{k}={v}" for k, v in counts.items()), seconds,
                 n / max(seconds, 1e-9), args.html, args.sheet,
                 f", {args.sample}" if args.sample else "")
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
