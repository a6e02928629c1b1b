"""Candidate review: a self-contained HTML gallery and a grading sheet per task (rule ``review``).

For the ranked candidates of ``results/candidates/{task}.csv`` (gather) the raw flux stamps
are read back from ``results/cutouts/{shard}.h5``, shown as Lupton et al. (2004) asinh colour
composites (``astropy.visualization.make_lupton_rgb``; the reddest band shown as red) embedded
as base64 PNG data URIs, in ``results/review/{task}.html``: a table sortable by every column
(plain JavaScript, nothing fetched) and a grid of thumbnails in the table's order. Beside it
``{task}_grades.csv``, the sheet a person fills with A/B/C/N that ``skysift.review.grades`` reads
back into purity by grade.
"""

from __future__ import annotations

import csv
import html
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skysift import cli
from skysift.errors import DataError
from skysift.io import atomic_output, open_h5, provenance, read_attr_json
from skysift.modelspec import primary_specs
from skysift.review.images import (
    auto_stretch,
    band_scales,
    composite,
    png_data_uri,
    rgb_bands,
)
from skysift.review.summary import metrics_table, task_metrics
from skysift.stamps.flags import FLAG_BITS
from skysift.survey.grades import SHEET_COLUMNS

log = logging.getLogger(__name__)



@dataclass
class Candidates:
    """The ranked candidates of one task, ids kept verbatim as text."""

    rank: np.ndarray    # (n,) int64, 1-based
    index: np.ndarray   # (n,) int64 catalog row
    ids: list[str]      # (n,) the catalog id exactly as gather wrote it
    ra: np.ndarray      # (n,) float64 degrees
    dec: np.ndarray     # (n,) float64 degrees
    score: np.ndarray   # (n,) float64 logit of the primary model
    prob: np.ndarray | None  # (n,) prevalence-corrected probability, when gather wrote one
    tile: list[str] | None   # (n,) the object's tile, when present














def _column(rows: list[dict], name: str, path: Path, kind):
    try:
        return np.array([kind(r[name]) for r in rows])
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path}: column '{name}' missing or malformed ({exc}); "
                        "re-run gather (snakemake --forcerun gather)") from None


def read_candidates(path: str | Path, score_column: str, prob_columns: Sequence[str] = ()
                    ) -> Candidates:
    """Read a candidate list (gather), ids verbatim as text.

    ``prob_columns``: names of a probability column to show, the first present is used.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: candidate list not found; run gather (snakemake {path})")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        names = reader.fieldnames or []
    missing = [c for c in ("rank", "index", "id", "ra", "dec") if c not in names]
    if missing:
        raise DataError(f"{path}: columns {missing} missing; re-run gather "
                        "(snakemake --forcerun gather)")
    if score_column not in names:
        raise DataError(f"{path}: no column '{score_column}' (the task's primary model); "
                        "re-run gather with the current models (snakemake --forcerun gather)")
    prob = next((c for c in prob_columns if c in names), None)
    return Candidates(
        rank=_column(rows, "rank", path, int).astype(np.int64).reshape(-1),
        index=_column(rows, "index", path, int).astype(np.int64).reshape(-1),
        ids=[r["id"] for r in rows],
        ra=_column(rows, "ra", path, float).astype(np.float64).reshape(-1),
        dec=_column(rows, "dec", path, float).astype(np.float64).reshape(-1),
        score=_column(rows, score_column, path, float).astype(np.float64).reshape(-1),
        prob=None if prob is None else _column(rows, prob, path, float).reshape(-1),
        tile=[r["tile"] for r in rows] if "tile" in names else None)


def _id_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_stamps(cands: Candidates, cutouts: Sequence[str | Path]
                ) -> tuple[np.ndarray, np.ndarray, list[str], list[float]]:
    """The raw stamps of the candidates, found by catalog ``index`` in the cutouts files.

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
            scale = band_scales(read_attr_json(fh, "zeropoint"), zeropoints[0])
            dest = [where[int(i)] for i in fh["index"][rows]]
            for k, file_id in zip(dest, fh["id"][rows], strict=True):
                if _id_text(file_id) != cands.ids[k]:
                    raise DataError(f"{path}: catalog index {cands.index[k]} has id "
                                    f"{_id_text(file_id)!r}, the candidate list says "
                                    f"{cands.ids[k]!r}; stale files: re-run gather and review")
            images[dest] = fh["images"][rows] * scale[None, :, None, None].astype(np.float32)
            flags[dest] = fh["flags"][rows]
            found[dest] = True
    if n and not found.all():
        k = int(np.flatnonzero(~found)[0])
        raise DataError(f"{int((~found).sum())} candidates (e.g. index {cands.index[k]}, id "
                        f"{cands.ids[k]}) are in no cutouts file given; pass every "
                        "results/cutouts/*.h5, or re-run gather")
    if images is None:
        return np.zeros((0, 0, 0, 0), np.float32), np.zeros(0, np.uint8), [], []
    return images, flags, bands, zeropoints


def flag_names(flags: int) -> str:
    """Names of the bits set in one object's flags, e.g. 'EDGE,MASKED'."""
    return ",".join(name for name, bit in FLAG_BITS.items() if int(flags) & bit)


def write_sheet(path: str | Path, cands: Candidates) -> None:
    """The grading sheet (``SHEET_COLUMNS``, grade empty), atomically; ids verbatim."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(SHEET_COLUMNS)
        for k in range(len(cands.rank)):
            writer.writerow([int(cands.rank[k]), int(cands.index[k]), cands.ids[k],
                             repr(float(cands.ra[k])), repr(float(cands.dec[k])),
                             repr(float(cands.score[k])), ""])


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
td.text { text-align: left; font-family: monospace; }
th { cursor: pointer; user-select: none; background: #f0f0f0; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
#grid { display: flex; flex-wrap: wrap; gap: 0.6em; margin-top: 1.5em; }
figure { margin: 0; font-size: 0.75em; text-align: center; }
figure img { image-rendering: pixelated; display: block; background: #000; }
footer { margin-top: 2em; font-size: 0.75em; color: #666; }
"""

# Plain JavaScript, nothing fetched: a click on a header sorts the rows by that column
# (numbers numerically, integer ids exactly as BigInt, missing values last, ties by rank)
# and re-orders the thumbnails to follow; a second click reverses the order.
_SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("candidates");
  var body = table.tBodies[0], grid = document.getElementById("grid");
  var heads = table.tHead.rows[0].cells;
  function value(row, col, type) {
    var v = row.cells[col].getAttribute("data-value");
    if (v === null || v === "") return null;
    if (type === "num") return parseFloat(v);
    if (type === "int") return BigInt(v);
    return v;
  }
  function sortBy(col) {
    var th = heads[col], type = th.getAttribute("data-type");
    var now = th.getAttribute("aria-sort");
    var dir = now === "ascending" ? "descending" : now === "descending" ? "ascending"
      : (th.getAttribute("data-first") || "ascending");
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = value(r, col, type), b = value(s, col, type), c = 0;
      if (a === null || b === null) c = (a === null) - (b === null);
      else c = sign * (a < b ? -1 : a > b ? 1 : 0);
      return c || (Number(r.getAttribute("data-rank")) - Number(s.getAttribute("data-rank")));
    });
    rows.forEach(function (row) {
      body.appendChild(row);
      var fig = document.getElementById("c" + row.getAttribute("data-rank"));
      if (fig) grid.appendChild(fig);
    });
    for (var k = 0; k < heads.length; k++) heads[k].setAttribute("aria-sort", "none");
    th.setAttribute("aria-sort", dir);
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () { sortBy(col); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(col); }
    });
  });
})();
"""


def _cell(value, text: str | None = None, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    shown = html.escape(str(value) if text is None else text)
    return f'<td{attr} data-value="{html.escape(str(value), quote=True)}">{shown}</td>'


def _num(x: float, fmt: str) -> tuple[str, str]:
    return ("", "") if not np.isfinite(x) else (repr(float(x)), format(float(x), fmt))


def render_page(task: str, cands: Candidates, uris: Sequence[str], flags: Sequence[str],
                score_column: str, rgb: Sequence[str], stretch: float, q: float,
                thumb_px: int, sheet_name: str, prov: Mapping, metrics_html: str = "") -> str:
    """The self-contained HTML gallery of one task (see the module docstring)."""
    e = html.escape
    int_ids = all(i.lstrip("-").isdigit() and i.isascii() for i in cands.ids)
    heads = [("rank", "num", ""), ("id", "int" if int_ids else "text", ""),
             ("RA (deg)", "num", ""), ("Dec (deg)", "num", ""),
             ("logit", "num", "descending")]
    if cands.prob is not None:
        heads.append(("probability", "num", "descending"))
    heads.append(("flags", "text", ""))
    th = "".join(
        f'<th tabindex="0" data-type="{t}"' + (f' data-first="{f}"' if f else "")
        + f' aria-sort="{"ascending" if name == "rank" else "none"}">{e(name)}</th>'
        for name, t, f in heads)
    rows, figures = [], []
    for k, rank in enumerate(cands.rank):
        cells = [f'<td data-value="{rank}"><a href="#c{rank}">{rank}</a></td>',
                 _cell(cands.ids[k], cls="text"), _cell(*_num(cands.ra[k], ".6f")),
                 _cell(*_num(cands.dec[k], "+.6f")), _cell(*_num(cands.score[k], ".3f"))]
        if cands.prob is not None:
            cells.append(_cell(*_num(cands.prob[k], ".3g")))
        cells.append(_cell(flags[k], cls="text"))
        rows.append(f'<tr data-rank="{rank}">' + "".join(cells) + "</tr>")
        alt = e(f"rank {rank}, id {cands.ids[k]}", quote=True)
        figures.append(
            f'<figure id="c{rank}" data-rank="{rank}"><img src="{uris[k]}" alt="{alt}" '
            f'width="{thumb_px}" height="{thumb_px}"><figcaption>#{rank} '
            f"{e(cands.ids[k])}<br>logit {cands.score[k]:.2f}</figcaption></figure>")
    colours = ", ".join(f"{c}={b}" for c, b in zip("RGB", rgb, strict=False))
    meta = (f"{len(rows)} candidates ranked by <code>{e(score_column)}</code> (logit of the "
            "task's primary model; higher is more lens-like"
            + (", probability at the stated prevalence" if cands.prob is not None else "")
            + f"). Colour composites (Lupton et al. 2004 asinh): {e(colours)}, "
            f"stretch {stretch:.4g} (image units), Q {q:g}. Click a header to sort.")
    grading = (f"To grade: copy <code>{e(sheet_name)}</code> to <code>filled.csv</code> and "
               "fill its column grade: A certain, B probable, C possible, N not a lens "
               "(empty: not graded); keep ids as text. Then <code>skysift grades "
               f"--sheet filled.csv --candidates {e(sheet_name)} --out purity.json</code> "
               "reports purity by grade.")
    footer = " · ".join(f"{e(str(k))} {e(str(v))}" for k, v in prov.items())
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>skysift {e(task)} candidates</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<h1>{e(task)} candidates</h1>\n<p>{meta}</p>\n<p>{grading}</p>\n"
        + metrics_html
        + f'<table id="candidates">\n<thead><tr>{th}</tr></thead>\n<tbody>\n'
        + "\n".join(rows) + "\n</tbody>\n</table>\n"
        + '<div id="grid">\n' + "\n".join(figures) + "\n</div>\n"
        + f"<footer>{footer}</footer>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def review_task(config: Mapping, task: str, candidates: str | Path,
                cutouts: Sequence[str | Path], html_out: str | Path,
                sheet_out: str | Path, metrics: str | Path | None = None) -> int:
    """Write one task's gallery and grading sheet; returns the number of candidates.
    ``metrics`` (results/metrics.json) adds the models' test metrics and sim→real gaps."""
    spec = primary_specs(config)[task]
    opts = config["review"]
    cands = read_candidates(candidates, spec.column,
                            (spec.column.replace("score_", "prob_", 1), f"prob_{task}"))
    images, flags, bands, _ = read_stamps(cands, cutouts)
    uris, order, stretch = [], [], float("nan")
    if len(cands.rank):
        order = rgb_bands(bands, opts["rgb_bands"])
        stretch = (auto_stretch(images) if opts["stretch"] == "auto"
                   else float(opts["stretch"]))
        rgb = composite(images, order, stretch, opts["q"], opts["minimum"])
        uris = [png_data_uri(im) for im in rgb]
    shown = ["mean" if i < 0 else bands[i] for i in order]
    page = render_page(
        task=task, cands=cands, uris=uris, flags=[flag_names(f) for f in flags],
        score_column=spec.column, rgb=shown, stretch=stretch, q=opts["q"],
        thumb_px=opts["thumb_px"], sheet_name=Path(sheet_out).name,
        prov=provenance(config, step="review", task=task),
        metrics_html=metrics_table(task_metrics(metrics, task)))
    with atomic_output(html_out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    write_sheet(sheet_out, cands)
    return len(cands.rank)


def parser():
    """The ``skysift review`` argument parser."""
    p = cli.parser("HTML gallery and grading sheet of one task's ranked candidates.")
    p.add_argument("--task", required=True, help="task name (config tasks[].name)")
    p.add_argument("--candidates", required=True, help="results/candidates/{task}.csv")
    p.add_argument("--cutouts", nargs="+", required=True, help="results/cutouts/*.h5")
    p.add_argument("--html", required=True, help="gallery, results/review/{task}.html")
    p.add_argument("--sheet", required=True, help="grading sheet, results/review/{task}_grades.csv")
    p.add_argument("--metrics", default=None,
                   help="results/metrics.json: each model's test metrics and sim→real gap")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the review CLI; returns the exit code."""
    def body(args) -> int:
        t0 = time.perf_counter()
        n = review_task(cli.load_config(args), args.task, args.candidates, args.cutouts,
                        args.html, args.sheet, args.metrics)
        seconds = time.perf_counter() - t0
        log.info("%s: %d candidates reviewed in %.1f s (%.0f stamps/s) -> %s, %s", args.task,
                 n, seconds, n / max(seconds, 1e-9), args.html, args.sheet)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
