# Validation, wildcard constraints and the input functions of every rule. Each function is
# a thin binding of skysift.plan (tested Python) to Snakemake's config and checkpoints.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, "../../config/schema.yaml")

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)  # the workflow runs from a checkout whether or not skysift is installed

from skysift import config as skysift_config  # noqa: E402
from skysift import modelspec, paths, plan  # noqa: E402

skysift_config.validate(config, "config")  # the checks a JSON schema cannot express

# Every CLI runs from this checkout's src/, also in conda envs and on cluster nodes.
# MKL_CBWR / MKL_DYNAMIC: MKL's results independent of memory alignment and thread teams.
shell.prefix(f"export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}} "
             "MKL_CBWR=${{MKL_CBWR:-AUTO,STRICT}} MKL_DYNAMIC=${{MKL_DYNAMIC:-FALSE}}; ")

TASKS = [task["name"] for task in config["tasks"]]
MODEL_SPECS = modelspec.model_specs(config)
ENV = "../../envs/skysift.yaml"  # for --sdm conda; relative to the rule files


wildcard_constraints:
    shard="s[0-9]+",
    task="|".join(TASKS),
    model="|".join(sorted({spec.name for spec in MODEL_SPECS})),


def shards():
    """{shard: [tiles]} decided by the survey index checkpoint."""
    return plan.read_shards(checkpoints.survey_index.get().output.shards)


def per_shard(pattern):
    """Input function: ``pattern`` (with {shard}) for every shard of the index."""
    return lambda wildcards: expand(pattern, shard=sorted(shards()))


def every_shard_targets(wildcards):
    """Rule all's per-shard files (plan.every_shard_patterns: cutouts.all_shards)."""
    patterns = plan.every_shard_patterns(config)
    return expand(patterns, shard=sorted(shards())) if patterns else []


def training_shard_files(pattern):
    """Input function: ``pattern`` (with {shard}) for every shard training reads."""
    return lambda wildcards: expand(pattern, shard=plan.training_shards(config, shards()))


def training_shards_record(wildcards):
    shards()  # after the survey_index checkpoint
    return plan.training_shards_record(config)


def shard_files(wildcards):
    """Tile and mask files of one shard: the cutouts job re-runs when one changes."""
    return plan.tile_files(config, shards()[wildcards.shard])


def shard_rows_file(wildcards):
    """The shard's own rows: rewritten by the index only when they change, so adding tiles
    re-runs only the new shards."""
    shards()  # after the survey_index checkpoint
    return paths.SHARD_ROWS.format(shard=wildcards.shard)


def cutouts_mem_mb(wildcards):
    tiles_json = checkpoints.survey_index.get().output.tiles
    return plan.cutouts_mem_mb(config, tiles_json, shards()[wildcards.shard])


def config_params(names, sections_of):
    """Params of a rule that reads the config sections ``names`` (``sections_of(wildcards)``
    returns them as a dict): ``cfg``, their JSON for the step's ``--config-json``, and per
    section a short ``config_<name>`` digest (plan.section_digest). Snakemake records and
    compares the digests only (a params function taking ``output`` is derived: neither
    recorded nor compared), so a changed key re-runs the rule with the reason
    "before: 'train 1f0c…' now: 'train 9a2e…'" instead of a page of JSON."""
    params = {"cfg": lambda wildcards, output: json.dumps(sections_of(wildcards),
                                                          sort_keys=True)}
    for name in names:
        params[f"config_{name}"] = (lambda wildcards, name=name:
                                    plan.section_digest(name, sections_of(wildcards)[name]))
    return params


def cfg_params(*sections):
    """``**cfg_params("survey", ...)``: the params of a rule that depends on these config
    sections (and the seed); see config_params."""
    return config_params(("seed", *sections),
                         lambda wildcards: plan.config_sections(config, sections))


def cfg(*sections):
    """``cfg=cfg(...)``, the former form: the sections' JSON as one recorded params entry (a
    rerun prints it whole as the reason). Kept so rules written for it still work; prefer
    ``**cfg_params(...)``."""
    text = plan.config_json(config, sections)
    return lambda wildcards: text


def after_index(function):
    """``function`` as an input function that waits for the survey index checkpoint.

    Snakemake keeps the rerun reason of a job planned before a checkpoint ran: augment and
    train, planned while the re-running index left the training set's inputs unknown, would
    re-run though the index keeps the training shards. Waiting for the index, they are
    planned again after it, from the training set as it then stands. In a new working
    directory (no index yet) nothing waits, so a dry run still plans every rule.
    """
    def inputs(wildcards):
        if Path(paths.INDEX_SHARDS).exists():  # the checkpoint's output
            shards()  # after the survey_index checkpoint
        return function(wildcards)

    return inputs


def model_inputs(wildcards):
    return plan.model_inputs(config, wildcards.task, wildcards.model)


def model_args(wildcards, input):
    return plan.model_args(dict(input.items()))


def trainset_cfg():
    return config_params(plan.TRAINSET_SECTIONS,
                         lambda wildcards: plan.trainset_config(config, wildcards.task))


def model_cfg():
    return config_params(plan.MODEL_SECTIONS, lambda wildcards: plan.model_config(
        config, wildcards.task, wildcards.model))


def model_gpus(wildcards):
    return plan.model_gpus(config, wildcards.task, wildcards.model)


def stamps_output():
    """infer.keep_stamps: false deletes each shard's stamps once infer and the training
    sets read them."""
    return paths.STAMPS if config["infer"]["keep_stamps"] else temp(paths.STAMPS)


def training_split():
    return ancient(paths.SPLIT) if plan.training_split_frozen(config) else paths.SPLIT


def catalog_output():
    """infer.catalog_format: the one catalog file, or the folder of its per-shard parts."""
    path = plan.catalog_path(config)
    return directory(path) if plan.catalog_is_folder(config) else path


def similar_output():
    """Rule similar's outputs (plan.similar_outputs), the map registered for the report."""
    out = plan.similar_outputs(config)
    if "map" in out:
        out["map"] = report(out["map"], caption="../report/similar_map.rst",
                            category="More like this", labels={"task": "{task}"})
    return out
