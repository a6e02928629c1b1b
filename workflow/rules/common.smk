# Validation, wildcard constraints and helpers shared by every rule.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, "../../config/schema.yaml")

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)  # the workflow runs from a checkout whether or not skysift is installed

from skysift import config as _skysift_config  # noqa: E402
from skysift import mock as _mock  # noqa: E402
from skysift import survey as _survey  # noqa: E402

_skysift_config.validate(config, "config")  # the checks a JSON schema cannot express

# Every CLI runs from this checkout's src/, also in conda envs and on cluster nodes.
# MKL_CBWR / MKL_DYNAMIC: MKL's results independent of memory alignment and thread teams.
shell.prefix(f"export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}} "
             "MKL_CBWR=${{MKL_CBWR:-AUTO,STRICT}} MKL_DYNAMIC=${{MKL_DYNAMIC:-FALSE}}; ")

TASKS = [task["name"] for task in config["tasks"]]
BANDS = config["survey"]["bands"]
PY = "python -m skysift"
TRAINING_SHARDS_FILE = "results/index/training_shards.json"  # written by the survey index
ENV = "../../envs/skysift.yaml"  # for --sdm conda; relative to the rule files


def survey_files():
    """Every tile (and mask) file the check reads: the mock's, or those matching the pattern.

    For a user's survey this is a glob (no FITS is opened), so a tile missing a band fails
    the plan before any job; the survey index checkpoint discovers the tiles again at run
    time, which is how the tiles the mock writes are found.
    """
    survey = config["survey"]
    if survey["kind"] == "mock":
        return _mock.tile_paths(config)
    tiles = _survey.discover_tiles(survey["tiles"], BANDS)
    return _files_of(tiles)


def _files_of(tiles):
    survey = config["survey"]
    files = [_survey.tile_path(survey["tiles"], t, b) for t in tiles for b in BANDS]
    files += [p for t in tiles for p in _survey.mask_paths(survey, t)]
    return list(dict.fromkeys(files))  # a mask HDU inside the tile file names it twice


SURVEY_FILES = survey_files()


wildcard_constraints:
    shard="s[0-9]+",
    task="|".join(TASKS),


def shards():
    """{shard: [tiles]} decided by the survey index checkpoint (results/index/shards.json)."""
    with open(checkpoints.survey_index.get().output.shards) as fh:
        return {s["shard"]: s["tiles"] for s in json.load(fh)["shards"]}


def per_shard(pattern):
    """Input function: ``pattern`` (with {shard}) for every shard of the index."""
    return lambda wildcards: expand(pattern, shard=sorted(shards()))


def training_shards():
    """Shards the training sets read (training_set.shards): every shard, or those recorded in
    results/index/training_shards.json (frozen; kept by the index while they exist unchanged,
    so adding tiles re-makes no training set). An index written before that file existed
    records none: every shard."""
    names = sorted(shards())  # after the survey_index checkpoint
    record = Path(TRAINING_SHARDS_FILE)
    if config["training_set"]["shards"] == "all" or not record.exists():
        return names
    with open(record) as fh:
        listed = json.load(fh)["shards"]
    return listed if set(listed) <= set(names) else names  # a stale record: every shard


def shard_files(wildcards):
    """Tile and mask files of one shard: the cutouts job re-runs when one changes."""
    return _files_of(shards()[wildcards.shard])


def cutouts_mem_mb(wildcards):
    """Memory of a cutouts job: its largest tile's bands (float32 + mask + one band being
    read, docs/formats.md), one 64 MB batch of stamps, and the interpreter."""
    tiles = set(shards()[wildcards.shard])
    with open(checkpoints.survey_index.get().output.tiles) as fh:
        pixels = max(t["shape"][0] * t["shape"][1] for t in json.load(fh)["tiles"]
                     if t["tile"] in tiles)
    return int(pixels * ((len(BANDS) + 1) * 4 + len(BANDS) + 8) / 1e6) + 64 + 700


def cfg(*sections):
    """JSON of the config sections a rule depends on: a params entry, so edits re-run it.

    A function, so Snakemake does not read the tile pattern's braces as wildcards.
    """
    text = json.dumps({key: config[key] for key in ("seed",) + sections}, sort_keys=True)
    return lambda wildcards: text


def labels_file():
    return [config["survey"]["labels"]] if config["survey"]["labels"] else []
