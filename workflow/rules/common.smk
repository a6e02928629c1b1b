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
shell.prefix(f"export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

TASKS = [task["name"] for task in config["tasks"]]
BANDS = config["survey"]["bands"]
PY = "python -m skysift"
ENV = "../../envs/skysift.yaml"  # for --sdm conda; relative to the rule files


def tile_names():
    """Tiles of the survey: those the mock will write, or those on disk matching the pattern."""
    if config["survey"]["kind"] == "mock":
        return _mock.tile_names(config)
    return _survey.discover_tiles(config["survey"]["tiles"], BANDS)


TILES = tile_names()


wildcard_constraints:
    tile="|".join(map(__import__("re").escape, TILES)) or "NO_TILES",
    task="|".join(TASKS),


def tile_files(wildcards):
    return [config["survey"]["tiles"].format(tile=wildcards.tile, band=b) for b in BANDS]


def all_tile_files(wildcards=None):
    return [config["survey"]["tiles"].format(tile=t, band=b) for t in TILES for b in BANDS]


def cfg(*sections):
    """JSON of the config sections a rule depends on: a params entry, so edits re-run it.

    A function, so Snakemake does not read the tile pattern's braces as wildcards.
    """
    text = json.dumps({key: config[key] for key in ("seed",) + sections}, sort_keys=True)
    return lambda wildcards: text


def labels_file():
    return [config["survey"]["labels"]] if config["survey"]["labels"] else []
