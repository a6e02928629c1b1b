"""Train every named model on one training set and score its test split: the rows of docs/models.md.

Trains each ``NAME:ARCHITECTURE`` with the real ``skysift.learn.train`` loop (config from
``--config`` and ``--set``), scores the test split (2) of the same training set and prints
one JSON line and one markdown row per model: AUROC, TPR0, TPR10 and TPR at FPR 1e-3 with
stratified bootstrap intervals, parameters, training images/s, device, epochs, seconds.

    python benchmarks/models.py --config config/mock_benchmark.yaml --task lens \\
        --trainset results/train/lens.h5 --models b3:baseline3 d4:d4 --out bench/ \\
        [--set train.epochs=10] [--members 1] [--n-boot 500]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from timing import rate, timed

from skysift import config as skyconfig
from skysift import metrics
from skysift.io import open_h5
from skysift.learn.checkpoints import load_model
from skysift.learn.runtime import resolve_device, resolve_precision
from skysift.learn.train import train_model
from skysift.score.batches import score


def test_split(trainset: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (n, band, s, s), labels (n,) and ids (n,) of the test split (2) of a training
    set."""
    with open_h5(trainset, required=("images", "label", "split", "id")) as fh:
        rows = np.flatnonzero(fh["split"][()] == 2)
        return (fh["images"][rows[0]:rows[-1] + 1][rows - rows[0]], fh["label"][()][rows],
                fh["id"][()][rows])


def fmt(res: dict, name: str) -> str:
    v, lo, hi = res[name]["value"], res[name]["lo"], res[name]["hi"]
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--task", required=True)
    p.add_argument("--trainset", required=True)
    p.add_argument("--augmented")
    p.add_argument("--models", nargs="+", required=True, help="NAME:ARCHITECTURE[:MEMBERS]")
    p.add_argument("--out", required=True)
    p.add_argument("--n-boot", type=int, default=500)
    p.add_argument("--no-tta", action="store_true",
                   help="skip the 8-orientation TTA scoring (8x the inference; slow on a CPU)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    entries = []
    for item in args.models:
        name, arch, *members = item.split(":")
        entries.append({"name": name, "architecture": arch, "tasks": [args.task],
                        "members": int(members[0]) if members else 1})
    config = skyconfig.load(args.config, overrides=args.set)
    config["tasks"] = [t for t in config["tasks"] if t["name"] == args.task]
    config["models"] = entries
    config = skyconfig.validate(config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_test, y_test, id_test = test_split(Path(args.trainset))
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device)
    for entry in entries:
        stem = out / f"{args.task}_{entry['name']}"
        seconds, m = timed(train_model, config, args.task, entry["name"], args.trainset,
                           args.augmented, f"{stem}.pt", f"{stem}.metrics.json",
                           f"{stem}.curve.png")
        model, _ = load_model(f"{stem}.pt", device)
        infer_s, logits = timed(score, model, x_test, 512, device, precision)
        res = metrics.bootstrap(logits, y_test, args.n_boot, 0.95, 12345, metrics.ALL_METRICS)
        tta = (np.full_like(logits, np.nan) if args.no_tta
               else score(model, x_test, 512, device, precision, tta=True))
        res_tta = (None if args.no_tta else
                   metrics.bootstrap(tta, y_test, args.n_boot, 0.95, 12345, metrics.ALL_METRICS))
        # per-object test scores: binned completeness (θ_E, arc S/N, mass ratio) is computed
        # from them and the labels' columns by benchmarks/completeness.py
        np.savez(f"{stem}.test.npz", id=id_test, label=y_test, logit=logits, logit_tta=tta)
        row = {"task": args.task, "model": entry["name"], "architecture": entry["architecture"],
               "members": entry["members"], "parameters": m["parameters"],
               "epochs": len(m["epochs"]), "best_epoch": m["best_epoch"],
               "train_images_per_s": m["samples_per_s"], "train_seconds": seconds,
               "infer_images_per_s": rate(len(y_test), infer_s), "device": m["device"],
               "precision": m["precision"], "n_test_pos": int(y_test.sum()),
               "n_test_neg": int((y_test == 0).sum()), "val_auroc": m["best_val_auroc"],
               **{k: v for k, v in res.items()},
               "tta": res_tta,
               "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                               else f"cpu x{torch.get_num_threads()}")}
        print(json.dumps(row), flush=True)
        with open(out / "rows.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"| {entry['name']} | {entry['architecture']} x{entry['members']} | "
              f"{fmt(res, 'auroc')} | {fmt(res, 'tpr0')} | {fmt(res, 'tpr10')} | "
              f"{fmt(res, 'tpr_fpr1e-3')} | {m['parameters'] / 1e6:.2f} M | "
              f"{m['samples_per_s']:.0f} | {row['device_name']} {m['precision']} | "
              f"{len(m['epochs'])} | {seconds:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
