"""More like this (skysift similar): what the embeddings add on the mock, and what they cost.

Three subcommands, each printing one JSON line per measurement:

  mock  --workdir DIR   a finished run of the mock survey with infer.embeddings: true
        (e.g. snakemake results/catalog.fits --configfile config/config.yaml emb.yaml with
        emb.yaml = {infer: {embeddings: true}}). (a) For --queries lenses drawn at random
        (seeded) from the mock's truth: the fraction of lenses among their --k nearest
        neighbours in the primary CNN's embeddings (skysift.review.similar.neighbours,
        pynndescent on L2-normalised vectors) against the fraction among the --k objects whose
        primary score is nearest to the query's, both excluding the query, with the counts
        and the survey's base rate. (b) The linear probe (skysift.review.probe) trained on
        --graded lenses of the train split (as if graded A) and --negatives random objects,
        scored on the test split: AUROC with a stratified bootstrap interval (skysift.metrics),
        n positives and negatives, beside the primary model's AUROC on the same objects.
  export --workdir DIR  the embedding export's cost: skysift.score.stream.score_shard of one
        shard of that run, with and without the embeddings, interleaved, --repeats each after
        one warm-up; medians and their ratio (goal <= 1.10).
  index --n 100000 300000 1000000 --width W   pynndescent index build of --n synthetic
        embeddings (unit vectors, W wide) on --jobs cores, each size in a fresh process
        after a warm-up build (numba's compilation of the build not counted): build seconds, two
        50-neighbour queries of 10 objects each (the first compiles that index's search
        function: pynndescent compiles one per index), and peak memory (VmHWM of the process).

    python benchmarks/similar.py mock --workdir /tmp/simrun
    python benchmarks/similar.py export --workdir /tmp/simrun --repeats 3
    python benchmarks/similar.py index --n 100000 300000 1000000 --width 64 --jobs 2
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from astropy.table import Table
from timing import peak_rss_kib

from skysift.config import load
from skysift.metrics import auroc, bootstrap
from skysift.modelspec import model_specs, primary_specs
from skysift.plan import read_shards
from skysift.review.probe import probe_labels, probe_logits, train_probe
from skysift.review.similar import neighbours, read_embeddings, unit_rows
from skysift.survey.split import TEST, TRAIN


def run_config(workdir: Path, embeddings: bool, overlay: str | None = None) -> dict:
    """The run's config (config/config.yaml of the workdir, then the --overlay YAML the run
    was given) with infer.embeddings set."""
    extra = yaml.safe_load(Path(overlay).read_text()) if overlay else {}
    extra.setdefault("infer", {})["embeddings"] = embeddings
    return load(str(workdir / "config" / "config.yaml"), json.dumps(extra), [])


def mock_truth(workdir: Path, config: dict, emb) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per embedded object: is_lens (truth), split code, primary score."""
    cat = Table.read(workdir / "results" / "catalog.fits")
    truth = Table.read(workdir / "data" / "mock" / "catalog_truth.fits")
    split = Table.read(workdir / "results" / "split.fits")
    column = primary_specs(config)[config["training_set"]["lens_task"]].column
    lens_of = dict(zip(truth["objid"].tolist(), np.asarray(truth["is_lens"], bool).tolist(),
                       strict=True))
    cat_row = {int(i): k for k, i in enumerate(cat["index"])}
    rows = np.array([cat_row[int(i)] for i in emb.index])
    is_lens = np.array([lens_of[i] for i in np.asarray(cat["id"])[rows].tolist()])
    split_of = dict(zip(split["index"].tolist(), split["split"].tolist(), strict=True))
    return is_lens, np.array([split_of[int(i)] for i in emb.index]), \
        np.asarray(cat[column], float)[rows]


def mock(args) -> None:
    workdir = Path(args.workdir).resolve()
    config = run_config(workdir, True, args.overlay)
    column = primary_specs(config)[config["training_set"]["lens_task"]].column
    emb = read_embeddings(sorted(glob.glob(str(workdir / "results/embeddings/*.h5"))), column)
    is_lens, split, score = mock_truth(workdir, config, emb)
    rng = np.random.default_rng(args.seed)
    queries = rng.choice(np.flatnonzero(is_lens), args.queries, replace=False)
    found, _ = neighbours(emb.vectors, queries, args.k, seed=args.seed)
    n_emb = [int(is_lens[f[f >= 0]].sum()) for f in found]
    n_score = []
    for q in queries:
        gap = np.abs(score - score[q])
        gap[q] = np.inf
        n_score.append(int(is_lens[np.argsort(gap, kind="stable")[:args.k]].sum()))
    total = args.k * args.queries
    print(json.dumps({"measure": "neighbours_vs_score", "model": column,
                      "width": emb.vectors.shape[1], "n_objects": len(emb.index),
                      "base_rate": round(float(is_lens.mean()), 4), "queries": args.queries,
                      "k": args.k, "lenses_embedding": sum(n_emb),
                      "lenses_score": sum(n_score), "of": total,
                      "fraction_embedding": round(sum(n_emb) / total, 4),
                      "fraction_score": round(sum(n_score) / total, 4),
                      "per_query_embedding": n_emb, "per_query_score": n_score}))
    train = np.flatnonzero(split == TRAIN)
    graded = rng.choice(train[is_lens[train]], args.graded, replace=False)
    t0 = time.perf_counter()
    rows, y = probe_labels(len(emb.index), graded, np.zeros(0, np.int64), args.negatives,
                           seed=args.seed)
    rows, y = rows[np.isin(rows, train)], y[np.isin(rows, train)]  # train split only
    logit = probe_logits(train_probe(emb.vectors[rows], y, 1.0, args.seed), emb.vectors)
    seconds = time.perf_counter() - t0
    test = np.flatnonzero(split == TEST)
    probe = bootstrap(logit[test], is_lens[test], args.n_boot, 0.95, args.seed, {"auroc": auroc})
    cnn = bootstrap(score[test], is_lens[test], args.n_boot, 0.95, args.seed, {"auroc": auroc})
    print(json.dumps({"measure": "linear_probe", "model": column, "n_graded_lenses": args.graded,
                      "n_train_negatives": int(len(y) - y.sum()),
                      "n_lenses_among_random_negatives": int(is_lens[rows[y == 0]].sum()),
                      "test_positives": int(is_lens[test].sum()),
                      "test_negatives": int((~is_lens[test]).sum()),
                      "probe_auroc": probe["auroc"], "cnn_auroc": cnn["auroc"],
                      "n_boot": args.n_boot, "probe_seconds": round(seconds, 2)}))


def export(args) -> None:
    from skysift.score.stream import score_shard

    workdir = Path(args.workdir).resolve()
    overlay = args.overlay and str(Path(args.overlay).resolve())
    args.overlay = overlay
    os.chdir(workdir)
    shard = args.shard or sorted(read_shards("results/index/shards.json"))[0]
    models = [s.path for s in model_specs(run_config(workdir, False, args.overlay))]
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats + 1):
            for with_emb in (False, True):
                config = run_config(workdir, with_emb, args.overlay)
                t0 = time.perf_counter()
                score_shard(config, "results/index", shard, models, f"{tmp}/scores.fits",
                            f"{tmp}/emb.h5" if with_emb else None)
                if k:  # the first round warms up (imports, page cache, torch)
                    times[with_emb].append(time.perf_counter() - t0)
        size = os.path.getsize(f"{tmp}/emb.h5")
    base, emb = statistics.median(times[False]), statistics.median(times[True])
    print(json.dumps({"measure": "embedding_export", "shard": shard, "models": models,
                      "repeats": args.repeats, "seconds_without": times[False],
                      "seconds_with": times[True], "median_without": round(base, 3),
                      "median_with": round(emb, 3), "ratio": round(emb / base, 3),
                      "embeddings_bytes": size}))


def index_child(n: int, width: int, jobs: int) -> None:
    """In a fresh process: warm-up build, then the timed build of n vectors."""
    from skysift.review.similar import build_index

    rng = np.random.default_rng(0)
    build_index(unit_rows(rng.normal(size=(2000, width))), 30, 0, jobs).query(
        unit_rows(rng.normal(size=(2, width))), k=10)
    x = unit_rows(rng.normal(size=(n, width)).astype(np.float32))
    t0 = time.perf_counter()
    ix = build_index(x, 30, 0, jobs)
    build = time.perf_counter() - t0
    query = []
    for rows in (slice(0, 10), slice(10, 20)):  # the first compiles the index's search (numba)
        t0 = time.perf_counter()
        ix.query(x[rows], k=51)
        query.append(round(time.perf_counter() - t0, 3))
    print(json.dumps({"measure": "index_build", "n": n, "width": width, "jobs": jobs,
                      "build_seconds": round(build, 1), "query10_seconds_first_then_second": query,
                      "vectors_mib": round(x.nbytes / 2**20, 1),
                      "peak_rss_mib": round(peak_rss_kib() / 1024, 1)}), flush=True)


def index(args) -> None:
    for n in args.n:
        subprocess.run([sys.executable, __file__, "index-child", str(n), str(args.width),
                        str(args.jobs)], check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("mock")
    m.add_argument("--workdir", required=True)
    m.add_argument("--queries", type=int, default=10)
    m.add_argument("--k", type=int, default=20)
    m.add_argument("--graded", type=int, default=10)
    m.add_argument("--negatives", type=int, default=300)
    m.add_argument("--n-boot", type=int, default=1000)
    m.add_argument("--seed", type=int, default=21)
    m.add_argument("--overlay", default=None, help="the YAML given to the run with --configfile")
    e = sub.add_parser("export")
    e.add_argument("--workdir", required=True)
    e.add_argument("--shard", default=None)
    e.add_argument("--overlay", default=None, help="the YAML given to the run with --configfile")
    e.add_argument("--repeats", type=int, default=3)
    i = sub.add_parser("index")
    i.add_argument("--n", type=int, nargs="+", default=[100000, 300000, 1000000])
    i.add_argument("--width", type=int, default=64)
    i.add_argument("--jobs", type=int, default=2)
    if sys.argv[1:2] == ["index-child"]:
        index_child(*map(int, sys.argv[2:5]))
        return 0
    args = p.parse_args()
    {"mock": mock, "export": export, "index": index}[args.what](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
