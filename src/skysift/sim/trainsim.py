"""Simulated training sets: positives drawn into the survey's own cutouts, real and hard negatives.

For a task named ``training_set.lens_task`` (``merger_task``) and ``training_set.use``
``simulated`` or ``both``, :func:`build_simulated` writes ``results/train/{task}.h5``
(docs/formats.md) from the raw cutouts and the stamps of every shard:

- hosts (:func:`skysift.sim.hosts.select_hosts`) are real galaxies of the survey; each simulated
  example draws a host (with replacement), a kind and a seed, and renders the kind into the
  host's *raw* cutout (:func:`skysift.sim.inject.inject_lens`,
  :func:`skysift.sim.simulate.simulate`), which is then normalised exactly like the real stamps
  (:func:`skysift.stamps.preprocess.normalise` with the stamps' recorded ``normalisation``);
- merger task: ``merger.blank_fraction`` of the mergers and chance projections are drawn
  as two simulated galaxies (the primary with a random host's photometry) on a real
  blank-sky cutout (group ``blank/`` of the cutouts), and the same fraction of the real
  negatives is replaced by isolated simulated galaxies on blank sky; dataset
  ``background`` (galaxy, blank) says which, so the background is no label shortcut;
- real negatives: up to ``max_negatives`` objects, ``host_negative_fraction`` of them hosts
  without simulation, the rest any eligible object; hard negatives: a
  ``hard_negative_fraction`` of the negative class, simulated (rings, arms, pairs; chance
  projections); with ``use: both`` every labelled object joins with its label;
- every row's split is the split of its object (the host for simulations), a hash of its id,
  so an object of the test split is never a host or a negative in training;
- objects labelled positive for the task are never hosts or negatives
  (``exclude_labelled_positives``).

Rows are written shard by shard, shuffled within each shard (so the classes mix in every
chunk a streaming loader reads); only one shard's selected rows are held in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from skysift import seeds
from skysift.errors import SurveyError
from skysift.io import atomic_output, open_h5, provenance, write_attrs
from skysift.sim.frames import Frames, Survey, scan
from skysift.sim.hosts import draw_real_negatives, faint_colours, make_host, reddest, select_hosts
from skysift.sim.inject import inject_lens, load_source_images
from skysift.sim.paint import reference_band
from skysift.sim.simulate import simulate
from skysift.sim.trainfile import (
    HARD,
    LABELLED,
    ORIGINS,
    REAL,
    SIMULATED,
    ChunkAppender,
    blank_ids,
    blank_splits,
    counts_by_split,
    merge_attrs,
    read_rows,
)
from skysift.sim.visibility import keep_rows, summarise
from skysift.stamps.normalise import normalise
from skysift.survey.gradelabels import READ, training_labels
from skysift.survey.labels import (
    GRADES_SOURCE_PREFIX,
    LabelIndex,
    find_task,
    load_split,
    lookup_split,
)

log = logging.getLogger(__name__)

#: Float parameters stored per row in group ``params`` (NaN where they do not apply).
PARAMS = ("theta_e_arcsec", "source_mag", "arc_snr", "magnification", "arc_flux",
          "psf_fwhm_arcsec", "lens_axis_ratio", "shear", "source_r_e_arcsec", "n_clumps",
          "clump_fraction", "n_draws", "sim_snr", "mass_ratio", "separation_arcsec", "major",
          "flux_fraction", "size_arcsec", "feature_snr")
#: Dataset ``background`` of every row: drawn on a real object's cutout, or on blank sky.
GALAXY, BLANK = b"galaxy", b"blank"


def derive_seed(seed: int, *parts: str) -> int:
    """A 63-bit seed from the master seed and names (task, shard)."""
    return seeds.derive_seed(seed, "training_set", *parts)


@dataclass
class Plan:
    """The rows of a training set: real objects, and simulations (host, kind, label, seed)."""

    real: np.ndarray
    real_label: np.ndarray
    real_origin: np.ndarray
    sim_host: np.ndarray
    sim_kind: np.ndarray
    sim_label: np.ndarray
    sim_seed: np.ndarray
    info: dict
    sim_blank: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _hosts(survey: Survey, labels: LabelIndex | None, config: Mapping, task: str,
           kind: str) -> tuple:
    """Per object (n,): found and label, known positive, eligible, host; and the host cuts."""
    tcfg, c = config["training_set"], survey.cols
    n = len(c["index"])
    found, label = (labels.lookup(c["id"]) if labels is not None
                    else (np.zeros(n, bool), np.zeros(n, np.uint8)))
    known_pos = found & (label == 1)
    eligible = ~known_pos if tcfg["exclude_labelled_positives"] else np.ones(n, bool)
    hosts, removed = select_hosts(config, c["index"], c["id"], c["flags"], c["mag"],
                                  c["r50_arcsec"], c["psf_fwhm_arcsec"],
                                  c["peak_offset_arcsec"])
    hosts &= eligible & np.isfinite(c["mag"][:, reference_band(
        config["survey"]["bands"], tcfg["reference_band"])])
    if kind == "lens" and tcfg["lens"]["host_red_fraction"] is not None:
        red, _ = reddest(c["mag"], config["survey"]["bands"], hosts,
                         tcfg["lens"]["host_red_fraction"])
        removed["not among the reddest"], hosts = int((hosts & ~red).sum()), red
    if not hosts.any():
        raise SurveyError(f"task '{task}': no object may host a simulation among {n} (removed "
                          f"by each cut in turn: {removed}, known positives: "
                          f"{int(known_pos.sum())}); loosen training_set.hosts")
    return found, label, known_pos, eligible, hosts, removed


def plan_rows(survey: Survey, labels: LabelIndex | None, config: Mapping, task: str,
              kind: str, rng: np.random.Generator) -> Plan:
    """Choose the real rows and the simulations of one task (see the module docstring)."""
    tcfg, n = config["training_set"], len(survey.cols["index"])
    found, label, known_pos, eligible, hosts, removed = _hosts(survey, labels, config, task, kind)
    both = tcfg["use"] == "both"
    labelled = np.flatnonzero(found) if both else np.zeros(0, np.int64)
    pool = eligible & ~(found if both else np.zeros(n, bool))
    # with use: simulated, objects graded N in review (real false positives) lead the real
    # negatives; with both they are labelled rows already
    graded_fp = None if both or labels is None else (
        found & (label == 0) & np.char.startswith(
            labels.origin_of(survey.cols["id"]).astype(str), GRADES_SOURCE_PREFIX))
    real, from_hosts = draw_real_negatives(pool, hosts, tcfg, rng, graded_fp)
    n_neg = real.size + int((label[labelled] == 0).sum())
    kinds = list(tcfg["hard_negatives"][kind])
    f = tcfg["hard_negative_fraction"] if kinds else 0.0
    n_hard = int(round(n_neg * f / (1.0 - f)))
    n_pos = max(int(round(tcfg["positives_per_negative"] * (n_neg + n_hard)))
                - int((label[labelled] == 1).sum()), 0)
    host_rows = np.flatnonzero(hosts)
    sim_host = host_rows[rng.integers(0, host_rows.size, n_pos + n_hard)]
    sim_kind = np.array([kind] * n_pos + [kinds[i] for i in rng.integers(0, max(len(kinds), 1),
                                                                          n_hard)], dtype="U16")
    n_blank_pool = len(survey.blank.get("tile", ()))
    f_blank = tcfg["merger"]["blank_fraction"] if kind == "merger" and n_blank_pool else 0.0
    # isolated simulated galaxies on blank sky replace that fraction of the real negatives
    n_iso = min(int(round(f_blank * (real.size + int((label[labelled] == 0).sum())))),
                real.size)
    real = real[:real.size - n_iso]
    sim_blank = np.full(n_pos + n_hard, -1, np.int64)
    if f_blank > 0:  # no extra draws otherwise: lens sets stay as they were
        on_blank = np.zeros(n_pos + n_hard, bool)
        for lo, m in ((0, n_pos), (n_pos, n_hard)):
            on_blank[lo + rng.permutation(m)[:int(round(f_blank * m))]] = True
        sim_host = np.r_[sim_host, host_rows[rng.integers(0, host_rows.size, n_iso)]]
        sim_kind = np.r_[sim_kind, np.full(n_iso, "isolated", dtype="U16")]
        on_blank = np.r_[on_blank, np.ones(n_iso, bool)]
        sim_blank = np.where(on_blank, rng.integers(0, n_blank_pool, on_blank.size), -1)
    n_sim = n_pos + n_hard + n_iso
    info = dict(n_objects=n, n_hosts=int(hosts.sum()), host_cuts=removed,
                n_known_positives=int(known_pos.sum()), n_eligible=int(eligible.sum()),
                n_real_negatives=int(real.size),
                n_graded_false_positives=int(0 if graded_fp is None else
                                             np.isin(real, np.flatnonzero(graded_fp)).sum()),
                n_real_from_hosts=int(min(from_hosts.size,
                                                                            real.size)),
                n_labelled=int(labelled.size), n_simulated=n_pos, n_hard_negatives=n_hard,
                n_isolated=n_iso, n_blank_pool=n_blank_pool, n_on_blank=int((sim_blank >= 0).sum()))
    return Plan(np.concatenate([labelled, real]),
                np.concatenate([label[labelled], np.zeros(real.size, np.uint8)]),
                np.concatenate([np.full(labelled.size, LABELLED, np.uint8),
                                np.full(real.size, REAL, np.uint8)]),
                sim_host, sim_kind, np.r_[np.ones(n_pos, np.uint8), np.zeros(n_hard + n_iso,
                                                                              np.uint8)],
                rng.integers(0, 2**63 - 1, n_sim, dtype=np.int64).astype(np.uint64),
                info, sim_blank.astype(np.int64))


def render_sims(raw: np.ndarray, hosts: np.ndarray, kinds: np.ndarray, seeds: np.ndarray,
                survey: Survey, frames: Frames, tcfg: Mapping,
                source_images: Sequence[np.ndarray], blank: np.ndarray | None = None
                ) -> tuple[np.ndarray, dict]:
    """Simulate into raw cutouts (m, band, s, s): the images and the (m,) parameter columns.

    ``blank`` (m,): position in ``survey.blank`` of the blank-sky cutout a row is drawn on
    (its ``raw``), -1 where ``raw`` is the host's own cutout; None: all are hosts'.
    """
    c, out = survey.cols, np.empty_like(raw)
    params = {name: np.full(len(kinds), np.nan, np.float32) for name in PARAMS}
    stages = np.zeros(len(kinds), dtype="S16")
    blank = np.full(len(kinds), -1) if blank is None else np.asarray(blank)
    ref = frames.ref
    colours = (faint_colours(c["slope"], c["mag"][:, ref], c["r50_arcsec"], c["psf_fwhm_arcsec"],
                             tcfg["hosts"]["min_size_psf"])
               if tcfg["lens"]["source_colours"] == "survey" else None)
    for j, (obj, kind, seed) in enumerate(zip(hosts, kinds, seeds, strict=True)):
        rng = np.random.default_rng(int(seed))
        on_blank = bool(blank[j] >= 0)
        frame, fwhm = (frames.frame(int(blank[j]), blank=True) if on_blank
                       else frames.frame(int(obj)))
        if kind == "lens":
            out[j], p = inject_lens(raw[j], frame, tcfg["lens"], tcfg["supersample"], rng,
                                    source_images, fwhm if tcfg["drop_invisible"] else 0.0,
                                    colours)
            p["sim_snr"] = p["arc_snr"]
        else:
            host = make_host(c["flux"][obj], c["mag"][obj], c["slope"][obj],
                             c["r50_arcsec"][obj], ref)
            out[j], p = simulate(str(kind), raw[j], frame, host, tcfg, rng, on_blank)
        p["psf_fwhm_arcsec"] = fwhm
        stages[j] = str(p.get("merger_stage", "")).encode()
        for name in PARAMS:
            if name in p:
                params[name][j] = p[name]
    params["merger_stage"] = stages
    params["background"] = np.where(blank >= 0, BLANK, GALAXY).astype("S8")
    return out, params


def _summary(label: np.ndarray, split: np.ndarray, origin: np.ndarray, sim: np.ndarray,
             params: dict, tcfg: Mapping) -> dict:
    lens = sim == b"lens"
    s = {"counts": counts_by_split(label, split),
         "origin_counts": {name: int((origin == k).sum()) for k, name in enumerate(ORIGINS)},
         "kind_counts": {k.decode(): int((sim == k).sum()) for k in np.unique(sim) if k}}
    if lens.any():
        snr = params["arc_snr"][lens]
        s.update(arc_snr_quantiles={str(q): float(np.quantile(snr, q))
                                    for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
                 below_arc_snr_min=int((snr < tcfg["lens"]["arc_snr_min"]).sum()))
    return s


def _read_raw(fc: h5py.File, survey: Survey, hosts: np.ndarray, on_blank: np.ndarray
              ) -> np.ndarray:
    """Raw cutouts of simulations: the host's, or the blank-sky stamp where on_blank >= 0."""
    shape = fc["images"].shape[1:]
    raw = np.empty((len(hosts),) + shape, np.float32)
    gal = on_blank < 0
    raw[gal] = read_rows(fc["images"], survey.row[hosts[gal]])
    if (~gal).any():
        raw[~gal] = read_rows(fc["blank/images"], survey.blank["row"][on_blank[~gal]])
    return raw


def _inputs(stamp_paths: Sequence[str | Path], cutout_paths: Sequence[str | Path],
            split_path: str | Path, config: Mapping, task_name: str, kind: str,
            labels) -> tuple:
    """Task entry and config, survey, plan, split (n,) of each object, frames, source images."""
    task_pos, task = find_task(config, task_name)
    tcfg = config["training_set"]
    if labels is READ:
        labels = training_labels(config, task_pos, task)  # survey.labels and review.grades
    if labels is None and tcfg["use"] == "both":
        raise SurveyError("training_set.use is both but survey.labels is null and "
                          "review.grades empty; set survey.labels or use: simulated")
    survey = scan([str(p) for p in stamp_paths], [str(p) for p in cutout_paths], config)
    rng = np.random.default_rng(derive_seed(config["seed"], task_name))
    plan = plan_rows(survey, labels, config, task_name, kind, rng)
    split_index, split_codes = load_split(split_path)
    split_of = lookup_split(survey.cols["index"], split_index, split_codes, split_path)
    frames = Frames(config, survey)
    images = (load_source_images(tcfg["lens"]["source_images"], config["survey"]["bands"])
              if kind == "lens" else [])
    return task, tcfg, survey, plan, split_of, frames, images


def _shard_columns(survey: Survey, plan: Plan, k: int, real: np.ndarray, in_shard: np.ndarray,
                   objs: np.ndarray, on_blank: np.ndarray, p: dict, split_of: np.ndarray,
                   blank_split: np.ndarray) -> tuple[dict, dict]:
    """Columns and params (r + m,) of shard ``k``'s rows: real objects, then simulations."""
    bl = np.r_[np.full(real.size, -1), on_blank]
    block = {"flags": np.where(bl >= 0, 0, survey.cols["flags"][objs]).astype(np.uint8),
             "index": np.where(bl >= 0, -1, survey.cols["index"][objs]),
             "id": blank_ids(survey.cols["id"][objs], bl >= 0),
             "split": np.where(bl >= 0, blank_split[np.maximum(bl, 0)]
                               if blank_split.size else 0, split_of[objs]).astype(np.uint8),
             "background": np.r_[np.full(real.size, GALAXY, "S8"), p.pop("background")],
             "label": np.r_[plan.real_label[survey.shard[plan.real] == k],
                            plan.sim_label[in_shard]].astype(np.uint8),
             "origin": np.r_[plan.real_origin[survey.shard[plan.real] == k], np.where(
                 plan.sim_label[in_shard] == 1, SIMULATED, HARD)].astype(np.uint8),
             "sim": np.r_[np.zeros(real.size, "S16"),
                          np.char.encode(plan.sim_kind[in_shard], "utf-8")],
             "seed": np.r_[np.zeros(real.size, np.uint64), plan.sim_seed[in_shard]]}
    params = {name: np.concatenate([np.full(real.size, np.nan, np.float32), v])
              if name != "merger_stage" else np.r_[np.zeros(real.size, "S16"), v]
              for name, v in p.items()}
    return block, params


def _write_shards(appender: ChunkAppender, survey: Survey, plan: Plan, frames: Frames,
                  images: Sequence[np.ndarray], norm: dict, split_of: np.ndarray,
                  blank_split: np.ndarray, sim_shard: np.ndarray, tcfg: Mapping, seed: int,
                  task_name: str) -> tuple[dict, dict, float, list]:
    """Append each shard's rows, shuffled, to images and mask: (columns, params, seconds,
    invisible-positive counts per shard); invisible positives go only when tcfg says so."""
    cols: dict[str, list] = {k: [] for k in ("flags", "index", "id", "label", "split",
                                             "origin", "sim", "seed", "background")}
    pcols: dict[str, list] = {k: [] for k in PARAMS + ("merger_stage",)}
    sim_seconds, invisible = 0.0, []
    for k in range(len(survey.stamps)):
        real = plan.real[survey.shard[plan.real] == k]
        in_shard = sim_shard == k
        hosts, on_blank = plan.sim_host[in_shard], plan.sim_blank[in_shard]
        if real.size + hosts.size == 0:
            continue
        with open_h5(survey.stamps[k]) as fs, open_h5(survey.cutouts[k]) as fc:
            r_img = read_rows(fs["images"], survey.row[real])
            r_mask = read_rows(fs["mask"], survey.row[real])
            t0 = time.perf_counter()
            raw, p = render_sims(_read_raw(fc, survey, hosts, on_blank), hosts,
                                 plan.sim_kind[in_shard], plan.sim_seed[in_shard], survey,
                                 frames, tcfg, images, on_blank)
            s_img, s_mask = normalise(raw, norm) if hosts.size else (raw, raw.astype(np.uint8))
            sim_seconds += time.perf_counter() - t0
        keep, counts = keep_rows(plan.sim_kind[in_shard], plan.sim_label[in_shard], p, tcfg)
        invisible.append(counts)
        objs = np.concatenate([real, hosts])
        block, params = _shard_columns(survey, plan, k, real, in_shard, objs, on_blank, p,
                                       split_of, blank_split)
        rows = np.flatnonzero(np.r_[np.ones(real.size, bool), keep])
        perm = rows[np.random.default_rng(derive_seed(seed, task_name, str(k))).permutation(
            rows.size)]
        appender.append({"images": np.concatenate([r_img, s_img])[perm],
                         "mask": np.concatenate([r_mask, s_mask])[perm]})
        for name, v in block.items():
            cols[name].append(v[perm])
        for name, v in params.items():
            pcols[name].append(v[perm])
    return cols, pcols, sim_seconds, invisible


def build_simulated(stamp_paths: Sequence[str | Path], cutout_paths: Sequence[str | Path],
                    split_path: str | Path, out_path: str | Path, config: Mapping,
                    task_name: str, kind: str, labels=READ) -> dict:
    """Write the simulated training set of one task (``kind`` lens or merger); return a summary.
    ``labels``: the task's :func:`training_labels` when the caller has read them.

    Returns
    -------
    dict with the plan's counts (``n_hosts``, ``n_real_negatives``, ``n_simulated``, ...),
    ``counts`` ({split: {neg, pos}}), ``origin_counts``, ``kind_counts``, the arc S/N
    quantiles and ``visible_fraction`` (lens), ``n_rows`` and ``sim_seconds``.
    """
    task, tcfg, survey, plan, split_of, frames, images = _inputs(
        stamp_paths, cutout_paths, split_path, config, task_name, kind, labels)
    n_rows = plan.real.size + plan.sim_host.size
    shape = tuple(survey.attrs[0]["stamp_size_pix"] for _ in range(2))
    shape = (len(config["survey"]["bands"]),) + shape
    chunk = int(config["preprocess"]["chunk_objects"])
    header = merge_attrs(survey.attrs, survey.stamps)
    header.pop("tile_info", None)
    norm = header["normalisation"]
    sim_shard = np.where(plan.sim_blank >= 0, survey.blank["shard"][np.maximum(plan.sim_blank, 0)]
                         if len(survey.blank["shard"]) else -1, survey.shard[plan.sim_host])
    blank_split = blank_splits(survey, config)
    kw = dict(chunks=(max(min(chunk, n_rows), 1),) + shape, compression="gzip",
              compression_opts=1, shuffle=True, maxshape=(None,) + shape)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as fout:
        appender = ChunkAppender(
            {"images": fout.create_dataset("images", (n_rows,) + shape, np.float32, **kw),
             "mask": fout.create_dataset("mask", (n_rows,) + shape, np.uint8, **kw)}, chunk)
        cols, pcols, sim_seconds, invisible = _write_shards(
            appender, survey, plan, frames, images, norm, split_of, blank_split, sim_shard, tcfg,
            config["seed"], task_name)
        appender.close()
        n_rows = appender.pos  # invisible positives dropped: the written rows
        for name in ("images", "mask"):
            fout[name].resize(n_rows, axis=0)
        data = {name: np.concatenate(v) for name, v in cols.items()}
        for name, v in data.items():
            fout.create_dataset(name, data=v)
        pdata = {name: np.concatenate(v) for name, v in pcols.items()}
        for name, v in pdata.items():
            fout.create_dataset(f"params/{name}", data=v)
        summary = dict(plan.info, **_summary(data["label"], data["split"], data["origin"],
                                             data["sim"], pdata, tcfg),
                       **summarise(invisible, int((plan.sim_label == 1).sum()),
                                   tcfg["drop_invisible"]),
                       n_rows=n_rows, sim_seconds=sim_seconds,
                       n_tiles_without_gain=frames.n_no_gain, **frames.psf_summary())
        header.update(task=task_name, label_column=task["label"], simulator=kind,
                      use=tcfg["use"], use_requested=tcfg.get("use_requested", tcfg["use"]),
                      origin_names=list(ORIGINS), training_set=dict(tcfg),
                      **{k: v for k, v in summary.items() if k != "sim_seconds"})
        header.update(provenance(config, step="training_set", task=task_name,
                                 inputs=survey.stamps + survey.cutouts, split=str(split_path),
                                 labels=str(config["survey"]["labels"])))
        write_attrs(fout, header)
    return summary
