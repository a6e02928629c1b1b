"""The HTML of the review page: grading grid, larger view, sortable table (rule ``review``).

The page is one self-contained file opened from disk: its style and script are the package
data files ``page.css`` and ``page.js`` inlined, its images data URIs (:mod:`.panels`), its
ids the catalog ids as text. What a grader does is kept in the browser's localStorage under
:func:`storage_key` (every page opened from disk shares one origin, so the key names the
run and the task) and exported as a grades file (``EXPORT_COLUMNS``) that
``skysift grades`` reads back.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.resources import files

import numpy as np

from skysift.review.panels import Panels

KEYS_HELP = ("<kbd>A</kbd> certain, <kbd>B</kbd> probable, <kbd>C</kbd> possible, "
             "<kbd>N</kbd> not (each moves to the next object); <kbd>j</kbd>/<kbd>→</kbd> "
             "next, <kbd>k</kbd>/<kbd>←</kbd> previous; <kbd>u</kbd> or <kbd>ctrl-z</kbd> "
             "undo; a click on a thumbnail makes it current")


@cache
def asset(name: str) -> str:
    """The text of a package data file of :mod:`skysift.review` (page.js, page.css)."""
    return files("skysift.review").joinpath(name).read_text(encoding="utf-8")


def storage_key(config_hash: str, task: str) -> str:
    """The localStorage key of one run's (config hash) and one task's grades."""
    return f"skysift-grades/{config_hash}/{task}"


def _cell(value, text: str | None = None, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    shown = html.escape(str(value) if text is None else text)
    return f'<td{attr} data-value="{html.escape(str(value), quote=True)}">{shown}</td>'


def _num(x: float, fmt: str) -> tuple[str, str]:
    return ("", "") if not np.isfinite(x) else (repr(float(x)), format(float(x), fmt))


def _table(cands, flags: Sequence[str], blind: bool = False) -> str:
    """The sortable candidates table (one row per candidate, ``data-rank``); ``blind``:
    the position on the page instead of the rank, no score, probability or known column."""
    e = html.escape
    int_ids = all(i.lstrip("-").isdigit() and i.isascii() for i in cands.ids)
    heads = [("#" if blind else "rank", "num", ""), ("id", "int" if int_ids else "text", ""),
             ("RA (deg)", "num", ""), ("Dec (deg)", "num", "")]
    if not blind:
        heads.append(("logit", "num", "descending"))
    if cands.prob is not None and not blind:
        heads.append(("probability", "num", "descending"))
    if cands.known is not None and not blind:
        heads.append(("known", "text", "descending"))
    heads += [("flags", "text", ""), ("grade", "text", "")]
    th = "".join(
        f'<th tabindex="0" data-type="{t}"' + (f' data-first="{f}"' if f else "")
        + f' aria-sort="{"ascending" if name in ("rank", "#") else "none"}">{e(name)}</th>'
        for name, t, f in heads)
    rows = []
    for k, rank in enumerate(cands.rank):
        cells = [f'<td data-value="{rank}"><a href="#c{rank}">{rank}</a></td>',
                 _cell(cands.ids[k], cls="text"), _cell(*_num(cands.ra[k], ".6f")),
                 _cell(*_num(cands.dec[k], "+.6f"))]
        if not blind:
            cells.append(_cell(*_num(cands.score[k], ".3f")))
        if cands.prob is not None and not blind:
            cells.append(_cell(*_num(cands.prob[k], ".3g")))
        if cands.known is not None and not blind:
            cells.append(_cell("known" if cands.known[k] else "", cls="text"))
        cells += [_cell(flags[k], cls="text"), '<td class="text gradecell" data-value=""></td>']
        rows.append(f'<tr data-rank="{rank}">' + "".join(cells) + "</tr>")
    return (f'<table id="candidates">\n<thead><tr>{th}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody>\n</table>\n")


def _figures(cands, panels: Panels, flags: Sequence[str], thumb_px: int,
             blind: bool = False) -> str:
    """The grid: one figure per candidate, its larger view's images as data attributes
    (decoded only when the object is shown); ``blind``: no score, no known badge."""
    e = html.escape
    out = []
    for k, rank in enumerate(cands.rank):
        id_ = e(cands.ids[k], quote=True)
        known = cands.known is not None and bool(cands.known[k]) and not blind
        info = "" if blind else f"logit {cands.score[k]:.3f} · "
        if cands.prob is not None and not blind:
            info += f"probability {cands.prob[k]:.3g} · "
        info += f"RA {cands.ra[k]:.6f} Dec {cands.dec[k]:+.6f}"
        info += f" · flags {flags[k]}" if flags[k] else ""
        out.append(
            f'<figure id="c{rank}" data-rank="{rank}" data-index="{cands.index[k]}" '
            f'data-id="{id_}" data-known="{int(known)}" data-info="{e(info, quote=True)}" '
            f'data-deep="{panels.deep[k]}" data-strip="{panels.strips[k]}">'
            f'<div class="thumb"><img src="{panels.thumbs[k]}" alt="#{rank}, id {id_}" '
            f'width="{thumb_px}" height="{thumb_px}" loading="lazy" decoding="async"></div>'
            f"<figcaption>#{rank} {e(cands.ids[k])}<br>"
            + ("" if blind else f"logit {cands.score[k]:.2f} ")
            + '<span class="grade"></span>' + (' <span class="known">known</span>' if known
                                             else "") + "</figcaption></figure>")
    return '<div id="grid">\n' + "\n".join(out) + "\n</div>\n"


def _viewer(panels: Panels, stretch_text: str) -> str:
    """The larger view of the current object and the grading controls."""
    labels = "".join(f"<span>{html.escape(b)}</span>" for b in panels.strip_labels)
    buttons = "".join(f'<button type="button" data-grade="{g}">{g}</button>' for g in "ABCN")
    return (
        '<section id="viewer" aria-label="current object">\n'
        '<div class="panel"><div class="thumb"><img id="view-main" alt="composite"></div>'
        f"composite, page stretch {stretch_text}</div>\n"
        '<div class="panel"><div class="thumb"><img id="view-deep" alt="deep composite">'
        f"</div>composite, deep stretch {panels.deep_stretch:.4g}</div>\n"
        '<div class="panel strip"><img id="view-strip" alt="bands and residual">'
        f'<div class="labels">{labels}</div></div>\n'
        '<div id="info"><strong id="view-title"></strong> <span class="id" id="view-id"></span>'
        ' <span class="known" id="view-known" hidden>known</span><br>'
        '<span id="view-info"></span><br>grade: <span id="view-grade"></span>\n'
        '<div id="controls"><label>grader <input id="grader" size="12" '
        'placeholder="your name"></label>'
        f'<span class="gradebuttons">{buttons}</span>'
        '<button type="button" id="undo">undo</button>'
        '<button type="button" id="export">export grades</button></div>\n'
        '<label>comment<br><textarea id="comment" rows="2"></textarea></label><br>'
        '<span id="progress"></span> <span id="export-status"></span> '
        '<span id="storage-warning"></span></div>\n</section>\n')


def render_page(task: str, cands, panels: Panels, flags: Sequence[str], score_column: str,
                q: float, thumb_px: int, view_px: int, scale: tuple[float, float] | None,
                sheet_name: str, prov: Mapping, metrics_html: str = "",
                blind: Mapping[str, int] | None = None) -> str:
    """The self-contained HTML review page of one task (see the module docstring).

    cands : :class:`skysift.review.selection.Candidates`; scale : (arcsec, fraction of the
    stamp's width) of the scale bar, None without one; blind : objects per source (top,
    random, check) of a page that mixes a random sample and checks with the candidates: the
    page then shows positions, not ranks, and neither scores nor the known-lens badge.
    """
    e = html.escape
    colours = ", ".join(f"{c}={b}" for c, b in zip("RGB", panels.rgb, strict=False))
    bar = ("no scale bar (pixel scale unknown)" if scale is None
           else f"scale bar {scale[0]:g}″")
    meta = (f"{len(cands.rank)} candidates ranked by <code>{e(score_column)}</code> (logit of "
            "the task's primary model; higher is more lens-like"
            + (", probability at the stated prevalence" if cands.prob is not None else "")
            + f"). Colour composites (Lupton et al. 2004 asinh): {e(colours)}, one stretch "
            f"{panels.stretch:.4g} (image units), Q {q:g}; {bar}. Click a header to sort.")
    if blind:
        meta = (f"{len(cands.rank)} objects: the {blind.get('top', 0)} best by "
                f"<code>{e(score_column)}</code> (the task's primary model), "
                f"{blind.get('random', 0)} drawn at random in bins of score and "
                f"{blind.get('check', 0)} known lenses as checks, shuffled. Ranks, scores and "
                "which object is which stay hidden while you grade (the review step wrote "
                f"them for the pipeline to <code>{e(task)}_sample.csv</code>: do not open it "
                f"before you export). Colour composites (Lupton et al. 2004 asinh): "
                f"{e(colours)}, one stretch {panels.stretch:.4g} (image units), Q {q:g}; "
                f"{bar}. Click a header to sort.")
    grading = (f"Grade with the keys: {KEYS_HELP}. Grades stay in this browser (keyed by the "
               "run and task) until you export them; <code>skysift grades --grades "
               f"FILE... --candidates {e(sheet_name)} --out purity.json</code> combines the "
               f"exports of every grader (or <code>{e(sheet_name)}</code> filled by hand) into "
               "purity by grade.")
    page_meta = {"task": task, "run": str(prov.get("config_hash", "")),
                 "storage_key": storage_key(str(prov.get("config_hash", "")), task)}
    root = (f":root {{ --thumb-px: {thumb_px}px; --view-px: {view_px}px; "
            f"--n-strip: {len(panels.strip_labels)}; "
            + ("" if scale is None else
               f'--bar-label: "{scale[0]:g}\\2033"; --bar-frac: {100 * scale[1]:.3f}%; ')
            + "}")
    footer = " · ".join(f"{e(str(k))} {e(str(v))}" for k, v in prov.items())
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>skysift {e(task)} candidates</title>\n"
        f"<style>{asset('page.css')}\n{root}</style>\n</head>\n"
        f'<body class="{"nobar" if scale is None else ""}">\n<h1>{e(task)} candidates</h1>\n'
        f"<p>{meta}</p>\n<p>{grading}</p>\n"
        + _viewer(panels, f"{panels.stretch:.4g}")
        + _figures(cands, panels, flags, thumb_px, bool(blind))
        + metrics_html + _table(cands, flags, bool(blind))
        + f"<footer>{footer}</footer>\n"
        + '<script type="application/json" id="skysift-meta">'
        + json.dumps(page_meta).replace("</", "<\\/") + "</script>\n"
        + f"<script>{asset('page.js')}</script>\n</body>\n</html>\n")
