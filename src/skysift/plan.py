"""Planning of the workflow: what every rule reads, writes and asks for, from the config.

The rules in ``workflow/rules/*.smk`` are thin: their input functions, params and resources
call these functions (Snakemake's own objects, such as a checkpoint's output, are passed in).
Everything here is plain Python over the validated config, tested in tests/core/test_plan.py,
so the workflow's decisions can be checked without running Snakemake.

This module sits above every stage: it may import any of them, and none imports it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from skysift import modelspec, paths
from skysift.errors import ConfigError
from skysift.sim.mockfiles import tile_paths as mock_tile_paths
from skysift.survey.files import discover_tiles, mask_paths, tile_path
from skysift.survey.gradelabels import task_entries
from skysift.survey.known import LENSCAT

#: Interpreter overhead of a cutouts job, MB (measured: imports, astropy, h5py).
CUTOUTS_BASE_MB = 700
#: One batch of stamps held by the cutouts step, MB (stamps.cutouts.BATCH_BYTES).
CUTOUTS_BATCH_MB = 64
#: An infer job's scoring process without stamps, MB (torch, models, shard columns;
#: measured VmHWM 690-740 MiB with baseline3, benchmarks/survey.py).
INFER_BASE_MB = 800
#: A decode worker of the infer job without its tile, MB (interpreter, astropy; measured
#: VmHWM 216 MiB with a 3 x 1024² tile and 466 stamps of 64², i.e. ~155 MB of base).
DECODE_BASE_MB = 200


def survey_files(config: Mapping) -> list[str]:
    """Every tile (and mask) file the check reads: the mock's, or those matching the pattern.

    For a user's survey this is a glob (no FITS is opened) of the tiles with every band: a
    tile missing a band file is left out of the plan, and check and the index reject its
    objects (fatal with strict); the survey index checkpoint discovers the tiles again at
    run time, which is how the tiles the mock writes are found.
    """
    survey = config["survey"]
    if survey["kind"] == "mock":
        return mock_tile_paths(config)
    return tile_files(config, discover_tiles(survey["tiles"], survey["bands"]))


def tile_files(config: Mapping, tiles: Iterable[str]) -> list[str]:
    """The band files and mask files of ``tiles``, each once, in tile then band order."""
    survey = config["survey"]
    tiles = list(tiles)
    files = [tile_path(survey["tiles"], t, b) for t in tiles for b in survey["bands"]]
    files += [p for t in tiles for p in mask_paths(survey, t)]
    return list(dict.fromkeys(files))  # a mask HDU inside the tile file names it twice


@functools.lru_cache(maxsize=8)
def _json_of(path: str, mtime_ns: int, size: int) -> object:
    with open(path) as fh:
        return json.load(fh)


def load_json(path: str | Path) -> object:
    """A JSON file, parsed once per version of the file (path, mtime, size): Snakemake calls
    the input and resource functions of every job, and a 10⁴-tile survey's ``tiles.json``
    (5.5 MB) parsed per job made ``snakemake -n`` spend most of its time here. The caller
    must not modify the result."""
    st = os.stat(path)
    return _json_of(str(path), st.st_mtime_ns, st.st_size)


def read_shards(shards_json: str | Path) -> dict[str, list[str]]:
    """``{shard: [tiles]}`` from the survey index's ``shards.json``."""
    return {s["shard"]: s["tiles"] for s in load_json(shards_json)["shards"]}


def training_shards(config: Mapping, shard_names: Sequence[str],
                    record: str | Path = paths.TRAINING_SHARDS) -> list[str]:
    """Shards the training sets read (``training_set.shards``).

    ``all``: every shard. ``frozen``: those recorded in ``record`` (kept by the index while
    they exist unchanged, so adding tiles re-makes no training set). An index written before
    the record existed records none, and a stale record (a shard no longer exists) names
    one that is gone: every shard then.
    """
    names = sorted(shard_names)
    record = Path(record)
    if config["training_set"]["shards"] == "all" or not record.exists():
        return names
    with open(record) as fh:
        listed = json.load(fh)["shards"]
    return listed if set(listed) <= set(names) else names


def training_shards_record(config: Mapping, record: str | Path = paths.TRAINING_SHARDS
                           ) -> list[str]:
    """The record as an input of the training sets when ``training_set.shards`` is frozen
    (rewritten by the index only when the recorded shards change), else nothing."""
    frozen = config["training_set"]["shards"] == "frozen"
    return [str(record)] if frozen and Path(record).exists() else []


def cutouts_mem_mb(config: Mapping, tiles_json: str | Path, tiles: Iterable[str]) -> int:
    """Memory of a cutouts job, MB: its largest tile's bands (float32 + mask + one band being
    read, docs/formats.md), one batch of stamps, and the interpreter."""
    wanted = set(tiles)
    pixels = max(t["shape"][0] * t["shape"][1] for t in load_json(tiles_json)["tiles"]
                 if t["tile"] in wanted)
    n_bands = len(config["survey"]["bands"])
    return int(pixels * ((n_bands + 1) * 4 + n_bands + 8) / 1e6) + CUTOUTS_BATCH_MB \
        + CUTOUTS_BASE_MB


def config_sections(config: Mapping, sections: Sequence[str]) -> dict:
    """The config sections a rule depends on, with ``seed``: editing one of them re-runs the
    rule and editing another does not."""
    return {key: config[key] for key in ("seed", *sections)}


def infer_mem_mb(config: Mapping, tiles_json: str | Path, tiles: Iterable[str]) -> int:
    """Memory of an infer job, MB, all its processes (docs/scale.md, skysift.score.stream):
    with k = ``infer.tiles_in_flight``, its largest tile of P pixels and its most crowded
    tile of m objects, B bands and s-pixel stamps, the scoring process holds the models and
    k + 2 tiles' stamps (m B s² 4 bytes each), each of the k decode workers one tile
    (P B 5 bytes) and its raw and normalised stamps; k = 0 decodes in the scoring process."""
    wanted = set(tiles)
    mine = [t for t in load_json(tiles_json)["tiles"] if t["tile"] in wanted]
    pixels = max(t["shape"][0] * t["shape"][1] for t in mine)
    n_obj = max(int(t.get("n_objects", 0)) for t in mine)
    n_bands, size = len(config["survey"]["bands"]), config["cutouts"]["stamp_size_pix"]
    stamps_mb = n_obj * n_bands * size * size * 4 / 1e6
    decode_mb = pixels * n_bands * 5 / 1e6 + 2 * stamps_mb
    k = int(config["infer"]["tiles_in_flight"])
    workers = k * (DECODE_BASE_MB + decode_mb) if k else decode_mb
    return int(INFER_BASE_MB + (k + 2) * stamps_mb + workers) + 1


def config_json(config: Mapping, sections: Sequence[str]) -> str:
    """JSON of :func:`config_sections` (what a rule passes to its step's ``--config-json``)."""
    return json.dumps(config_sections(config, sections), sort_keys=True)


def section_digest(name: str, value: object) -> str:
    """``"<name> <12 hex digits>"``: a short params entry standing for one config section.

    Snakemake prints the params that changed as a rerun reason; a digest per section names
    the section that changed (``before: 'training_set 1f0c…' now: 'training_set 9a2e…'``)
    instead of printing the whole config.
    """
    text = json.dumps(value, sort_keys=True, default=str)
    return f"{name} {hashlib.sha256(text.encode()).hexdigest()[:12]}"


def labels_files(config: Mapping) -> list[str]:
    """``[survey.labels]`` when set, else ``[]``."""
    return [config["survey"]["labels"]] if config["survey"]["labels"] else []


def known_lenses_files(config: Mapping) -> list[str]:
    """``[survey.known_lenses]`` when it names a table (the mock writes it), else ``[]``
    (null, or ``lenscat``: shipped inside skysift)."""
    value = config["survey"]["known_lenses"]
    return [value] if value and value != LENSCAT else []


def recover_targets(config: Mapping) -> list[str]:
    """Outputs of rule ``recover``: none when ``survey.known_lenses`` is null."""
    if not config["survey"]["known_lenses"]:
        return []
    return [paths.KNOWN_LENSES, paths.KNOWN_LENSES_SUMMARY]


def select_inputs(config: Mapping) -> list[str]:
    """``infer.select`` cuts on catalog columns: the catalog is then an input of infer."""
    return [config["survey"]["catalog"]] if config["infer"]["select"] else []


def infer_outputs(config: Mapping) -> dict[str, str]:
    """Outputs of rule ``infer`` besides the scores: the embeddings with ``infer.embeddings``."""
    return {"embeddings": paths.EMBEDDINGS} if config["infer"]["embeddings"] else {}


def catalog_path(config: Mapping) -> str:
    """The gathered catalog: ``results/catalog.fits``, or the folder ``results/catalog`` of
    per-shard parts (``infer.catalog_format`` ``fits_per_shard``, ``parquet_per_shard``)."""
    return paths.CATALOG if config["infer"]["catalog_format"] == "fits" else paths.CATALOG_DIR


def catalog_is_folder(config: Mapping) -> bool:
    """Whether rule gather writes the catalog as a folder of parts (a ``directory()`` output)."""
    return catalog_path(config) == paths.CATALOG_DIR


def gather_csv(config: Mapping) -> dict[str, str]:
    """Rule gather's CSV output: ``{"csv": results/catalog.csv}`` with ``infer.catalog_csv``."""
    return {"csv": paths.CATALOG_CSV} if config["infer"]["catalog_csv"] else {}


def optional_flags(outputs: Mapping[str, str], *keys: str) -> str:
    """``--KEY PATH`` for each of ``keys`` a rule's ``outputs`` hold (the optional outputs:
    gather's ``csv``, infer's ``embeddings``, similar's ``probe`` and ``map``), else ''."""
    return " ".join(f"--{k} {shlex.quote(str(outputs[k]))}" for k in keys if k in outputs)


def two_stage(config: Mapping) -> bool:
    """``infer.first_stage`` is set: infer writes first-stage scores, rescore the final ones."""
    return config["infer"]["first_stage"] is not None


def first_stage_models(config: Mapping) -> list[str]:
    """The first-stage checkpoint of every task (``infer.first_stage``): ``auto``, the task's
    primary model; a name, that models[] entry (ConfigError unless it serves every task)."""
    name = config["infer"]["first_stage"]
    if name == "auto":
        return [spec.path for spec in modelspec.primary_specs(config).values()]
    specs = modelspec.model_specs(config)
    out = []
    for task in (t["name"] for t in config["tasks"]):
        spec = next((s for s in specs if s.task == task and s.name == name), None)
        if spec is None:
            names = sorted({s.name for s in specs if s.task == task})
            raise ConfigError(f"infer.first_stage is '{name}', which does not serve task "
                              f"'{task}' (its models: {', '.join(names)}); set it to auto or "
                              "to a model of every task")
        out.append(spec.path)
    return out


def infer_scores(config: Mapping) -> str:
    """What rule ``infer`` writes per shard: the scores, or the first stage's scores."""
    return paths.STAGE1 if two_stage(config) else paths.SCORES


def infer_models(config: Mapping) -> list[str]:
    """The checkpoints rule ``infer`` scores with: every model, or the first stage's."""
    if two_stage(config):
        return first_stage_models(config)
    return [spec.path for spec in modelspec.model_specs(config)]


def infer_stage_arg(config: Mapping) -> str:
    """``--first-stage`` for ``skysift infer`` in a two-stage run, else ''."""
    return "--first-stage" if two_stage(config) else ""


def training_set_files(config: Mapping) -> list[str]:
    """Files a training set reads besides stamps, cutouts, split and labels."""
    t, bands = config["training_set"], config["survey"]["bands"]
    files = [config["survey"]["catalog"]] if t["hosts"]["catalog_cuts"] else []
    files += [t["hosts"]["ids"]] if t["hosts"]["ids"] else []
    if t["psf"]["model"] == "image" and t["psf"]["image"]:
        files += [t["psf"]["image"].format(band=b) for b in bands]
    return files


def training_split_frozen(config: Mapping) -> bool:
    """Whether the split is read as ``ancient`` by the training sets.

    Frozen training shards: the split of an object is a hash of its id (``split.salt``,
    ``split.fractions``, both in params), so a split file rewritten for a grown catalog
    changes none of the recorded shards' rows: its mtime alone must re-make nothing.
    """
    return config["training_set"]["shards"] == "frozen"


def model_inputs(config: Mapping, task: str, model: str) -> dict[str, str]:
    """A trained model reads its task's training sets; an imported one its checkpoint only."""
    spec = modelspec.find_spec(config, task, model)
    if spec.checkpoint:
        return {"checkpoint": spec.checkpoint}
    inputs = {"trainset": paths.TRAINSET.format(task=task),
              "augmented": paths.AUGMENTED.format(task=task)}
    if spec.init:  # another model's checkpoint (trained first) or a local weights file
        inputs["init"] = spec.init
    return inputs


def model_args(inputs: Mapping[str, str]) -> str:
    """``--trainset``/``--augmented`` for a trained model; nothing for an imported one (the
    ``init`` weights are an input for the order of jobs; the train step reads the config)."""
    return " ".join(f"--{key} {shlex.quote(str(value))}" for key, value in inputs.items()
                    if key in ("trainset", "augmented"))


#: The config sections a training set depends on (:func:`trainset_config`).
TRAINSET_SECTIONS = ("seed", "survey", "preprocess", "training_set", "split", "strict", "tasks",
                     "review")
#: The config sections a trained model depends on (:func:`model_config`).
MODEL_SECTIONS = ("seed", "augment", "train", "tasks", "models")


def trainset_config(config: Mapping, task: str) -> dict:
    """The config one task's training set depends on: its own task entry, not the list, so
    adding a task or changing another's label renders no simulation again (and no models
    entry at all: iterating on models never re-makes a training set). ``review`` holds only
    the ``review.grades`` entries that may grade this task, so grades of another task, or the
    page's display settings, re-make nothing, while a changed entry (its round) re-makes it."""
    sections = {key: config[key] for key in TRAINSET_SECTIONS if key not in ("tasks", "review")}
    sections["tasks"] = [t for t in config["tasks"] if t["name"] == task]
    sections["review"] = {"grades": task_entries(config, task)}
    return sections


def grades_files(config: Mapping, task: str) -> list[str]:
    """The grades files (``review.grades``) a task's training set reads: the entries naming
    the task, and those naming none (their file says which task each row grades)."""
    return list(dict.fromkeys(e["file"] for e in task_entries(config, task)))


def trainset_config_json(config: Mapping, task: str) -> str:
    """JSON of :func:`trainset_config`."""
    return json.dumps(trainset_config(config, task), sort_keys=True)


def model_config(config: Mapping, task: str, model: str) -> dict:
    """The config one model's training depends on: its task and its own entry, not the
    whole lists, so adding a model or a task retrains nothing else."""
    spec = modelspec.find_spec(config, task, model)
    sections = {key: config[key] for key in ("seed", "augment", "train")}
    sections["tasks"] = [t for t in config["tasks"] if t["name"] == spec.task]
    sections["models"] = [spec.entry()]
    return sections


def model_config_json(config: Mapping, task: str, model: str) -> str:
    """JSON of :func:`model_config`."""
    return json.dumps(model_config(config, task, model), sort_keys=True)


def model_gpus(config: Mapping, task: str, model: str) -> int:
    """GPUs a train job asks for: one when the model trains on ``cuda``."""
    return 1 if modelspec.find_spec(config, task, model).train["device"] == "cuda" else 0


def model_metrics_files(config: Mapping) -> list[str]:
    """Every trained model's metrics JSON: evaluate reports their simulated test rows."""
    return [paths.MODEL_METRICS.format(task=s.task, model=s.name)
            for s in modelspec.model_specs(config)]


def final_targets(config: Mapping) -> list[str]:
    """What ``rule all`` asks for: catalog, metrics and figures, every model's curve,
    candidates and review pages per task, and known-lens recovery when configured."""
    tasks = [t["name"] for t in config["tasks"]]
    targets = [paths.CHECK, paths.REJECTS, catalog_path(config), *gather_csv(config).values(),
               paths.CANDIDATES_TABLE, paths.METRICS, paths.ROC, paths.COMPLETENESS,
               paths.PURITY, paths.RELIABILITY]
    targets += [paths.MODEL_CURVE.format(task=s.task, model=s.name)
                for s in modelspec.model_specs(config)]
    targets += [paths.CANDIDATES.format(task=t) for t in tasks]
    targets += recover_targets(config)
    targets += [p.format(task=t) for t in tasks for p in (paths.REVIEW_HTML, paths.REVIEW_SHEET,
                                                       paths.REVIEW_SAMPLE)]
    targets += similar_targets(config)
    return targets


def every_shard_patterns(config: Mapping) -> list[str]:
    """Per-shard files ``rule all`` asks for every shard of the index: the cutouts with
    ``cutouts.all_shards`` (else only the training shards' are made, for the training
    sets), else none."""
    return [paths.CUTOUTS] if config["cutouts"]["all_shards"] else []


def similar_tasks(config: Mapping) -> list[str]:
    """Tasks of ``skysift similar`` (``similar.tasks``, null: the lens task); none unless
    ``similar.queries`` or ``similar.grades`` is given."""
    opts, names = config["similar"], [t["name"] for t in config["tasks"]]
    if not opts["queries"] and not opts["grades"]:
        return []
    if [t for t in opts["tasks"] or [] if t not in names]:
        raise ConfigError(f"similar.tasks: {opts['tasks']} are not all tasks of the config "
                          f"(tasks: {names}); list tasks[].name entries")
    lens = config["training_set"]["lens_task"]
    return list(opts["tasks"]) if opts["tasks"] is not None else [lens] if lens in names else []


def similar_outputs(config: Mapping) -> dict[str, str]:
    """Outputs of rule ``similar``: the neighbour list, the probe's table (``similar.probe``)
    and the map (``similar.map`` not none)."""
    out = {"list": paths.SIMILAR, "probe": paths.SIMILAR_PROBE, "map": paths.SIMILAR_MAP}
    return {k: v for k, v in out.items() if k == "list" or (k == "probe" and config[
        "similar"]["probe"]) or (k == "map" and config["similar"]["map"] != "none")}


def similar_targets(config: Mapping) -> list[str]:
    """What ``rule all`` asks of rules ``similar`` and ``similar_review`` per similar task."""
    pats = [*similar_outputs(config).values(), paths.SIMILAR_HTML, paths.SIMILAR_SHEET]
    return [p.format(task=t) for t in similar_tasks(config) for p in pats]
