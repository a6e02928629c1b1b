"""A snakemake run killed mid-way completes with --rerun-incomplete to the same catalog.

Reuses the suite's shared tiny run: a copy of its working directory loses one shard's scores
and everything downstream, snakemake is killed while re-scoring, then re-run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import numpy as np
from astropy.table import Table
from conftest import run_env, snakemake_cmd


def test_killed_run_completes_with_rerun_incomplete(tiny_run, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    scores = sorted((work / "results" / "scores").glob("*.fits"))
    assert scores, "the tiny run wrote no per-shard scores"
    victim = scores[0]
    for path in [victim, work / "results" / "catalog.fits", work / "results" / "metrics.json"]:
        path.unlink()
    log = work / "logs" / "infer" / f"{victim.stem}.log"
    log.unlink(missing_ok=True)
    proc = subprocess.Popen(snakemake_cmd(work), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=run_env(), start_new_session=True)
    deadline = time.monotonic() + 120
    while not log.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert log.exists(), "infer never started"
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the running job, mid-way
    proc.wait()
    assert not victim.exists(), "a killed job left its output under the final name"
    done = subprocess.run(snakemake_cmd(work, "--rerun-incomplete"), capture_output=True,
                          text=True, env=run_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    before = Table.read(tiny_run / "results" / "catalog.fits")
    after = Table.read(work / "results" / "catalog.fits")
    assert before.colnames == after.colnames
    for name in before.colnames:
        np.testing.assert_array_equal(np.asarray(after[name]), np.asarray(before[name]), name)
