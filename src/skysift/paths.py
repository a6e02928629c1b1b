"""Where every step's outputs live, relative to the working directory: one definition.

The rules (through :mod:`skysift.plan`), the CLIs' defaults and docs/formats.md use these
names; ``{shard}``, ``{task}`` and ``{model}`` are filled by Snakemake's wildcards or
:func:`str.format`.
"""

from __future__ import annotations

RESULTS = "results"

CHECK = "results/check.json"
TILE_HEADERS = "results/tile_headers.json"

INDEX_DIR = "results/index"
INDEX_TILES = "results/index/tiles.json"
INDEX_ASSIGNMENT = "results/index/assignment.fits"
INDEX_REJECTS = "results/index/rejects.ecsv"
INDEX_SHARDS = "results/index/shards.json"
SHARD_ROWS = "results/index/shards/{shard}.fits"
TRAINING_SHARDS = "results/index/training_shards.json"

SPLIT = "results/split.fits"
CUTOUTS = "results/cutouts/{shard}.h5"
CUTOUT_REJECTS = "results/cutouts/{shard}.rejects.ecsv"
REJECTS = "results/rejects.ecsv"
STAMPS = "results/stamps/{shard}.h5"

TRAINSET = "results/train/{task}.h5"
TRAIN_GALLERY = "results/train/{task}.gallery.png"
AUGMENTED = "results/train/{task}.augmented.h5"
MODEL = "results/models/{task}/{model}.pt"
MODEL_METRICS = "results/models/{task}/{model}.metrics.json"
MODEL_CURVE = "results/models/{task}/{model}.curve.png"

SCORES = "results/scores/{shard}.fits"
SCORE_REJECTS = "results/scores/{shard}.rejects.ecsv"
STAGE1 = "results/stage1/{shard}.fits"
RESCORE_PLAN = "results/rescore.json"
EMBEDDINGS = "results/embeddings/{shard}.h5"
CATALOG = "results/catalog.fits"
CATALOG_CSV = "results/catalog.csv"
CATALOG_DIR = "results/catalog"
CANDIDATES_TABLE = "results/candidates.fits"
CANDIDATES_DIR = "results/candidates"
CANDIDATES = "results/candidates/{task}.csv"

METRICS = "results/metrics.json"
ROC = "results/roc.png"
COMPLETENESS = "results/completeness.png"
PURITY = "results/purity.png"
RELIABILITY = "results/reliability.png"
KNOWN_LENSES = "results/known_lenses.csv"
KNOWN_LENSES_SUMMARY = "results/known_lenses.json"

REVIEW_HTML = "results/review/{task}.html"
REVIEW_SHEET = "results/review/{task}_grades.csv"
REVIEW_SAMPLE = "results/review/{task}_sample.csv"
REVIEW_STAMPS = "results/review/stamps.h5"

SIMILAR = "results/similar/{task}.csv"
SIMILAR_PROBE = "results/similar/probe_{task}.fits"
SIMILAR_MAP = "results/review/similar_{task}_map.png"
SIMILAR_HTML = "results/review/similar_{task}.html"
SIMILAR_SHEET = "results/review/similar_{task}_grades.csv"
SIMILAR_STAMPS = "results/similar/{task}_stamps.h5"
