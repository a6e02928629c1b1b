"""Binned completeness of every model of benchmarks/models.py, beside any catalog's models.

Reads the per-object test scores that ``benchmarks/models.py`` saves
(``{task}_{model}.test.npz``: id, label, logit, logit_tta), optionally the ``score_*`` columns
of a pipeline catalog (e.g. the classical model of the same mock run) restricted to the same
test objects, and the labels table of the config (``survey.labels``). For each task and model
it applies :func:`skysift.evaluate.completeness.summarize` exactly as the evaluate step does: the
threshold at ``evaluate.completeness_fpr`` on the test negatives, completeness in the bins of
``evaluate.completeness_bins`` with Wilson intervals. Prints one JSON line per (task, model)
and a markdown table per binning.

    python benchmarks/completeness.py --config config/mock_benchmark.yaml --tests m/ \\
        [--catalog results/catalog.fits] [--tta] [--set survey.labels=...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from skysift import config as skyconfig
from skysift.evaluate import completeness
from skysift.evaluate.inputs import read_labels
from skysift.ids import id_keys, match_ids
from skysift.io import read_table


def model_scores(tests: Path, catalog: str | None, tta: bool) -> dict:
    """{(task, model): (test ids (n,), labels (n,), logits (n,))}."""
    out = {}
    for path in sorted(tests.glob("*.test.npz")):
        task, model = path.name[:-len(".test.npz")].split("_", 1)
        d = np.load(path)
        out[(task, model)] = (d["id"], d["label"], d["logit_tta" if tta else "logit"])
    if catalog:
        table = read_table(catalog, "catalog")
        keys = id_keys(table["id"], f"{catalog}: column 'id'")
        for name in table.colnames:
            if not name.startswith("score_"):
                continue
            task, model = name[len("score_"):].split("_", 1)
            ref = next((v for (t, _), v in out.items() if t == task), None)
            if ref is None or (task, model) in out:
                continue
            ids, labels, _ = ref
            rows = positions(ids, keys, catalog)
            out[(task, model)] = (ids, labels, np.asarray(table[name], np.float64)[rows])
    return out


def positions(ids: np.ndarray, keys: np.ndarray, where: str) -> np.ndarray:
    """Rows of ``keys`` holding each of ``ids`` (exact join, :func:`match_ids`)."""
    rows = match_ids(ids, keys)
    if (rows < 0).any():
        raise SystemExit(f"{where}: {int((rows < 0).sum())} test ids are missing")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--tests", required=True, help="folder of benchmarks/models.py outputs")
    p.add_argument("--catalog", help="a pipeline catalog whose score_* columns to add")
    p.add_argument("--tta", action="store_true", help="use the TTA logits of the npz files")
    args = p.parse_args()
    config = skyconfig.validate(skyconfig.load(args.config, overrides=args.set))
    specs = completeness.bin_specs(config)
    keys, _, columns = read_labels(config, specs)
    ecfg = config["evaluate"]
    tables: dict[tuple[str, str], list[str]] = {}
    for (task, model), (ids, labels, logits) in model_scores(
            Path(args.tests), args.catalog, args.tta).items():
        rows = positions(ids, keys, "labels table")
        mine = [s for s in specs if s["task"] == task]
        cols = {s["name"]: (columns[(task, s["name"])] if isinstance(
            columns[(task, s["name"])], str) else np.asarray(columns[(task, s["name"])])[rows])
            for s in mine}
        res = completeness.summarize(logits, labels, mine, cols, ecfg["completeness_fpr"],
                                     ecfg["prevalence"][task], 0.95)
        print(json.dumps({"task": task, "model": model, "tta": args.tta, **res}), flush=True)
        comp = res["completeness"]
        for name, b in comp["bins"].items():
            if not b.get("available"):
                continue
            head = tables.setdefault((task, name), [
                f"\n{task}, completeness by {name} at FPR <= {comp['fpr_target']:g}\n",
                "| model | " + " | ".join(x["name"] for x in b["bins"]) + " |",
                "|---" * (len(b["bins"]) + 1) + "|"])
            head.append(f"| {model} | " + " | ".join(
                f"{x['n_detected']}/{x['n_pos']} ({x['completeness']:.2f})" for x in b["bins"])
                + " |")
    for lines in tables.values():
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
