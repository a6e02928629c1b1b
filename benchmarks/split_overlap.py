"""How often a test object lies inside a training object's stamp (the split is by id).

The train/val/test split hashes object ids; it does not look at the sky, so a test object
next to a training object appears, off-centre, in that training stamp. This script runs the
real pipeline up to the split on a survey config (default: the demo's mock, in a temporary
directory: rules mock, check, survey_index, split), then, in each tile's pixel grid (every
object projected with that tile's WCS), counts the test objects whose pixel
``round(x), round(y)`` falls inside the stamp of at least one object of the train split
(and of the train or val split), with the stamp's pixel span of the cutter
(``[round(pos) - s//2, round(pos) - s//2 + s)``), and the same for the test positives of
each task when there is a labels table (on the mock: its truth table). Prints one JSON document.

    python benchmarks/split_overlap.py [--configfile tests/workflow/tiny.yaml] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from astropy.table import Table
from scipy.spatial import cKDTree

from skysift import paths
from skysift.config import deep_update, load
from skysift.survey.headers import read_header_summary

REPO = Path(__file__).resolve().parents[1]


def run_until_split(work: Path, configfiles: list[str]) -> None:
    """The real rules up to the split and the survey index, in ``work``."""
    shutil.copytree(REPO / "config", work / "config", dirs_exist_ok=True)
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), paths.SPLIT, paths.INDEX_ASSIGNMENT, "--snakefile",
           str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2", "--nolock"]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    subprocess.run(cmd, check=True, capture_output=True)


def inside_some_stamp(centre_xy: np.ndarray, stamp_xy: np.ndarray, size: int) -> np.ndarray:
    """Whether each centre's pixel lies in the stamp of at least one other position.

    centre_xy : (n, 2), stamp_xy : (m, 2) pixel positions (x, y) in one grid; a stamp spans
    ``[round(p) - size//2, round(p) - size//2 + size)`` on each axis. A centre at the same
    pixel as a stamp's object (the object itself) does not count.
    """
    found = np.zeros(len(centre_xy), bool)
    if len(centre_xy) == 0 or len(stamp_xy) == 0:
        return found
    c, p = np.rint(centre_xy), np.rint(stamp_xy)
    tree = cKDTree(p)
    for i, near in enumerate(tree.query_ball_point(c, r=size // 2, p=np.inf)):
        d = c[i] - p[near]  # offset of the centre from each stamp's object, pixels
        ok = ((d >= -(size // 2)) & (d < size - size // 2)).all(axis=1) & (d != 0).any(axis=1)
        found[i] = ok.any()
    return found


def overlap(work: Path, config: dict) -> dict:
    size = config["cutouts"]["stamp_size_pix"]
    assign = Table.read(work / paths.INDEX_ASSIGNMENT)
    split = np.asarray(Table.read(work / paths.SPLIT)["split"])[np.asarray(assign["index"])]
    headers = read_header_summary(work / paths.TILE_HEADERS, config)
    ra, dec = np.asarray(assign["ra"], float), np.asarray(assign["dec"], float)
    test = split == 2
    in_train, in_train_val = np.zeros(len(assign), bool), np.zeros(len(assign), bool)
    for tile, head in headers.items():
        x, y = head.wcs.all_world2pix(ra, dec, 0)  # every object, in this tile's grid
        xy = np.column_stack([x, y])
        ny, nx = head.shape
        on = (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
        cut_here = np.asarray(assign["tile"]).astype(str) == tile  # stamps cut from this tile
        for found, codes in ((in_train, (0,)), (in_train_val, (0, 1))):
            stamps = cut_here & np.isin(split, codes)
            found[test & on] |= inside_some_stamp(xy[test & on], xy[stamps], size)
    out = {"objects": int(len(assign)), "test_objects": int(test.sum()), "stamp_size_pix": size,
           "test_in_a_train_stamp": int(in_train[test].sum()),
           "fraction_test_in_a_train_stamp": round(float(in_train[test].mean()), 4),
           "fraction_test_in_a_train_or_val_stamp": round(float(in_train_val[test].mean()), 4)}
    labels_path = config["survey"]["labels"]  # the mock's truth table on the mock
    if labels_path and (work / labels_path).exists():
        labels = Table.read(work / labels_path)
        ids = np.asarray(labels[config["survey"]["labels_id_column"]])
        order = np.argsort(ids)
        rows = order[np.searchsorted(ids, np.asarray(assign["id"]), sorter=order)]
        for task in config["tasks"]:
            label = np.asarray(labels[task["label"]])[rows] == 1
            pos = test & label
            out[f"test_{task['name']}_positives"] = int(pos.sum())
            out[f"fraction_test_{task['name']}_positives_in_a_train_stamp"] = round(
                float(in_train[pos].mean()), 4) if pos.any() else None
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configfile", nargs="*", default=[],
                   help="config files over config/config.yaml (default: none, the demo)")
    p.add_argument("--workdir", help="keep the run here (default: a temporary directory)")
    args = p.parse_args()
    configfiles = [str(Path(f).resolve()) for f in args.configfile]
    merged = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for f in configfiles:
        deep_update(merged, yaml.safe_load(Path(f).read_text()) or {})
    config = load(json_text=json.dumps(merged))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp).resolve()
        run_until_split(work, configfiles)
        result = overlap(work, config)
    result["configfiles"] = args.configfile or ["config/config.yaml"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
