"""survey2 run: the pipeline on a survey2 directory, scored on the half it has no labels for.

Writes WORK/survey2.yaml (a user's config: ``survey.kind: files`` and the HSC-like names;
everything else the defaults of WORK/config/config.yaml, a copy of the checkout's config/,
unless ``--set``), runs ``snakemake --snakefile Snakefile --directory WORK`` and compares
WORK/results/catalog.fits with DIR/truth.fits on the objects that DIR/labels.fits does not
list. Imports skysift.metrics only (never skysift.sim).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import yaml
from astropy.table import Table

ROOT = Path(__file__).resolve().parents[1]
BANDS = ["g", "r", "i", "z", "y"]
TASK_TRUTH = {"lens": "is_lens", "merger": "is_merger"}  #: task name -> truth.fits column
N_BOOT, CI, BOOT_SEED = 500, 0.95, 2  #: stratified bootstrap of every interval
MATCH_BIN_MAG = 0.5  #: i-magnitude bins of the brightness-matched AUROC


def parse_sets(sets: list[str]) -> dict:
    """Nested config dict of ``key.sub=value`` overrides (values parsed as YAML)."""
    out: dict = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"survey2 run: --set {item!r} is not KEY=VALUE")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def merge(base: dict, extra: dict) -> dict:
    """``base`` updated recursively by ``extra`` (dicts merged, other values replaced)."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def write_config(survey: Path, work: Path, sets: list[str]) -> Path:
    """WORK/survey2.yaml for ``survey``, with the overrides ``sets``; copies config/ too."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config", work / "config", dirs_exist_ok=True)
    cfg = {"survey": {
        "kind": "files", "tiles": str(survey / "tiles" / "calexp-HSC-{band}-{tile}.fits.fz"),
        "bands": BANDS, "catalog": str(survey / "catalog.fits"),
        "columns": {"id": "object_id", "ra": "i_ra", "dec": "i_dec"},
        "labels": str(survey / "labels.fits"), "labels_id_column": "object_id",
        "psf_fwhm_key": "SEEING", "zeropoint_key": "MAGZERO", "known_lenses": None}}
    cfg = merge(cfg, parse_sets(sets))
    path = work / "survey2.yaml"
    path.write_text("# survey2 benchmark (benchmarks/survey2.py run)\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_snakemake(work: Path, config: Path, cores: int) -> int:
    """Run the checkout's Snakefile in ``work`` with ``config``; its exit status."""
    venv_bin = ROOT / ".venv" / "bin"
    bin_dir = venv_bin if venv_bin.is_dir() else Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory",
           str(work), "--configfile", str(config), "--cores", str(cores)]
    print("survey2 run:", " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=env, check=False).returncode


def scored_half(survey: Path) -> Table:
    """Truth rows of the objects that labels.fits does not list (the unlabelled tiles)."""
    truth = Table.read(survey / "truth.fits")
    labelled = np.asarray(Table.read(survey / "labels.fits")["object_id"], np.int64)
    keep = ~np.isin(np.asarray(truth["object_id"], np.int64), labelled)
    return truth[keep]


def _metrics() -> ModuleType:
    """skysift.metrics of this checkout's src/ (the one skysift module used here)."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    import skysift.metrics

    return skysift.metrics


def catalog_imag(survey: Path, ids: np.ndarray) -> np.ndarray:
    """(n,) i_cmodel_mag of the survey catalog for ``ids`` (n,) int64; NaN (no positive
    flux measured) becomes one magnitude fainter than the faintest."""
    cat = Table.read(survey / "catalog.fits")
    sid = np.asarray(cat["object_id"], np.int64)
    order = np.argsort(sid)
    mag = np.asarray(cat["i_cmodel_mag"], float)[order][np.searchsorted(sid[order], ids)]
    return np.where(np.isfinite(mag), mag, np.nanmax(mag) + 1.0)


def score_columns(catalog: Table, ids: np.ndarray) -> tuple[dict, np.ndarray]:
    """{(task, model): (n,) logits} of the pipeline's ``catalog`` for ``ids`` (n,) int64,
    NaN where an id is not in it, and (n,) bool: found."""
    cat_ids = np.asarray(catalog["id"], np.int64)
    order = np.argsort(cat_ids)
    pos = np.clip(np.searchsorted(cat_ids[order], ids), 0, len(order) - 1)
    found = cat_ids[order][pos] == ids
    rows = order[pos]
    out = {}
    for name in catalog.colnames:
        if not name.startswith("score_") or name.startswith("score_std_"):
            continue
        task, _, model = name[len("score_"):].partition("_")
        if task in TASK_TRUTH:
            out[(task, model)] = np.where(found, np.asarray(catalog[name], float)[rows], np.nan)
    return out, found


def matched_auroc(scores: np.ndarray, labels: np.ndarray, mag: np.ndarray,
                  width: float = MATCH_BIN_MAG) -> tuple[float, int]:
    """AUROC with the negatives reweighted to the positives' histogram of ``mag`` (bins of
    ``width`` mag): what a ranking owes to more than brightness. Arrays (n,); returns the
    value and the number of positives left out (in bins without negatives)."""
    bins = np.floor(mag / width).astype(np.int64)
    pos, neg = labels == 1, labels == 0
    edges, inverse = np.unique(bins, return_inverse=True)
    n_pos = np.bincount(inverse[pos], minlength=edges.size)
    n_neg = np.bincount(inverse[neg], minlength=edges.size)
    keep = ~pos | (n_neg[inverse] > 0)
    w = (n_pos / np.maximum(n_neg, 1))[inverse[keep & neg]]
    value = _metrics().auroc_weighted(scores[keep], labels[keep], w)
    return value, int((pos & ~keep).sum())


def compute_metrics(survey: Path, work: Path) -> dict:
    """Scores of the pipeline on the unlabelled half against the truth.

    Parameters
    ----------
    survey : directory written by ``survey2.py make``.
    work : the run's directory (results/catalog.fits).

    Returns
    -------
    {task: {model: {auroc, tpr0, tpr10: {value, lo, hi}, auroc_matched_imag,
    n_pos_unmatched, n_pos, n_neg, n_nan}}} under ``metrics``, with counts and settings.
    Intervals: 95 % stratified bootstrap, 500 resamples, fixed seed
    (:func:`skysift.metrics.bootstrap`). Model ``imag`` ranks by i brightness alone.
    Objects missing from the results or with NaN scores are counted and left out.
    """
    bootstrap = _metrics().bootstrap
    truth = scored_half(survey)
    ids = np.asarray(truth["object_id"], np.int64)
    scores, found = score_columns(Table.read(work / "results" / "catalog.fits"), ids)
    imag = catalog_imag(survey, ids)
    for task in {t for t, _ in scores} or set(TASK_TRUTH):
        scores[(task, "imag")] = -imag  # brightness alone: the baseline to beat
    result = {"survey": str(survey), "work": str(work), "n_unlabelled": int(len(ids)),
              "n_missing_from_results": int((~found).sum()), "n_boot": N_BOOT, "ci": CI,
              "bootstrap_seed": BOOT_SEED, "match_bin_mag": MATCH_BIN_MAG, "metrics": {}}
    for (task, model), s in sorted(scores.items()):
        ok = np.isfinite(s)
        y = np.asarray(truth[TASK_TRUTH[task]], int)[ok]
        m = bootstrap(s[ok], y, N_BOOT, CI, BOOT_SEED)
        matched, dropped = matched_auroc(s[ok], y, imag[ok])
        m.update(auroc_matched_imag=matched, n_pos_unmatched=dropped, n_pos=int(y.sum()),
                 n_neg=int((1 - y).sum()), n_nan=int((~ok).sum()))
        result["metrics"].setdefault(task, {})[model] = m
    return result


def print_table(result: dict) -> None:
    """The metrics as a Markdown table (value [lo, hi])."""
    print(f"\nsurvey2: unlabelled half, {result['n_unlabelled']} objects "
          f"({result['n_missing_from_results']} missing from the results catalog); "
          f"95 % stratified bootstrap, {result['n_boot']} resamples")
    print("| task | model | n_pos | n_neg | AUROC | TPR0 | TPR10 | AUROC at matched i |")
    print("|---|---|---|---|---|---|---|---|")
    for task, models in result["metrics"].items():
        for model, m in models.items():
            cells = [f"{m[k]['value']:.3f} [{m[k]['lo']:.3f}, {m[k]['hi']:.3f}]"
                     for k in ("auroc", "tpr0", "tpr10")]
            print(f"| {task} | {model} | {m['n_pos']} | {m['n_neg']} | " + " | ".join(cells)
                  + f" | {m['auroc_matched_imag']:.3f} |")


def run_pipeline(survey: Path, work: Path, sets: list[str], cores: int,
                 metrics_only: bool = False) -> int:
    """``survey2.py run``.

    Parameters
    ----------
    survey : directory written by ``survey2.py make``.
    work : snakemake working directory (WORK/survey2.yaml, WORK/config/, results/, ...).
    sets : ``key=value`` config overrides.
    cores : snakemake ``--cores``.
    metrics_only : skip snakemake and score WORK/results/catalog.fits as it is.

    Returns
    -------
    Exit status: snakemake's when it fails, else 0 after printing the metrics table and
    writing WORK/survey2_metrics.json.
    """
    if not (survey / "truth.fits").exists():
        raise SystemExit(f"survey2 run: {survey} holds no truth.fits; run `survey2.py make`")
    if not metrics_only:
        status = run_snakemake(work, write_config(survey, work, sets), cores)
        if status:
            print(f"survey2 run: snakemake failed with status {status}", file=sys.stderr)
            return status
    result = compute_metrics(survey, work)
    print_table(result)
    (work / "survey2_metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {work / 'survey2_metrics.json'}")
    return 0
