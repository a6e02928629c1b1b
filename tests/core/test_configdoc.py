"""docs/config.md is the schema rendered: current, complete, and its check catches a stale page;
config/config.yaml holds only what a user edits and still validates to the schema defaults."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from skysift import config, configdoc

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "config.md"
SHIPPED = REPO / "config" / "config.yaml"


def test_docs_config_md_is_current():
    assert PAGE.read_text(encoding="utf-8") == configdoc.render_reference(config.schema()), (
        "docs/config.md is out of date with config/schema.yaml; run `make config-doc`")


def test_every_leaf_option_is_on_the_page():
    schema = config.schema()
    page = configdoc.render_reference(schema)
    leaves = configdoc.leaf_paths(schema)
    assert {"seed", "survey.mask.kind", "tasks[].name", "models[].classical.calibrate",
            "evaluate.completeness_bins[].edges", "infer.select[].range"} <= set(leaves)
    missing = [path for path in leaves if f"| `{path}` |" not in page]
    assert missing == []
    assert [line[3:] for line in page.splitlines() if line.startswith("## ")] == list(
        schema["properties"])


def test_rendering_is_deterministic_and_escapes_table_cells():
    schema = config.schema()
    page = configdoc.render_reference(schema)
    assert page == configdoc.render_reference(copy.deepcopy(schema))
    assert page.startswith("# Configuration reference\n")
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert all(line.replace("\\|", "").count("|") == 6 for line in rows)
    assert "| `mock.known_lenses` | string \\| null | `\"data/mock/known_lenses.csv\"` |" in page
    assert "| `survey.labels` | string \\| null | `null` |" in page
    assert "| `tasks[].label` | string | — (required) |" in page


def test_a_changed_description_makes_the_page_stale(tmp_path, monkeypatch, capsys):
    schema = config.schema()
    changed = copy.deepcopy(schema)
    changed["properties"]["train"]["properties"]["epochs"]["description"] = "Changed | text."
    assert configdoc.render_reference(changed) != configdoc.render_reference(schema)
    assert "Changed \\| text." in configdoc.render_reference(changed)

    path = tmp_path / "config.md"
    path.write_text(configdoc.render_reference(schema), encoding="utf-8")
    monkeypatch.setattr(config, "schema", lambda: copy.deepcopy(changed))
    assert configdoc.main(["--check", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "make config-doc" in err
    assert configdoc.main(["--out", str(path)]) == 0
    assert not path.with_name("config.md.partial").exists()
    assert configdoc.main(["--check", str(path)]) == 0
    assert configdoc.main(["--check", str(tmp_path / "absent.md")]) == 1


def test_shipped_config_holds_what_a_user_edits_and_validates_to_the_defaults():
    shipped = yaml.safe_load(SHIPPED.read_text())
    assert {"survey", "tasks", "recipe"} <= set(shipped)
    assert config.validate(copy.deepcopy(shipped)) == config.load()
