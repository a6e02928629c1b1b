"""``skysift check``: read every tile header, the catalog and the labels; report every problem.

Runs first in the DAG, before any heavy work: it lists the tiles, bands, footprints,
objects per tile, objects off every tile, and every problem it finds (all of them, not
just the first). Errors (a missing mask file, an unreadable FITS file, an HDU without a
celestial WCS, bands on different pixel grids, a missing catalog or labels column, label
values other than 0, 1 or empty, duplicate or float ids, no object on any tile) exit with
status 2 and write no report; warnings (a tile missing a band file, whose objects the index
rejects; missing PSF/zero-point keys, objects off every tile, tiles without objects) are
listed in the report. With ``strict`` the rejects are errors too.

It also writes what it read from the headers to a summary (``--headers``) from which the
survey index rebuilds every tile exactly, so a run reads each header once.

    skysift check --config-json J --report results/check.json \
        [--headers results/tile_headers.json] [--strict]
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from skysift import cli
from skysift.errors import SkysiftError, SurveyError
from skysift.ids import match_ids
from skysift.io import provenance, read_table, require_columns, write_json
from skysift.survey.catalog import read_catalog
from skysift.survey.files import find_tiles, missing_band_message
from skysift.survey.footprints import REASON_MISSING_BAND, assign_to_complete, footprint_radec
from skysift.survey.headers import write_header_summary
from skysift.survey.known import is_lenscat, read_known_lenses
from skysift.survey.labels import clean_labels
from skysift.survey.shards import make_shards
from skysift.survey.tiles import read_tile_header

log = logging.getLogger(__name__)


class Problems:
    """Problems found so far: ``error`` and ``warning`` entries naming where and the fix."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, level: str, message: str) -> None:
        self.items.append({"level": level, "message": message})

    @property
    def errors(self) -> list[str]:
        return [p["message"] for p in self.items if p["level"] == "error"]


def _check_tiles(config: dict, problems: Problems) -> list:
    survey = config["survey"]
    try:
        tiles, missing = find_tiles(survey["tiles"], survey["bands"])
    except SurveyError as exc:
        problems.add("error", str(exc))
        return []
    if not tiles:
        problems.add("error", f"no tile files match survey.tiles '{survey['tiles']}' (bands "
                     f"{survey['bands']}); fix the pattern or survey.bands")
    for tile, bands in missing.items():
        # a missing band file rejects the tile's objects (the index does), fatal when strict
        level = "error" if config.get("strict") or len(missing) == len(tiles) else "warning"
        message = missing_band_message(survey["tiles"], tile, bands)
        if level == "warning":
            message += (f"; its objects are rejected ({REASON_MISSING_BAND}{','.join(bands)}); "
                        "strict: true makes this an error")
        problems.add(level, message)
    headers = []
    for tile in cli.progress(tiles, desc="headers"):
        try:  # a tile missing bands is read from those it has: its footprint rejects objects
            headers.append(read_tile_header(
                config, tile, [b for b in survey["bands"] if b not in missing.get(tile, ())]))
        except SurveyError as exc:
            problems.add("error", str(exc))
    both = [h.tile for h in headers if h.cd_and_cdelt]
    if both:  # astropy would say it once per tile; once is what a user needs
        log.info("%d of %d tiles (e.g. %s) have both CDi_j and CDELTi header keys: the CD "
                 "matrix gives the pixel scale and CDELT is ignored (FITS WCS standard)",
                 len(both), len(headers), both[0])
    for h in headers:
        for key, values in ((survey["psf_fwhm_key"], h.psf_fwhm_arcsec),
                            (survey["zeropoint_key"], h.zeropoint)):
            absent = [b for b, v in zip(h.bands, values, strict=True) if math.isnan(v)]
            if absent:
                problems.add("warning", f"tile {h.tile}: no numeric header key {key} in bands "
                             f"{absent}; recorded as NaN")
    scales = np.array([h.pixscale_arcsec for h in headers])
    if scales.size and scales.max() > 1.01 * scales.min():
        problems.add("warning", f"pixel scales differ between tiles ({scales.min():.4g} to "
                     f"{scales.max():.4g} arcsec); stamps of a fixed size in pixels then cover "
                     "different sky areas")
    return headers


def _check_labels(config: dict, ids: np.ndarray | None, problems: Problems) -> dict:
    survey = config["survey"]
    path = survey["labels"]
    if not path:
        return {}
    try:
        table = read_table(path, "labels table")
        require_columns(table, {"labels_id_column": survey["labels_id_column"]}, path, "survey")
    except SurveyError as exc:
        problems.add("error", str(exc))
        return {}
    out = {"n_rows": len(table), "tasks": {}}
    for i, task in enumerate(config["tasks"]):  # the values the training set accepts
        try:
            require_columns(table, {"label": task["label"]}, path, f"tasks[{i}]")
            present, labels = clean_labels(table[task["label"]], f"{path}: column "
                                           f"'{task['label']}' (tasks[{i}].label)")
        except SurveyError as exc:
            problems.add("error", str(exc))
            continue
        n_pos = int(labels[present].sum())
        out["tasks"][task["name"]] = {"n_positive": n_pos,
                                      "n_negative": int(present.sum()) - n_pos,
                                      "n_unlabelled": int((~present).sum())}
    label_ids = np.asarray(table[survey["labels_id_column"]])
    if label_ids.dtype.kind == "f":
        problems.add("error", f"{path}: id column '{survey['labels_id_column']}' "
                     "(survey.labels_id_column) holds floats; ids must be integers or strings")
        return out
    if ids is not None:
        n_found = int((match_ids(label_ids, ids) >= 0).sum())
        out["n_in_catalog"] = n_found
        if n_found < len(table):
            level = "error" if config["strict"] else "warning"
            problems.add(level, f"{path}: {len(table) - n_found} of {len(table)} label ids "
                         "are not in the catalog (survey.labels_id_column vs survey.columns.id)")
    return out


def _check_known_lenses(config: dict, problems: Problems) -> dict:
    survey = config["survey"]
    path = survey["known_lenses"]
    if not path:
        return {}
    if is_lenscat(config):  # shipped: checked (sha256) as it is read
        try:
            return read_known_lenses(config).provenance
        except SkysiftError as exc:
            problems.add("error", str(exc))
            return {}
    columns = {k: v for k, v in survey["known_lenses_columns"].items() if v}
    try:
        table = read_table(path, "known-lens table")
        require_columns(table, columns, path, "survey.known_lenses_columns")
    except SurveyError as exc:
        problems.add("error", str(exc))
        return {}
    coords = [np.asarray(table[columns[k]]) for k in ("ra", "dec")]
    if any(c.dtype.kind not in "iuf" for c in coords):
        problems.add("error", f"{path}: columns {columns['ra']}/{columns['dec']} "
                     "(survey.known_lenses_columns.ra/dec) must hold degrees as numbers; "
                     "convert sexagesimal positions to degrees")
        return {}
    with np.errstate(invalid="ignore"):
        bad = int((~(np.isfinite(coords[0]) & np.isfinite(coords[1])
                     & (np.abs(coords[1]) <= 90))).sum())
    if bad:
        problems.add("warning", f"{path}: {bad} known lenses have unusable coordinates; they "
                     "are reported as bad-position")
    return {"n_rows": len(table), "n_bad_position": bad}


def run_checks(config: dict) -> tuple[dict, Problems]:
    """Check the survey of ``config``: (report dict, problems). Reads headers, not pixels.

    The tile headers read are ``report["_headers"]`` (not written to the report).
    """
    problems = Problems()
    headers = _check_tiles(config, problems)
    try:
        catalog = read_catalog(config)
    except SurveyError as exc:
        problems.add("error", str(exc))
        catalog = None
    report: dict = {"bands": list(config["survey"]["bands"]), "n_tiles": len(headers)}
    counts = np.zeros(len(headers), np.int64)
    if catalog is not None:
        report["n_catalog"] = len(catalog.ids)
        if headers:
            missing = [[b for b in report["bands"] if b not in h.bands] for h in headers]
            tile_idx, _, _, reason = assign_to_complete(
                catalog.ra_deg, catalog.dec_deg, [(h.wcs, h.shape) for h in headers], missing)
            counts = np.bincount(tile_idx[tile_idx >= 0], minlength=len(headers))
            by_reason = Counter(reason[tile_idx < 0].tolist())
            report.update(n_assigned=int(counts.sum()), rejects=dict(by_reason))
            for why, n in sorted(by_reason.items()):
                level = "error" if config.get("strict") else "warning"
                problems.add(level, f"{catalog.path}: {n} objects rejected: {why}")
            if not counts.sum():
                problems.add("error", f"{catalog.path}: no object lies on any tile; check "
                             "survey.columns.ra/dec (degrees) against the tile footprints")
            empty = [h.tile for h, c in zip(headers, counts, strict=True) if c == 0]
            if empty:
                problems.add("warning", f"{len(empty)} tiles hold no catalog object (e.g. "
                             f"{empty[:5]}); they are skipped")
    report["labels"] = _check_labels(config, catalog.ids if catalog else None, problems)
    report["known_lenses"] = _check_known_lenses(config, problems)
    report["tiles"] = [{"tile": h.tile, "shape": list(h.shape),
                        "pixscale_arcsec": h.pixscale_arcsec,
                        "psf_fwhm_arcsec": h.psf_fwhm_arcsec, "zeropoint": h.zeropoint,
                        "footprint_radec": footprint_radec(h.wcs, h.shape), "n_objects": int(c),
                        "missing_bands": [b for b in report["bands"] if b not in h.bands]}
                       for h, c in zip(headers, counts, strict=True)]
    report["n_shards"] = len(make_shards([h.tile for h in headers], counts.tolist(),
                                         config["index"]["tiles_per_shard"]))
    report["problems"] = problems.items
    report["_headers"] = headers
    return report, problems


def _body(args) -> int:
    start = time.perf_counter()
    config = cli.load_config(args)
    report, problems = run_checks(config)
    for p in problems.items:
        (log.error if p["level"] == "error" else log.warning)("%s", p["message"])
    if problems.errors:
        raise SkysiftError(f"check found {len(problems.errors)} errors (listed above); fix "
                           "them before running the pipeline")
    headers = report.pop("_headers")
    report["provenance"] = provenance(config, step="check")
    if args.headers:
        n_exact = write_header_summary(args.headers, headers, config)
        if n_exact < len(headers):
            log.info("%d of %d tiles have a WCS the header summary cannot hold exactly; the "
                     "index reads their headers again", len(headers) - n_exact, len(headers))
    if args.report:
        write_json(args.report, report)
    log.info("check: %d tiles x %d bands, %d catalog objects, %d on tiles, %d off, %d shards, "
             "%d warnings in %.1f s", report["n_tiles"], len(report["bands"]),
             report.get("n_catalog", 0), report.get("n_assigned", 0),
             sum(report.get("rejects", {}).values()), report["n_shards"],
             len(problems.items), time.perf_counter() - start)
    return 0


def parser():
    """Command-line parser of ``skysift check``."""
    p = cli.parser("Check tiles, bands, catalog and labels before any heavy work; report all "
                   "problems.")
    p.add_argument("--report", help="JSON report to write when there is no error, e.g. "
                   "results/check.json")
    p.add_argument("--headers", help="header summary to write for the survey index, e.g. "
                   "results/tile_headers.json (docs/formats.md)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``skysift check``; 0 when no error was found, 2 otherwise."""
    return cli.run(_body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
