"""Training set of one task (rule ``training_set``): labels, simulations, or both.

``training_set.use`` is the one knob. ``labels`` (and any task that is neither
``training_set.lens_task`` nor ``merger_task``): the labelled objects of ``survey.labels``,
joined exactly onto the stamps' ids (:mod:`skysift.survey.labels`), streamed into
``results/train/{task}.h5`` (docs/formats.md) one chunk at a time; objects without a label
are counted and left out. ``simulated`` / ``both``: positives simulated into the survey's own
raw cutouts plus real and simulated hard negatives (:mod:`skysift.sim.trainsim`). Either way
every row carries the split of its object (a hash of its id) and a gallery PNG of random
examples of every class is written beside it.

    skysift trainset --config-json J --task NAME --stamps results/stamps/*.h5 \
        --cutouts results/cutouts/*.h5 --split results/split.fits \
        --out results/train/NAME.h5 --gallery results/train/NAME.gallery.png
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from skysift import cli
from skysift.errors import DataError, SurveyError
from skysift.io import atomic_output, open_h5, provenance, read_attr_json, write_attrs
from skysift.seeds import derive_seed
from skysift.sim.mix import resolve_use, simulator_of
from skysift.sim.realism import realism
from skysift.sim.trainfile import (
    LABELLED,
    ORIGINS,
    SPLIT_NAMES,
    STAMP_DATASETS,
    ChunkAppender,
    counts_by_split,
    merge_attrs,
)
from skysift.sim.trainsim import build_simulated
from skysift.stamps.display import normalised_composite
from skysift.survey.gradelabels import READ, training_labels
from skysift.survey.labels import LabelIndex, find_task, load_labels, load_split, lookup_split

log = logging.getLogger(__name__)

@dataclass
class _Selected:
    """The labelled rows of one stamps file."""

    path: str
    n: int
    rows: np.ndarray  # (k,) row numbers in the file
    columns: dict  # flags, index, id, label of those rows


def _scan(paths: Sequence[str], labels: LabelIndex) -> tuple[list[_Selected], list[dict], tuple]:
    """First pass: per-object columns only; which rows are labelled."""
    selected, attrs, shape = [], [], None
    for path in paths:
        with open_h5(path, required=STAMP_DATASETS) as fh:
            attrs.append({k: read_attr_json(fh, k) for k in fh.attrs})
            if shape is None:
                shape = fh["images"].shape[1:]
            elif fh["images"].shape[1:] != shape:
                raise DataError(f"{path}: images have shape {fh['images'].shape[1:]} per object, "
                                f"{paths[0]} has {shape}; re-run cutouts with one config")
            ids = fh["id"][()]
            first = selected[0].columns["id"].dtype if selected else ids.dtype
            if (ids.dtype.kind in "iu") != (first.kind in "iu"):
                raise DataError(f"{path}: ids are {ids.dtype}, {paths[0]} has {first}; "
                                "re-run cutouts with one catalog")
            found, label = labels.lookup(ids)
            rows = np.flatnonzero(found)
            columns = {"flags": fh["flags"][()][rows], "index": fh["index"][()][rows],
                       "id": ids[rows], "label": label[rows]}
            selected.append(_Selected(str(path), len(ids), rows, columns))
    return selected, attrs, shape


def _check_counts(cols: dict, config: Mapping, task_name: str, task: dict) -> dict:
    """{split: {neg, pos}} of the labelled rows; raises on repeated rows or a one-class train."""
    uniq, n_seen = np.unique(cols["index"], return_counts=True)
    if (n_seen > 1).any():
        raise DataError(f"catalog rows {uniq[n_seen > 1][:5].tolist()} appear in several stamps "
                        "files; pass each tile's stamps once")
    counts = counts_by_split(cols["label"], cols["split"])
    if counts["train"]["pos"] == 0 or counts["train"]["neg"] == 0:
        raise SurveyError(
            f"task '{task_name}': the train split has {counts['train']['pos']} positives and "
            f"{counts['train']['neg']} negatives among {cols['label'].size} labelled objects "
            f"with stamps; training needs both: add labelled objects to "
            f"{config['survey']['labels']} (column '{task['label']}') or check that "
            "survey.labels_id_column holds the catalog ids")
    return counts


def _copy_stamps(appender: ChunkAppender, selected: Sequence[_Selected], chunk: int) -> None:
    """Append images and mask (k, band, s, s) of the selected rows, a file chunk at a time."""
    for sel in selected:
        if sel.rows.size == 0:
            continue
        with open_h5(sel.path, required=STAMP_DATASETS) as fh:
            for start in range(0, sel.n, chunk):
                rows = sel.rows[(sel.rows >= start) & (sel.rows < start + chunk)] - start
                if rows.size:
                    appender.append({name: fh[name][start:start + chunk][rows]
                                     for name in ("images", "mask")})


def _write_columns(fout: h5py.File, cols: dict, n_labelled: int) -> None:
    """The per-row datasets (n_labelled,) of a labels-only set: all labelled, on a galaxy."""
    for name in ("flags", "index", "id", "label", "split"):
        fout.create_dataset(name, data=cols[name])
    fout.create_dataset("origin", data=np.full(n_labelled, LABELLED, np.uint8))
    fout.create_dataset("sim", data=np.zeros(n_labelled, "S16"))
    fout.create_dataset("background", data=np.full(n_labelled, b"galaxy", "S8"))


def write_label_source(fout: h5py.File, labels: LabelIndex | None) -> None:
    """Dataset ``label_source`` (n,) of a training set: where each labelled row's label comes
    from (``labels``, ``grades:<file>``; :mod:`skysift.survey.gradelabels`), '' for the
    other rows (origin real, simulated, hard_negative); attr ``grades``: what merging the
    grades counted."""
    ids, origin = fout["id"][()], fout["origin"][()]
    source = np.full(ids.shape, "", dtype="U1")
    if labels is not None and ids.size:
        source = np.where(origin == LABELLED, labels.origin_of(ids), "")
    fout.create_dataset("label_source", data=np.char.encode(source.astype(str), "utf-8"))
    if labels is not None and labels.info:
        write_attrs(fout, {"grades": labels.info})


def build_trainset(stamp_paths: Sequence[str | Path], split_path: str | Path,
                   out_path: str | Path, config: Mapping, task_name: str,
                   labels=READ) -> dict:
    """Write ``results/train/{task}.h5`` from stamps, labels and split; return a summary.
    ``labels``: the task's :func:`training_labels` when the caller has read them.

    Returns
    -------
    dict with ``n_labelled``, ``n_unlabelled`` (stamps without a label),
    ``n_labels_without_stamp`` and ``counts`` ({split: {neg, pos}}).
    """
    task_pos, task = find_task(config, task_name)
    if labels is READ:
        labels = training_labels(config, task_pos, task)  # survey.labels and review.grades
    if labels is None:
        labels = load_labels(config, task_pos, task)  # raises: neither is set
    split_index, split_codes = load_split(split_path)
    paths = [str(p) for p in stamp_paths]
    selected, attrs, shape = _scan(paths, labels)
    cols = {k: np.concatenate([s.columns[k] for s in selected]) for k in selected[0].columns}
    cols["split"] = lookup_split(cols["index"], split_index, split_codes, split_path)
    counts = _check_counts(cols, config, task_name, task)
    n_total = int(sum(s.n for s in selected))
    n_labelled = int(cols["label"].size)
    chunk = int(config["preprocess"]["chunk_objects"])
    header = merge_attrs(attrs, paths)
    header.update(task=task_name, label_column=task["label"], counts=counts, use="labels",
                  use_requested=config["training_set"].get("use_requested", "labels"),
                  origin_names=list(ORIGINS),
                  n_labelled=n_labelled, n_unlabelled=n_total - n_labelled,
                  **{f"n_{s}_{c}": counts[s][c] for s in SPLIT_NAMES for c in ("neg", "pos")})
    header.update(provenance(config, step="training_set", task=task_name, inputs=paths,
                             split=str(split_path), labels=str(config["survey"]["labels"])))
    kw = dict(chunks=(min(chunk, n_labelled),) + tuple(shape), compression="gzip",
              compression_opts=1, shuffle=True)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as fout:
        appender = ChunkAppender(
            {"images": fout.create_dataset("images", (n_labelled,) + shape, np.float32, **kw),
             "mask": fout.create_dataset("mask", (n_labelled,) + shape, np.uint8, **kw)}, chunk)
        _copy_stamps(appender, selected, chunk)
        appender.close()
        _write_columns(fout, cols, n_labelled)
        write_label_source(fout, labels)
        write_attrs(fout, header)
    return {"n_labelled": n_labelled, "n_unlabelled": n_total - n_labelled, "counts": counts,
            "n_labels_without_stamp": int((~labels.matched).sum())
            if labels.matched is not None else 0}


def task_simulator(config: Mapping, task_name: str) -> str | None:
    """``lens`` or ``merger`` when the task's training set is simulated (``training_set``,
    its ``use`` resolved: :func:`skysift.sim.mix.resolve_use`)."""
    if config["training_set"]["use"] == "labels":
        return None
    return simulator_of(config, task_name)


def _gallery_classes(label: np.ndarray, origin: np.ndarray, sim: np.ndarray) -> dict:
    """{class name: rows}: every (label, origin, simulated kind) present."""
    classes = {}
    for key in sorted(set(zip(label.tolist(), origin.tolist(), sim.tolist(), strict=True))):
        lab, org, kind = key
        name = ("positive" if lab else "negative") + f": {ORIGINS[org]}"
        name += f" {kind.decode()}" if kind else ""
        classes[name] = np.flatnonzero((label == lab) & (origin == org) & (sim == kind))
    return classes


def write_gallery(train_path: str | Path, png_path: str | Path, n_per_class: int,
                  seed: int, q: float) -> dict:
    """PNG of ``n_per_class`` random examples of every class of a training set (atomic).

    Each stamp at the review page's stretch (:func:`skysift.stamps.display.
    normalised_composite`, asinh softening ``q`` = ``review.q``), so a training example looks
    as a candidate does and one scale serves every panel.

    Titles give the Einstein radius and arc S/N of injected lenses, stage and major/minor
    of simulated mergers. Returns {class name: rows in the file}.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with open_h5(train_path, required=("images", "label")) as fh:
        label = fh["label"][()]
        norm = read_attr_json(fh, "normalisation") if "normalisation" in fh.attrs else {}
        norm = norm if isinstance(norm, dict) else {}
        bands = read_attr_json(fh, "bands") if "bands" in fh.attrs else [
            str(b) for b in range(fh["images"].shape[1])]
        origin = fh["origin"][()] if "origin" in fh else np.full(label.size, LABELLED)
        sim = fh["sim"][()] if "sim" in fh else np.zeros(label.size, "S16")
        params = {k: fh[f"params/{k}"][()] for k in ("theta_e_arcsec", "arc_snr",
                                                      "merger_stage", "major")
                  if f"params/{k}" in fh}
        classes = _gallery_classes(label, origin, sim)
        rng = np.random.default_rng(seed)
        shown = {name: np.sort(rng.permutation(rows)[:n_per_class])
                 for name, rows in classes.items()}
        fig = Figure(figsize=(1.4 * n_per_class, 1.6 * max(len(shown), 1)), layout="constrained")
        FigureCanvasAgg(fig)
        axes = np.atleast_2d(fig.subplots(max(len(shown), 1), n_per_class, squeeze=False))
        for ax in axes.ravel():
            ax.set_axis_off()
        for i, (name, rows) in enumerate(shown.items()):
            axes[i, 0].set_title(name, loc="left", fontsize=8, pad=12)
            for j, row in enumerate(rows.tolist()):
                axes[i, j].imshow(normalised_composite(fh["images"][row][None], bands, norm,
                                                       q)[0], origin="lower")
                text = ""
                if sim[row] == b"lens" and "arc_snr" in params:
                    text = (f"θE {params['theta_e_arcsec'][row]:.1f}″ "
                            f"S/N {params['arc_snr'][row]:.0f}")
                elif sim[row] == b"merger" and "merger_stage" in params:
                    text = (f"{'major' if params['major'][row] else 'minor'} "
                            f"{params['merger_stage'][row].decode()}")
                axes[i, j].text(0.02, 0.02, text, color="w", fontsize=6,
                                transform=axes[i, j].transAxes)
    with atomic_output(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return shown


def parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``skysift trainset``."""
    p = cli.parser("Build one task's training set: labels, simulations in the survey's own "
                   "cutouts, or both (training_set.use).")
    p.add_argument("--task", required=True, help="task name (config tasks[].name)")
    p.add_argument("--stamps", required=True, nargs="+", help="stamps HDF5 files of all shards")
    p.add_argument("--cutouts", nargs="+", default=[],
                   help="raw cutouts HDF5 files of the same shards, in the same order "
                        "(needed by simulated training sets)")
    p.add_argument("--split", required=True, help="split table (results/split.fits)")
    p.add_argument("--out", required=True, help="training set HDF5 file to write")
    p.add_argument("--gallery", help="PNG of random examples of every class to write")
    return p


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    config = cli.load_config(args)
    labels = training_labels(config, *find_task(config, args.task))  # read once per job
    config = resolve_use(config, args.task, labels)
    kind = task_simulator(config, args.task)
    if kind is None:
        summary = _run_labels(args, config, labels)
    else:
        if not args.cutouts:
            raise DataError(f"task '{args.task}' has a simulated training set "
                            f"(training_set.use {config['training_set']['use']}); pass the raw "
                            "cutouts of every shard with --cutouts")
        summary = build_simulated(args.stamps, args.cutouts, args.split, args.out, config,
                                  args.task, kind, labels)
        with h5py.File(args.out, "r+") as fh:
            write_label_source(fh, labels)
        if config["training_set"]["use"] == "both":
            _add_realism(args.out, config, args.task)
        n_sim = summary["n_simulated"] + summary["n_hard_negatives"] + summary["n_isolated"]
        log.info("training_set %s: %d hosts of %d objects (%d known positives kept out); "
                 "%d real negatives (%d hosts, %d graded false positives), %d labelled, "
                 "%d simulated %s, %d hard "
                 "negatives, %d isolated galaxies; %d simulations on blank sky (of %d "
                 "blank-sky stamps); kinds %s in %.1f s (%.1f simulations/s)", args.task,
                 summary["n_hosts"], summary["n_objects"], summary["n_known_positives"],
                 summary["n_real_negatives"], summary["n_real_from_hosts"],
                 summary["n_graded_false_positives"], summary["n_labelled"],
                 summary["n_simulated"], kind,
                 summary["n_hard_negatives"], summary["n_isolated"], summary["n_on_blank"],
                 summary["n_blank_pool"], summary["kind_counts"], summary["sim_seconds"],
                 n_sim / max(summary["sim_seconds"], 1e-9))
        if "psf_stars" in summary:
            ps = summary["psf_stars"]
            fwhm = np.median([t["fwhm_arcsec"] for t in ps["tiles"].values()], axis=0)
            log.info("PSF from stars: %d tiles measured on their own stars, %d took the pooled "
                     "stars; median FWHM per band %s arcsec", ps["tiles_own_stars"],
                     ps["tiles_pooled"], np.round(fwhm, 3).tolist())
        if "arc_snr_quantiles" in summary:
            log.info("arc S/N quantiles %s; %d below arc_snr_min after %d draws",
                     {k: round(v, 1) for k, v in summary["arc_snr_quantiles"].items()},
                     summary["below_arc_snr_min"], config["training_set"]["lens"]["max_draws"])
        if "invisible_positives" in summary:
            inv = summary["invisible_positives"]
            log.info("visible positives: %.0f%% of the simulated ones; %d a person could not "
                     "see (%s) %s", 100 * summary["visible_fraction"], inv["total"],
                     ", ".join(f"{k} {v}" for k, v in inv.items() if k != "total" and v),
                     "were not drawn" if summary["invisible_dropped"] else
                     "are kept (drop_invisible: false)")
    if args.gallery:
        write_gallery(args.out, args.gallery, config["training_set"]["gallery_examples"],
                      config["seed"], config["review"]["q"])
    seconds = time.perf_counter() - t0
    c = summary["counts"]
    n_rows = sum(v for split in c.values() for v in split.values())
    log.info("training_set %s: %d rows (train %d+/%d-, val %d+/%d-, test %d+/%d-) -> %s in "
             "%.2f s (%.0f rows/s)", args.task, n_rows,
             *(c[s][k] for s in SPLIT_NAMES for k in ("pos", "neg")), args.out, seconds,
             n_rows / max(seconds, 1e-9))
    return 0


def _add_realism(path: str | Path, config: Mapping, task: str) -> None:
    """Score how real the simulations of a labels + simulations set look; attr ``realism``."""
    t0 = time.perf_counter()
    with h5py.File(path, "r+") as fh:
        attrs = {k: read_attr_json(fh, k) for k in ("bands", "pixscale_arcsec",
                                                    "psf_fwhm_arcsec") if k in fh.attrs}
        scores = realism(fh["images"], fh["label"][()], fh["origin"][()], fh["sim"][()], attrs,
                         derive_seed(config["seed"], "realism", task))
        write_attrs(fh, {"realism": scores})
    for name, score in scores.items():
        top = ", ".join(f"{f['name']} {f['auroc']:.2f}" for f in score["top_features"][:4])
        log.info("realism %s %s: AUROC %s (%d simulated vs %d real; 0.5 = indistinguishable)%s",
                 task, name, "n/a" if score["auroc"] is None else
                 "{:.3f} [{:.3f}, {:.3f}]".format(score["auroc"], *score["auroc_ci"]),
                 score["n_simulated"], score["n_real"], f"; most telling: {top}" if top else "")
    log.info("realism scored in %.1f s", time.perf_counter() - t0)


def _run_labels(args: argparse.Namespace, config: dict, labels) -> dict:
    summary = build_trainset(args.stamps, args.split, args.out, config, args.task, labels)
    if summary["n_labels_without_stamp"]:
        log.info("%d labelled ids have no stamp (not in the catalog, off the footprint or "
                 "rejected)", summary["n_labels_without_stamp"])
    log.info("training_set %s: labels only: %d labelled objects from %d files, %d stamps "
             "without a label left out", args.task, summary["n_labelled"], len(args.stamps),
             summary["n_unlabelled"])
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``skysift trainset``; returns the exit code."""
    return cli.run(_run, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
