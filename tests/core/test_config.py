"""The schema is the one source of defaults; the loader validates and explains."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from skysift import config
from skysift.cli import parser, run
from skysift.errors import ConfigError


def test_defaults_come_from_the_schema():
    cfg = config.load()
    train_schema = config.schema()["properties"]["train"]["properties"]
    assert cfg["train"]["epochs"] == train_schema["epochs"]["default"]
    assert [t["name"] for t in cfg["tasks"]] == ["lens", "merger"]


def test_config_yaml_matches_schema_defaults():
    """config/config.yaml shows the defaults; it must not silently diverge from the schema."""
    from skysift.config import SCHEMA_PATH
    shipped_path = SCHEMA_PATH.parent.parent.parent / "config" / "config.yaml"
    shipped = yaml.safe_load(shipped_path.read_text())
    assert config.validate(shipped) == config.load()


def test_unknown_key_suggests_nearest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        config.load(json_text='{"train": {"epoch": 3}}')


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match="train.epochs"):
        config.load(overrides=["train.epochs=0"])


def test_split_fractions_must_sum_to_one():
    with pytest.raises(ConfigError, match="sum to 1"):
        config.load(json_text='{"split": {"fractions": {"train": 0.5, "val": 0.1, "test": 0.1}}}')


def test_hash_is_stable_and_sensitive():
    a, b = config.load(), config.load(overrides=["seed=1"])
    assert config.config_hash(a) == config.config_hash(config.load())
    assert config.config_hash(a) != config.config_hash(b)


def test_cli_bad_config_exits_2(capsys, tmp_path):
    p = parser("test")

    def body(args):
        config.load(args.config, args.config_json, args.set)
        return 0

    assert run(body, p, ["--set", "cutouts.stamp_size_pix=2"]) == 2
    assert "cutouts.stamp_size_pix" in capsys.readouterr().err


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "config").glob("**/*.yaml"))


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.name != "schema.yaml"],
                         ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    config.load(str(path))


def test_field_benchmark_is_the_dense_one_at_real_sky_density_with_visible_mergers():
    """docs/models.md: same objects, seed and split; 8.5 galaxies per arcmin2; tidal S/N 15."""
    root = Path(__file__).resolve().parents[2] / "config"
    dense = config.load(str(root / "mock_benchmark.yaml"))
    field = config.load(str(root / "mock_benchmark_field.yaml"))
    for key in ("seed", "split"):
        assert field[key] == dense[key]
    for key in ("n_tiles", "n_galaxies_per_tile", "n_stars_per_tile", "lens", "pixscale_arcsec"):
        assert field["mock"][key] == dense["mock"][key]

    def density(mock):
        side_arcmin = mock["tile_size_pix"] * mock["pixscale_arcsec"] / 60.0
        return mock["n_galaxies_per_tile"] / side_arcmin**2

    assert 8.0 < density(field["mock"]) < 9.0 and density(dense["mock"]) > 55
    assert field["mock"]["merger"]["tidal_snr_min"] == 15.0
    assert dense["mock"]["merger"]["tidal_snr_min"] == 0.0


def test_a_files_survey_inherits_no_mock_labels_or_known_lenses():
    """Snakemake merges a user's --configfile over config/config.yaml: a ``files`` survey must
    not pick up the mock's truth table or known-lens table from there or from the schema."""
    shipped = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
    user = {"survey": {"kind": "files", "tiles": "d/{tile}_{band}.fits", "catalog": "c.fits"}}
    cfg = config.load(shipped, json_text=__import__("json").dumps(user))
    assert cfg["survey"]["labels"] is None and cfg["survey"]["known_lenses"] is None
    mock = config.load(shipped)
    assert mock["survey"]["labels"] == "data/mock/catalog_truth.fits"  # beside the catalog
    assert mock["survey"]["known_lenses"] == mock["mock"]["known_lenses"]
    own = config.load(json_text='{"survey": {"labels": "mine.fits"}}')
    assert own["survey"]["labels"] == "mine.fits"  # a mock with labels of its own keeps them


def test_recipe_auto_is_the_demo_on_the_mock_and_the_full_recipe_on_a_users_survey():
    """The recipe follows the config (the survey's kind), never the hardware; an explicit
    models list wins; a broken recipe entry names recipes.<name>."""
    shipped = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
    recipes = config.schema()["properties"]["recipes"]["properties"]
    demo = config.load(shipped)
    assert config.recipe_name(demo) == "demo"
    assert [m["name"] for m in demo["models"]] == [m["name"] for m in recipes["demo"]["default"]]
    user = {"survey": {"kind": "files", "tiles": "d/{tile}_{band}.fits", "catalog": "c.fits"}}
    full = config.load(shipped, json_text=__import__("json").dumps(user))
    assert config.recipe_name(full) == "full"
    assert [m["name"] for m in full["models"]] == [m["name"] for m in recipes["full"]["default"]]
    assert full["models"][0]["architecture"] == "d4"
    assert full["models"][0]["members"] == 1  # recipe entries get the models[] defaults
    forced = config.load(shipped, overrides=["recipe=full"])
    assert [m["name"] for m in forced["models"]] == [m["name"] for m in full["models"]]
    own = config.load(shipped, json_text=__import__("json").dumps(
        {**user, "models": [{"name": "mine", "architecture": "deeplens"}]}))
    assert [m["name"] for m in own["models"]] == ["mine"]
    with pytest.raises(ConfigError, match=r"recipes\.full\.0\.architecture"):
        config.load(shipped, overrides=["recipe=full",
                                        "recipes.full=[{name: x, architecture: vgg}]"])


def test_a_models_entry_overrides_the_monitor():
    from skysift.modelspec import model_specs
    cfg = config.load(json_text='{"models": [{"name": "a", "architecture": "d4", '
                                '"monitor": "val_auroc"}, {"name": "b", "architecture": "d4"}]}')
    by_name = {s.name: s.train["monitor"] for s in model_specs(cfg) if s.task == "lens"}
    assert by_name == {"a": "val_auroc", "b": cfg["train"]["monitor"]}
    assert by_name["b"] == "val_loss"
