"""The README's count of the jobs a survey submits, against what Snakemake plans.

The survey index is a checkpoint: before it ran, ``snakemake -n`` cannot list the per-shard
jobs. Each case runs the tiny survey up to it (mock, check, survey_index), then dry-runs the
rest and adds those three jobs back. Two cases (one shard and two tasks; two shards, one
task and one training shard) so that a term with the wrong factor is caught. In the second
the record of the training shards lists s0000 only, as the index keeps it after tiles were
added to a finished run: s0001 is only scored, and plans no cutouts and no preprocess job.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from conftest import REPO, TINY, run_env, snakemake_cmd

from skysift.config import deep_update, load
from skysift.modelspec import model_specs
from skysift.plan import read_shards, training_shards

#: The jobs run before the dry run: the checkpoint and what it needs.
BEFORE_DRY_RUN = {"mock": 1, "check": 1, "survey_index": 1}


def readme_formula() -> tuple[dict[str, int], int, list[str]]:
    """The README's formula: factors of S, T, M, the constant, and the conditional jobs.

    It reads "submits 3 S + 3 T + M + 7 jobs (...), plus one `recover` job ... and one
    `mock` job ...:": the factors and constant from the formula, the conditional rules from
    each "one `rule` job" before the colon.
    """
    text = " ".join((REPO / "README.md").read_text().split())
    match = re.search(r"submits ((?:(?:\d+ )?(?:S_t|S|T|M) \+ )+\d+) jobs", text)
    assert match, "README: the sentence 'submits a S + b S_t + c T + d M + e jobs' is gone"
    tail = text[match.end():].split(":", 1)[0].split(";")[-1]  # after the parenthesis
    factors, constant = {}, 0
    for term in match.group(1).split(" + "):
        parts = term.split()
        if parts[-1] in ("S", "S_t", "T", "M"):
            factors[parts[-1]] = int(parts[0]) if len(parts) == 2 else 1
        else:
            constant = int(term)
    conditional = re.findall(r"one `(\w+)` job", tail)
    return factors, constant, conditional


def job_stats(stdout: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake dry run, as {rule: count}."""
    table = stdout.split("Job stats:")[1].split("\n\n")[0]
    counts = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


CASES = {
    "one shard, two tasks": {},
    "two shards, one task, one trained": {"index": {"tiles_per_shard": 1},
                                          "tasks": [{"name": "lens", "label": "is_lens"}]},
}


def keep_first_training_shard(work) -> list[str]:
    """Rewrite the index's record of the training shards to list s0000 only: what the index
    keeps (training_set.shards: frozen) when s0001's tiles were added after the first run."""
    path = work / "results" / "index" / "training_shards.json"
    record = json.loads(path.read_text())
    assert record["shards"] == ["s0000", "s0001"], record
    record = {"shards": ["s0000"], "digests": {"s0000": record["digests"]["s0000"]}}
    path.write_text(json.dumps(record))
    return record["shards"]


@pytest.mark.parametrize("extra", CASES.values(), ids=CASES.keys())
def test_readme_job_count_matches_snakemake_plan(tmp_path, extra):
    work = tmp_path / "work"
    (work / "config").mkdir(parents=True)
    base = (REPO / "config" / "config.yaml").read_text()
    (work / "config" / "config.yaml").write_text(base)
    extra_file = tmp_path / "extra.yaml"
    extra_file.write_text(yaml.safe_dump(extra))
    up_to_index = subprocess.run(
        snakemake_cmd(work, "--configfile", str(TINY), str(extra_file), "--until",
                      "survey_index"), capture_output=True, text=True, env=run_env(), timeout=300)
    assert up_to_index.returncode == 0, up_to_index.stderr[-4000:]
    if extra.get("index", {}).get("tiles_per_shard") == 1:
        keep_first_training_shard(work)
    dry = subprocess.run(snakemake_cmd(work, "--configfile", str(TINY), str(extra_file), "-n"),
                         capture_output=True, text=True, env=run_env(), timeout=300)
    assert dry.returncode == 0, dry.stderr[-4000:]
    planned = job_stats(dry.stdout)
    assert not set(planned) & set(BEFORE_DRY_RUN), planned  # those ran: none is planned again
    for rule, n in BEFORE_DRY_RUN.items():
        planned[rule] = n

    merged = yaml.safe_load(base)
    for layer in (yaml.safe_load(TINY.read_text()), extra):
        deep_update(merged, layer)
    config = load(json_text=json.dumps(merged))
    shards = read_shards(work / "results" / "index" / "shards.json")
    trained = training_shards(config, shards, work / "results" / "index" / "training_shards.json")
    terms = {"S": len(shards), "S_t": len(trained), "T": len(config["tasks"]),
             "M": len(model_specs(config))}
    factors, constant, conditional = readme_formula()
    formula = sum(factors[k] * terms[k] for k in factors) + constant
    # the tiny survey is a mock with known lenses: every conditional job runs
    assert set(conditional) == {"mock", "recover"}
    assert planned["mock"] == 1 and planned.get("recover") == 1
    assert sum(planned.values()) == formula + len(conditional), (planned, terms)
    # infer scales with S, cutouts and preprocess with the training shards, as the README says
    assert planned["infer"] == terms["S"], planned
    assert planned["cutouts"] == planned["preprocess"] == terms["S_t"], planned
    assert terms["S_t"] == (1 if terms["S"] == 2 else terms["S"])  # s0001 is only scored
    assert planned["review_stamps"] == 1


def test_readme_examples_follow_the_formula():
    """The README's worked examples: two tasks with the full recipe's four models."""
    factors, constant, _ = readme_formula()
    text = " ".join((REPO / "README.md").read_text().split())
    for tiles, digits in ((10**4, -1), (10**5, -2)):
        terms = {"S": -(-tiles // 32), "T": 2, "M": 4}
        terms["S_t"] = terms["S"]  # a first run: the training sets read every shard
        jobs = sum(factors[k] * terms[k] for k in factors) + constant
        assert f"~{round(jobs, digits):,} jobs" in text, (tiles, jobs)



def test_a_user_survey_of_synthetic_headers_plans_the_formula(tmp_path):
    """benchmarks/plan_survey.py's method at a small size: empty tile files, synthetic
    headers, the real index, then ``snakemake -n`` plans the README's count less the two
    jobs that ran (check, survey_index): what docs/scale.md times at 10⁴ tiles."""
    import runpy

    bench = runpy.run_path(str(REPO / "benchmarks" / "plan_survey.py"))
    bench["build"](tmp_path, 70)  # 32 tiles per shard: 3 shards, the last one short
    _, planned, _ = bench["dry_run"](tmp_path)
    config = load(tmp_path / "config" / "config.yaml")
    terms = {"S": len(read_shards(tmp_path / "results" / "index" / "shards.json")),
             "T": len(config["tasks"]), "M": len(model_specs(config))}
    assert terms == {"S": 3, "T": 2, "M": 4}  # the full recipe on a user's survey
    terms["S_t"] = terms["S"]  # a first run: the training sets read every shard
    factors, constant, _ = readme_formula()
    formula = sum(factors[k] * terms[k] for k in factors) + constant
    assert planned["total"] == formula - 2 and "check" not in planned, planned
    assert planned["infer"] == planned["cutouts"] == 3
