"""The workflow's planning (skysift.plan): what each rule reads, asks for and passes, from the
config alone, without running Snakemake."""

from __future__ import annotations

import json
import shlex

from survey_helpers import make_config, make_wcs, write_tile

from skysift import config as skyconfig
from skysift import paths, plan


def _config(**sections):
    return skyconfig.load(json_text=json.dumps(sections))


def test_mock_survey_files_are_every_tile_and_band():
    cfg = _config(mock={"n_tiles": 2})
    files = plan.survey_files(cfg)
    assert files == [f"data/mock/tiles/m00{t}_{b}.fits" for t in (0, 1) for b in "gri"]


def test_user_survey_files_come_from_the_pattern_with_masks_once(tmp_path):
    cfg = make_config(tmp_path)
    for tile in ("t1", "t0"):
        write_tile(tmp_path, tile, make_wcs(10.0, 0.0, (20, 20)), (20, 20))
    files = plan.survey_files(cfg)
    assert files == [str(tmp_path / "tiles" / f"{t}_{b}.fits") for t in ("t0", "t1")
                     for b in cfg["survey"]["bands"]]
    cfg["survey"]["mask"] = {"kind": "weight", "hdu": "WGT", "file": None, "bad_bits": 0}
    assert plan.tile_files(cfg, ["t0"]) == files[:2]  # the mask HDU lives in the tile file


def test_training_shards_follow_the_frozen_record(tmp_path):
    record = tmp_path / "training_shards.json"
    cfg = _config(training_set={"shards": "frozen"})
    assert plan.training_shards(cfg, ["s2", "s1"], record) == ["s1", "s2"]  # no record yet
    assert plan.training_shards_record(cfg, record) == []
    record.write_text(json.dumps({"shards": ["s1"]}))
    assert plan.training_shards(cfg, ["s1", "s2"], record) == ["s1"]
    assert plan.training_shards_record(cfg, record) == [str(record)]
    assert plan.training_shards(cfg, ["s2", "s3"], record) == ["s2", "s3"]  # stale: all
    every = _config(training_set={"shards": "all"})
    assert plan.training_shards(every, ["s1", "s2"], record) == ["s1", "s2"]
    assert plan.training_shards_record(every, record) == []


def test_cutouts_memory_scales_with_the_largest_tile_of_the_shard(tmp_path):
    tiles_json = tmp_path / "tiles.json"
    tiles_json.write_text(json.dumps({"tiles": [{"tile": "a", "shape": [1000, 1000]},
                                                {"tile": "b", "shape": [4000, 4000]}]}))
    cfg = _config()
    small = plan.cutouts_mem_mb(cfg, tiles_json, ["a"])
    big = plan.cutouts_mem_mb(cfg, tiles_json, ["a", "b"])
    per_pixel = (3 + 1) * 4 + 3 + 8  # bytes: float32 bands + mask + one band read + buffers
    assert small == int(1e6 * per_pixel / 1e6) + plan.CUTOUTS_BATCH_MB + plan.CUTOUTS_BASE_MB
    assert big - small == int(16e6 * per_pixel / 1e6) - int(1e6 * per_pixel / 1e6)


def test_config_json_holds_the_seed_and_only_the_named_sections():
    cfg = _config(seed=5)
    text = plan.config_json(cfg, ("split",))
    assert json.loads(text) == {"seed": 5, "split": cfg["split"]}
    cfg["train"]["epochs"] = 99  # another section: the params of the rule do not change
    assert plan.config_json(cfg, ("split",)) == text


def test_section_digest_is_short_names_its_section_and_follows_its_value():
    """The params entry Snakemake prints as a rerun reason: the section's name and a digest,
    changing with the section's value and only with it."""
    cfg = _config(seed=5)
    digest = plan.section_digest("split", cfg["split"])
    name, hexdigits = digest.split(" ")
    assert name == "split" and len(hexdigits) == 12 and int(hexdigits, 16) >= 0
    assert plan.section_digest("split", json.loads(json.dumps(cfg["split"]))) == digest
    cfg["train"]["epochs"] = 99
    assert plan.section_digest("split", cfg["split"]) == digest
    cfg["split"]["salt"] = "other"
    assert plan.section_digest("split", cfg["split"]) != digest
    sections = plan.trainset_config(cfg, "lens")
    assert tuple(sections) == plan.TRAINSET_SECTIONS
    assert tuple(plan.model_config(cfg, "lens", cfg["models"][0]["name"])) == \
        plan.MODEL_SECTIONS


def test_a_training_set_depends_on_its_own_task_and_never_on_the_models():
    """A training set is rendered again only when what makes it changes (its params): not
    when models change, nor when another task is added or edited."""
    cfg = _config()
    text = plan.trainset_config_json(cfg, "lens")
    assert [t["name"] for t in json.loads(text)["tasks"]] == ["lens"]
    cfg["models"] = [{"name": "other", "architecture": "d4"}]
    cfg["recipe"], cfg["train"]["epochs"] = "full", 40
    cfg["tasks"][1]["label"] = "is_mergerX"
    cfg["tasks"].append({"name": "ring", "label": "is_ring"})
    assert plan.trainset_config_json(cfg, "lens") == text
    cfg["training_set"]["max_negatives"] += 1
    assert plan.trainset_config_json(cfg, "lens") != text


def test_grades_files_are_inputs_of_the_training_sets_they_may_grade():
    """review.grades: an entry naming a task feeds that task's training set only (its files
    and entries), one naming none (an export says its task per row) every task's."""
    cfg = _config()
    before = plan.trainset_config_json(cfg, "lens")
    assert plan.grades_files(cfg, "lens") == []
    assert plan.trainset_config(cfg, "lens")["review"] == {"grades": []}
    cfg["review"]["grades"] = [{"file": "r1.csv", "task": "lens", "round": 1},
                               {"file": "all.csv", "task": None, "round": 2}]
    assert plan.grades_files(cfg, "lens") == ["r1.csv", "all.csv"]
    assert plan.grades_files(cfg, "merger") == ["all.csv"]
    assert plan.trainset_config(cfg, "merger")["review"] == {
        "grades": [{"file": "all.csv", "task": None, "round": 2}]}
    assert plan.trainset_config_json(cfg, "lens") != before
    merger = plan.trainset_config_json(cfg, "merger")
    cfg["review"]["grades"][0]["round"] = 3   # the lens entry: the merger set is unchanged
    assert plan.trainset_config_json(cfg, "merger") == merger


def test_model_inputs_args_and_config_of_one_model():
    cfg = _config(models=[{"name": "cnn", "architecture": "baseline3"},
                          {"name": "ext", "architecture": "baseline3",
                           "checkpoint": "/m/{task}.pt"}])
    inputs = plan.model_inputs(cfg, "lens", "cnn")
    assert inputs == {"trainset": "results/train/lens.h5",
                      "augmented": "results/train/lens.augmented.h5"}
    assert shlex.split(plan.model_args(inputs)) == [
        "--trainset", "results/train/lens.h5", "--augmented", "results/train/lens.augmented.h5"]
    assert plan.model_inputs(cfg, "merger", "ext") == {"checkpoint": "/m/merger.pt"}
    assert plan.model_args({"checkpoint": "/m/merger.pt"}) == ""
    one = json.loads(plan.model_config_json(cfg, "lens", "cnn"))
    assert [t["name"] for t in one["tasks"]] == ["lens"]
    assert [m["name"] for m in one["models"]] == ["cnn"]
    assert plan.model_gpus(cfg, "lens", "cnn") == 0
    cfg["train"]["device"] = "cuda"
    assert plan.model_gpus(cfg, "lens", "cnn") == 1


def test_final_targets_name_every_product_once():
    cfg = _config()
    targets = plan.final_targets(cfg)
    assert len(targets) == len(set(targets))
    for task in ("lens", "merger"):
        assert f"results/candidates/{task}.csv" in targets
        assert f"results/review/{task}.html" in targets
        assert f"results/models/{task}/baseline3.curve.png" in targets
    assert paths.KNOWN_LENSES in targets  # the mock writes a known-lens table
    cfg["survey"]["known_lenses"] = None
    assert paths.KNOWN_LENSES not in plan.final_targets(cfg)


def test_optional_inputs_appear_only_when_configured():
    cfg = _config()
    assert plan.labels_files(cfg) == [cfg["survey"]["labels"]]
    assert plan.select_inputs(cfg) == []
    cfg["infer"]["select"] = [{"column": "mag_r", "max": 23.0}]
    assert plan.select_inputs(cfg) == [cfg["survey"]["catalog"]]
    cfg["survey"]["labels"] = None
    assert plan.labels_files(cfg) == []
    assert plan.training_set_files(cfg) == []
    cfg["training_set"]["hosts"].update(catalog_cuts={"mag_r": [16, 21]}, ids="hosts.csv")
    cfg["training_set"]["psf"].update(model="image", image="psf_{band}.fits")
    assert plan.training_set_files(cfg) == [cfg["survey"]["catalog"], "hosts.csv",
                                            "psf_g.fits", "psf_r.fits", "psf_i.fits"]


def test_catalog_outputs_follow_catalog_format_and_catalog_csv():
    config = skyconfig.load()
    assert plan.catalog_path(config) == "results/catalog.fits"
    assert not plan.catalog_is_folder(config)
    assert plan.gather_csv(config) == {"csv": "results/catalog.csv"}
    targets = plan.final_targets(config)
    assert {"results/catalog.fits", "results/catalog.csv", "results/candidates.fits"} <= set(
        targets)
    config["infer"].update(catalog_format="parquet_per_shard", catalog_csv=False)
    assert plan.catalog_path(config) == "results/catalog" and plan.catalog_is_folder(config)
    assert plan.gather_csv(config) == {} and plan.optional_flags({}, "csv") == ""
    targets = plan.final_targets(config)
    assert "results/catalog" in targets and "results/catalog.csv" not in targets
    assert "results/catalog.fits" not in targets
    assert plan.optional_flags({"csv": "a b.csv"}, "csv") == "--csv 'a b.csv'"


def test_index_json_is_parsed_once_per_version_of_the_file(tmp_path):
    """Snakemake calls the resource functions per job: tiles.json is parsed once, and again
    only when the index rewrites it."""
    path = tmp_path / "shards.json"
    path.write_text(json.dumps({"shards": [{"shard": "s0000", "tiles": ["a"]}]}))
    first = plan.load_json(path)
    assert plan.load_json(path) is first
    assert plan.read_shards(path) == {"s0000": ["a"]}
    path.write_text(json.dumps({"shards": [{"shard": "s0000", "tiles": ["a", "b"]}]}))
    assert plan.read_shards(path) == {"s0000": ["a", "b"]}


def test_every_shard_cutouts_only_when_asked():
    """cutouts.all_shards: rule all asks for every shard's cutouts; by default none (the
    training shards' are made for the training sets, no other shard's)."""
    cfg = skyconfig.load()
    assert cfg["cutouts"]["all_shards"] is False
    assert plan.every_shard_patterns(cfg) == []
    cfg["cutouts"]["all_shards"] = True
    assert plan.every_shard_patterns(cfg) == [paths.CUTOUTS]
