# The named models of config models: one checkpoint per (task, model), see docs/models.md.
import json as _json
import shlex as _shlex

from skysift import modelspec as _modelspec  # noqa: E402

MODEL_SPECS = _modelspec.model_specs(config)
MODEL_FILES = [spec.path for spec in MODEL_SPECS]


wildcard_constraints:
    model="|".join(sorted({spec.name for spec in MODEL_SPECS})),


def model_spec(wildcards):
    return _modelspec.find_spec(config, wildcards.task, wildcards.model)


def model_inputs(wildcards):
    """A trained model reads its task's training sets; an imported one its checkpoint only."""
    spec = model_spec(wildcards)
    if spec.checkpoint:
        return {"checkpoint": spec.checkpoint}
    return {"trainset": f"results/train/{spec.task}.h5",
            "augmented": f"results/train/{spec.task}.augmented.h5"}


def model_args(wildcards, input):
    """--trainset/--augmented for a trained model; nothing for an imported one."""
    return " ".join(f"--{key} {_shlex.quote(str(value))}" for key, value in input.items()
                    if key in ("trainset", "augmented"))


def model_cfg(wildcards):
    """The config one model's training depends on: its task and its own entry, not the
    whole lists, so adding a model or a task retrains nothing else."""
    spec = model_spec(wildcards)
    sections = {key: config[key] for key in ("seed", "augment", "train")}
    sections["tasks"] = [t for t in config["tasks"] if t["name"] == spec.task]
    sections["models"] = [spec.entry()]
    return _json.dumps(sections, sort_keys=True)


def models_resources(wildcards):
    return 1 if model_spec(wildcards).train["device"] == "cuda" else 0
