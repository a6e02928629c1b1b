"""User errors through the real entry points: one message naming the file or key and the fix,
a non-zero exit, and no partial output."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from astropy.table import Table
from conftest import REPO, TINY, run_env, snakemake_cmd

from skysift import config as cfg
from skysift.sim import mock
from skysift.survey import index as survey


@pytest.fixture(scope="module")
def small_survey(tmp_path_factory):
    """A two-tile survey on disk (written by the mock, then used as a user's 'files' survey)."""
    root = tmp_path_factory.mktemp("survey")
    conf = cfg.load(TINY, overrides=[f"survey.tiles={root}/tiles/{{tile}}_{{band}}.fits",
                                     f"survey.catalog={root}/catalog.fits",
                                     f"survey.labels={root}/truth.fits"])
    mock.make_survey(conf)
    conf["survey"]["kind"] = "files"
    return root, conf


def _write_config(path, conf):
    path.write_text(yaml.safe_dump(conf))
    return path


def test_missing_band_file_does_not_stop_the_plan(small_survey, tmp_path):
    """A tile missing a band file is a counted reject of its objects (the index's), fatal only
    under strict (tests/survey/test_index.py): the plan of the rest of the survey runs."""
    root, conf = small_survey
    conf = {**conf, "survey": {**conf["survey"], "known_lenses": None}}  # none on disk here
    missing = root / "tiles" / "m001_r.fits"
    moved = missing.with_name("moved.fits")
    missing.rename(moved)
    try:
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.yaml").write_text((REPO / "config/config.yaml").read_text())
        user = _write_config(tmp_path / "user.yaml", conf)
        proc = subprocess.run(snakemake_cmd(tmp_path, "-n", "--configfile", str(user)),
                              capture_output=True, text=True, env=run_env(), timeout=120)
    finally:
        moved.rename(missing)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "m000_r.fits" in proc.stdout  # the complete tile is the check's input
    assert "m001_r.fits" not in proc.stdout  # not an input of any job
    assert not (tmp_path / "results").exists()


def test_index_cli_missing_band_rejects_its_objects_exit_2_when_strict(small_survey, tmp_path,
                                                                       capsys):
    root, conf = small_survey
    missing = root / "tiles" / "m000_i.fits"
    moved = missing.with_name("moved.fits")
    missing.rename(moved)
    text = __import__("json").dumps(conf)
    try:
        strict = survey.main(["--config-json", text, "--out-dir", str(tmp_path / "s"),
                              "--strict"])
        err = capsys.readouterr().err
        code = survey.main(["--config-json", text, "--out-dir", str(tmp_path / "index")])
    finally:
        moved.rename(missing)
    assert strict == 2 and "m000_i.fits" in err and not (tmp_path / "s").exists()
    assert code == 0
    rejects = Table.read(tmp_path / "index" / "rejects.ecsv")
    assert "missing_band:i" in set(rejects["reason"])


def test_catalog_without_configured_column(small_survey, tmp_path, capsys):
    root, conf = small_survey
    cat = Table.read(root / "catalog.fits")
    cat.rename_column("ra", "RA_J2000")
    cat.meta.clear()
    bad = tmp_path / "cat.fits"
    cat.write(bad)
    conf = {**conf, "survey": {**conf["survey"], "catalog": str(bad)}}
    code = survey.main(["--config-json", __import__("json").dumps(conf),
                        "--out-dir", str(tmp_path / "index")])
    err = capsys.readouterr().err
    assert code == 2
    assert "'ra'" in err and "survey.columns.ra" in err and str(bad) in err
    assert not (tmp_path / "index").exists() or not list((tmp_path / "index").iterdir())


def test_cli_config_failing_schema_exit_2(tmp_path, capsys):
    code = survey.main(["--set", "survey.kind=archive", "--out-dir", str(tmp_path / "index")])
    assert code == 2
    assert "survey.kind" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()
