"""envs/skysift.yaml (for --sdm conda) must match pyproject.toml and the lock file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONDA_NAMES = {"torch": "pytorch", "dask": "dask-core"}


def test_conda_env_matches_pyproject_and_constraints():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.strip().split("==")
            pins[name.lower()] = version
    env = yaml.safe_load((REPO / "envs" / "skysift.yaml").read_text())
    conda = dict(d.split("=", 1) for d in env["dependencies"] if isinstance(d, str))
    for dep in deps:
        name = re.split(r"[<>=\[ ;]", dep)[0].lower()
        if name == "snakemake":  # runs the workflow, not inside a rule
            continue
        assert CONDA_NAMES.get(name, name) in conda, f"{name} missing from envs/skysift.yaml"
        assert conda[CONDA_NAMES.get(name, name)] == pins[name], f"{name} pin differs"
    assert pins["torch"] == "2.13.0"


def test_torch_not_pinned_exactly_in_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.startswith("torch==") for d in deps)
