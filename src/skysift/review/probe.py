"""The linear probe and the 2-D map of ``skysift similar`` (:mod:`.similar`).

The probe (Stein et al. 2022): a logistic regression (scikit-learn) on the L2-normalised
embeddings of a handful of labelled objects (positives: the queries and the A and B grades;
negatives: the N grades and ``similar.probe_random_negatives`` objects drawn at random, as a
random object of a survey is almost never a lens), then the logit of every embedded object,
written to ``results/similar/probe_{task}.fits``. The map: UMAP (umap-learn) or t-SNE
(scikit-learn) of a seeded random draw of the embeddings plus every query, graded object and
known lens, coloured by the model's score with those marked (a PNG).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.table import Table

from skysift.io import atomic_output, provenance
from skysift.review.sample import ScoredCatalog
from skysift.score.tables import ids_for_fits
from skysift.seeds import derive_seed

log = logging.getLogger(__name__)


def probe_labels(n: int, positives: np.ndarray, negatives: np.ndarray, n_random: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training rows and 0/1 labels of the probe among ``n`` objects: ``positives``, the
    graded ``negatives`` and ``n_random`` objects drawn at random (seeded) from the others.
    A row given as both positive and negative is dropped from the negatives."""
    pos = np.unique(np.asarray(positives, np.int64))
    neg = np.setdiff1d(np.asarray(negatives, np.int64), pos)
    others = np.setdiff1d(np.arange(n), np.union1d(pos, neg))
    rng = np.random.default_rng(seed)
    drawn = rng.choice(others, size=min(n_random, len(others)), replace=False)
    rows = np.concatenate([pos, neg, np.sort(drawn)])
    return rows, np.concatenate([np.ones(len(pos), np.int8),
                                 np.zeros(len(neg) + len(drawn), np.int8)])


def train_probe(x: np.ndarray, y: np.ndarray, c: float = 1.0, seed: int = 0):
    """A logistic regression on embeddings ``x`` (m, width) with labels ``y`` (m,) in {0, 1},
    classes weighted to balance (a handful of positives against many negatives)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        from skysift.errors import ConfigError
        raise ConfigError("similar: the probe needs positives and negatives; give queries or "
                          "A/B grades, and N grades or similar.probe_random_negatives > 0")
    return LogisticRegression(C=c, class_weight="balanced", max_iter=1000,
                              random_state=seed % (2**32)).fit(x, y)


def probe_logits(model, x: np.ndarray, chunk: int = 262144) -> np.ndarray:
    """The probe's logit of every row of ``x`` (n, width), float32, in chunks."""
    return np.concatenate([model.decision_function(x[i:i + chunk]).astype(np.float32)
                           for i in range(0, len(x), chunk)] or [np.zeros(0, np.float32)])


def rank_of(scores: np.ndarray) -> np.ndarray:
    """1 = highest score, ties by position."""
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(scores), np.int64)
    rank[order] = np.arange(1, len(scores) + 1)
    return rank


def run_probe(config: Mapping, task: str, emb, qrows: np.ndarray, grades: tuple,
              out: str | Path) -> None:
    """Train the probe on the queries and grades and write every object's logit to ``out``."""
    t0 = time.perf_counter()
    opts = config["similar"]
    g_rows, g_grades, _ = grades
    rows, y = probe_labels(len(emb.index), np.concatenate([qrows, g_rows[np.isin(g_grades,
                                                                              ["A", "B"])]]),
                           g_rows[g_grades == "N"], opts["probe_random_negatives"],
                           derive_seed(config["seed"], "similar-probe", task))
    model = train_probe(emb.vectors[rows], y, opts["probe_c"],
                        derive_seed(config["seed"], "similar-probe-fit", task))
    logit = probe_logits(model, emb.vectors)
    table = Table()
    table["index"] = emb.index
    table["id"] = ids_for_fits(emb.id_values)
    table[f"probe_{task}"] = logit
    table[f"rank_probe_{task}"] = rank_of(logit)
    table.meta.update({k.upper()[:8]: str(v) for k, v in provenance(
        config, step="similar", task=task).items() if isinstance(v, str | int | float)})
    table.meta["NPOS"] = int(y.sum())
    table.meta["NNEG"] = int(len(y) - y.sum())
    with atomic_output(out) as tmp:
        table.write(tmp, format="fits")
    log.info("%s: probe on %d positives, %d negatives scored %d objects in %.1f s -> %s",
             task, int(y.sum()), int(len(y) - y.sum()), len(logit),
             time.perf_counter() - t0, out)


def embed_2d(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    """(m, 2) coordinates of the rows of ``x`` by UMAP (umap-learn) or t-SNE (scikit-learn)."""
    seed = seed % (2**32)
    if method == "umap":
        import umap

        return umap.UMAP(n_neighbors=min(15, len(x) - 1), random_state=seed,
                         n_jobs=1).fit_transform(x)
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                random_state=seed).fit_transform(x)


def map_rows(n: int, marked: np.ndarray, n_points: int, seed: int) -> np.ndarray:
    """Rows of the map: ``n_points`` drawn at random (seeded) plus every ``marked`` row."""
    rng = np.random.default_rng(seed)
    drawn = rng.choice(n, size=min(n_points, n), replace=False)
    return np.union1d(drawn, np.asarray(marked, np.int64))


def run_map(config: Mapping, task: str, emb, qrows: np.ndarray, grades: tuple,
            cat: ScoredCatalog, known: np.ndarray, out: str | Path) -> None:
    """The 2-D map PNG: score as colour; queries, A/B and N grades, known lenses (positions
    ``known`` in ``emb``) marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t0 = time.perf_counter()
    opts = config["similar"]
    g_rows, g_grades, _ = grades
    rows = map_rows(len(emb.index), np.concatenate([qrows, g_rows, known]), opts["map_points"],
                    derive_seed(config["seed"], "similar-map", task))
    xy = embed_2d(emb.vectors[rows], opts["map"], derive_seed(config["seed"], "similar-umap"))
    at = {int(r): k for k, r in enumerate(rows)}
    order = np.argsort(cat.index)
    score = cat.score[order[np.searchsorted(cat.index[order], emb.index[rows])]]
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=score, s=4, cmap="viridis", alpha=0.6, lw=0)
    fig.colorbar(sc, ax=ax, label="model score (logit)")
    marks = [("known lens", known, dict(marker="o", facecolors="none", edgecolors="red", s=40)),
             ("graded N", g_rows[g_grades == "N"], dict(marker="x", c="grey", s=25)),
             ("graded A/B", g_rows[np.isin(g_grades, ["A", "B"])],
              dict(marker="s", facecolors="none", edgecolors="orange", s=40)),
             ("query", qrows, dict(marker="*", c="magenta", s=120, edgecolors="black"))]
    for label, which, style in marks:
        k = [at[int(r)] for r in which]
        if k:
            ax.scatter(xy[k, 0], xy[k, 1], label=f"{label} ({len(k)})", **style)
    ax.set_title(f"{task}: {opts['map']} of {len(rows)} embeddings")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize="small")
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    log.info("%s: %s map of %d objects in %.1f s -> %s", task, opts["map"], len(rows),
             time.perf_counter() - t0, out)
