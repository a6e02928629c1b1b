"""Shared fixtures: the one tiny run of the real Snakefile that every end-to-end test reads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "workflow" / "tiny.yaml"


def snakemake_cmd(workdir: Path, *extra: str) -> list[str]:
    """The snakemake command line of the tiny run (the venv's snakemake, 2 cores)."""
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(TINY), "--cores", "2", "--nolock", *extra]


def run_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """Run the whole pipeline once on the tiny mock survey; return its working directory."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    shutil.copytree(REPO / "config", workdir / "config")
    proc = subprocess.run(snakemake_cmd(workdir), capture_output=True, text=True,
                          env=run_env(), timeout=600)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}"
                         for p in (workdir / "logs").rglob("*.log"))
        pytest.fail(f"tiny snakemake run failed:\n{proc.stderr[-6000:]}\n{logs}")
    return workdir


WORKFLOW = REPO / "tests" / "workflow"


def pytest_collection_modifyitems(items):
    """Every test of tests/workflow is end to end (marker ``e2e``): ``make test-fast`` and
    ``pytest -m "not e2e"`` leave them out."""
    for item in items:
        if WORKFLOW in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _reset_logging():
    """CLIs' main() installs a stderr handler (as a program should); drop it after each test."""
    import logging
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
