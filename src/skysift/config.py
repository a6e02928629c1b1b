"""Load and validate the configuration against ``config/schema.yaml``.

The schema is the single source of truth for options and defaults; this module fills the
defaults exactly as ``snakemake.utils.validate(..., set_default=True)`` does.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from skysift.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"


def schema() -> dict:
    """Return the configuration schema (a JSON Schema as a dict)."""
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _extend_with_default(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema_)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_default(jsonschema.Draft202012Validator)


def _suggest(error: jsonschema.ValidationError) -> str:
    if error.validator != "additionalProperties":
        return ""
    allowed = list(error.schema.get("properties", {}))
    extra = [k for k in error.instance if k not in allowed]
    hints = []
    for key in extra:
        close = difflib.get_close_matches(key, allowed, n=1)
        hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return "; unknown key " + ", ".join(hints) + f"; valid keys: {', '.join(allowed)}"


def validate(config: dict, source: str = "config") -> dict:
    """Validate ``config`` in place, filling schema defaults; return it.

    Raises
    ------
    ConfigError
        Naming the offending key path, the problem and the valid choices.
    """
    full_schema = schema()
    _raise_first(_Validator(full_schema).iter_errors(config), source)
    _resolve_recipe(config, full_schema, source)
    _resolve_mock_paths(config)
    fr = config["split"]["fractions"]
    if abs(fr["train"] + fr["val"] + fr["test"] - 1.0) > 1e-6:
        raise ConfigError(f"{source}: split.fractions must sum to 1, got {fr}")
    names = [t["name"] for t in config["tasks"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: tasks: duplicate task names {names}")
    missing = [n for n in names if n not in config["evaluate"]["prevalence"]]
    if missing:
        raise ConfigError(f"{source}: key 'evaluate.prevalence' has no entry for tasks {missing}; "
                          "state the expected fraction of positives of every task, e.g. "
                          f"evaluate: {{prevalence: {{{missing[0]}: 0.001}}}}")
    return config


def _raise_first(errors, source: str, prefix: tuple = ()) -> None:
    """Raise the first schema error (by key path), naming its key, problem and choices."""
    errors = sorted(errors, key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in (*prefix, *err.absolute_path)) or "(top level)"
        raise ConfigError(
            f"{source}: key '{where}': {err.message}{_suggest(err)}; "
            f"see config/schema.yaml for every key, its type and default"
        )


def recipe_name(config: Mapping) -> str:
    """The recipe ``recipe: auto`` stands for: demo on the built-in mock, full otherwise."""
    if config["recipe"] != "auto":
        return config["recipe"]
    return "demo" if config["survey"]["kind"] == "mock" else "full"


def _resolve_recipe(config: dict, full_schema: dict, source: str) -> None:
    """``models: null`` takes the models list of the recipe (recipes.demo or recipes.full),
    validated like a models list (defaults filled); an explicit list is kept as it is."""
    if config["models"] is not None:
        return
    name = recipe_name(config)
    models = copy.deepcopy(config["recipes"][name])
    item_schema = {"type": "array", "items": full_schema["properties"]["models"]["items"]}
    _raise_first(_Validator(item_schema).iter_errors(models), source, ("recipes", name))
    config["models"] = models


def _resolve_mock_paths(config: dict) -> None:
    """With ``survey.kind: mock``, null labels and known lenses take what the mock writes
    (``mock.truth``, ``mock.known_lenses``); a ``files`` survey inherits nothing of the mock."""
    survey, mock = config["survey"], config["mock"]
    if survey["kind"] != "mock":
        return
    if survey["labels"] is None:
        catalog = Path(survey["catalog"])
        survey["labels"] = mock["truth"] or str(catalog.with_name(f"{catalog.stem}_truth.fits"))
    if survey["known_lenses"] is None:
        survey["known_lenses"] = mock["known_lenses"]


def deep_update(base: dict, other: Mapping) -> dict:
    """Recursively merge ``other`` into ``base`` (in place) and return ``base``."""
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load(path: str | Path | None = None, json_text: str | None = None,
         overrides: Sequence[str] = ()) -> dict:
    """Load a config: YAML file, then a JSON document over it, then ``key.sub=value`` overrides."""
    config: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            with open(path) as fh:
                config = yaml.safe_load(fh) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found; "
                              "pass --config with an existing YAML file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
    if json_text:
        try:
            deep_update(config, json.loads(json_text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config-json is not valid JSON: {exc}") from None
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return validate(config, source)


def config_hash(config: Mapping) -> str:
    """Stable short hash of a config (sorted JSON), recorded in every output."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
