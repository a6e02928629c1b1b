"""The named models of the config (``models:``), expanded over the tasks they serve.

A ``models`` entry names an architecture and optional settings; it is trained for every task
it lists (all tasks when ``tasks`` is null). Each (task, model) pair is one checkpoint,
``results/models/{task}/{model}.pt``, and one catalog column, ``score_{task}_{model}``.
Per task, the entry marked ``primary`` (else the first one listed for that task) ranks the
candidate lists and headlines ``metrics.json``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

from skysift import paths
from skysift.errors import ConfigError

#: keys of a models[] entry that override the train block for that model.
TRAIN_OVERRIDES = ("epochs", "batch_size", "lr", "weight_decay", "patience", "monitor")
#: Where the train rule writes checkpoints (relative to the working directory).


def score_column(task: str, model: str) -> str:
    """Catalog column holding the logits of ``model`` for ``task``."""
    return f"score_{task}_{model}"


def stage1_column(task: str) -> str:
    """``score1_{task}``: the first-stage logit of ``task`` (``infer.first_stage``)."""
    return f"score1_{task}"


def rank_column(column: str) -> str:
    """``rank_{task}_{model}`` of ``score_{task}_{model}``; ``rank1_{task}`` of the first
    stage's ``score1_{task}`` (infer.first_stage)."""
    if column.startswith("score1_"):
        return column.replace("score1_", "rank1_", 1)
    return column.replace("score_", "rank_", 1)


@dataclass(frozen=True)
class ModelSpec:
    """One trained (or imported) classifier: a models[] entry applied to one task.

    ``train`` is the config's ``train`` block with the entry's overrides applied;
    ``checkpoint`` is the existing checkpoint to use instead of training (``{task}``
    substituted), or None.
    """

    name: str
    task: str
    architecture: str
    members: int = 1
    checkpoint: str | None = None
    primary: bool = False
    #: weights to start from: another model's checkpoint (results/models/...) or a file
    init: str | None = None
    train: dict = field(default_factory=dict, compare=False, hash=False)
    raw: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def column(self) -> str:
        """The catalog column of this model's logits."""
        return score_column(self.task, self.name)

    @property
    def path(self) -> str:
        """The checkpoint the train rule writes, ``results/models/{task}/{name}.pt``."""
        return paths.MODEL.format(task=self.task, model=self.name)

    @property
    def classical(self) -> dict:
        """The entry's ``classical`` block (features, tuning grid and budget); CNNs ignore it."""
        return self.raw["classical"]

    def entry(self) -> dict:
        """The models[] entry restricted to this task (what the train rule passes on)."""
        return {**self.raw, "tasks": [self.task]}


def _checkpoint_for(entry: Mapping, task: str, tasks: list[str], pos: int) -> str | None:
    path = entry.get("checkpoint")
    if not path:
        return None
    if "{task}" not in path and len(tasks) > 1:
        raise ConfigError(f"models[{pos}].checkpoint '{path}' serves tasks {tasks}; put "
                          "{task} in the path, or set models[].tasks to one task")
    try:
        return path.format(task=task)
    except (KeyError, IndexError, ValueError):
        raise ConfigError(f"models[{pos}].checkpoint '{path}': only {{task}} may appear in "
                          "braces") from None


def _init_for(config: Mapping, entry: Mapping, task: str, pos: int) -> str | None:
    """The weights file a model starts from: another model's checkpoint, or a path."""
    init = entry.get("init")
    if not init:
        return None
    if init == entry["name"]:
        raise ConfigError(f"models[{pos}] ('{init}').init names the model itself; name "
                          "another model of the run or a weights file")
    for other in config["models"]:
        if other["name"] != init:
            continue
        if task not in (other.get("tasks") or [t["name"] for t in config["tasks"]]):
            raise ConfigError(f"models[{pos}] ('{entry['name']}').init is '{init}', which does "
                              f"not serve task '{task}'; add the task to its tasks")
        if other["architecture"] == "classical" or other.get("init") == entry["name"]:
            raise ConfigError(f"models[{pos}] ('{entry['name']}').init is '{init}', a classical "
                              "model or one initialised from this one; name a CNN trained "
                              "before it")
        return paths.MODEL.format(task=task, model=init)
    return init.format(task=task)


def model_specs(config: Mapping) -> list[ModelSpec]:
    """Every (task, model) pair of the config, in config order (entry, then task order).

    Raises
    ------
    ConfigError
        A models[] entry names an unknown task, a name repeats for a task, or a task has
        several primary models or none at all.
    """
    task_names = [t["name"] for t in config["tasks"]]
    specs: list[ModelSpec] = []
    seen: set[tuple[str, str]] = set()
    for pos, entry in enumerate(config["models"]):
        tasks = entry.get("tasks") or task_names
        unknown = [t for t in tasks if t not in task_names]
        if unknown:
            raise ConfigError(f"models[{pos}] ('{entry['name']}').tasks names {unknown}, not "
                              f"among tasks {task_names}; fix the name or add the task")
        train = copy.deepcopy(dict(config["train"]))
        train.update({k: entry[k] for k in TRAIN_OVERRIDES if entry.get(k) is not None})
        for task in tasks:
            if (task, entry["name"]) in seen:
                raise ConfigError(f"models[{pos}]: a second model named '{entry['name']}' for "
                                  f"task '{task}'; give each model its own name")
            seen.add((task, entry["name"]))
            specs.append(ModelSpec(
                name=entry["name"], task=task, architecture=entry["architecture"],
                members=int(entry.get("members", 1)),
                checkpoint=_checkpoint_for(entry, task, list(tasks), pos),
                primary=bool(entry.get("primary", False)), train=train,
                init=_init_for(config, entry, task, pos), raw=copy.deepcopy(dict(entry))))
    for task in task_names:
        marked = [s.name for s in specs if s.task == task and s.primary]
        if len(marked) > 1:
            raise ConfigError(f"models: task '{task}' has several primary models {marked}; "
                              "mark one with primary: true")
        if not any(s.task == task for s in specs):
            raise ConfigError(f"models: no model serves task '{task}'; add a models[] entry "
                              "whose tasks include it (or leave its tasks null)")
    return specs


def primary_specs(config: Mapping) -> dict[str, ModelSpec]:
    """{task: its primary ModelSpec}: the one marked primary, else the first listed."""
    specs = model_specs(config)
    out = {}
    for task in (t["name"] for t in config["tasks"]):
        mine = [s for s in specs if s.task == task]
        out[task] = next((s for s in mine if s.primary), mine[0])
    return out


def find_spec(config: Mapping, task: str, name: str) -> ModelSpec:
    """The ModelSpec of model ``name`` for ``task``; ConfigError listing the valid pairs."""
    specs = model_specs(config)
    for spec in specs:
        if spec.task == task and spec.name == name:
            return spec
    pairs = ", ".join(f"{s.task}/{s.name}" for s in specs)
    raise ConfigError(f"no model '{name}' for task '{task}' in config models (task/model: "
                      f"{pairs}); add it to models or fix --task/--model")
