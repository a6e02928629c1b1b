"""Peak memory of ``skysift evaluate`` on a synthetic catalog: today's reader (the catalog
read in blocks, only its test rows kept) against the former one (the whole catalog's
``index``, ``id`` and score columns in memory), each in a fresh process that reports its own
high-water mark (``VmHWM`` of /proc/self/status, read at exit; not a child's ``ru_maxrss``).

Builds once, under ``--work``, per size: ``catalog.fits`` as gather writes it (index, id
int64 above 2^60, ra, dec, tile, flags, selected; per model score, prob and rank; two tasks
of two models), ``split.fits`` as ``skysift split`` writes it (index 0..n-1; 70/15/15 %),
and a labels table of ``--labelled`` of the objects (two 0/1 columns). The former code is
``git archive BEFORE src`` of this repository (``--before``, default the commit before the
block reader). Both runs must write the same metrics.json but for the provenance: checked.

    python benchmarks/evaluate_memory.py --work /tmp/evalmem [--sizes 100000 1000000]
        [--before 00c2abe] [--n-bootstrap 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TASKS = [{"name": "lens", "label": "is_lens"}, {"name": "merger", "label": "is_merger"}]
MODELS = [{"name": "a", "architecture": "baseline3"}, {"name": "b", "architecture": "classical"}]


def vm_hwm_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


def build(root: Path, n: int, labelled: float, seed: int = 0) -> None:
    """The synthetic catalog, split and labels under ``root`` (once)."""
    from astropy.table import Table

    sys.path.insert(0, str(REPO / "src"))
    from skysift.survey.split import write_split

    if (root / "done").exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = np.arange(n, dtype=np.int64) + 2**60
    cat = Table({"index": np.arange(n, dtype=np.int64), "id": ids,
                 "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-60, 10, n),
                 "tile": np.char.encode(np.char.add("t", (np.arange(n) // 1864).astype(str)),
                                        "ascii"),
                 "flags": np.zeros(n, np.uint8), "selected": np.ones(n, bool)})
    truth = {t["name"]: rng.uniform(size=n) < 0.05 for t in TASKS}
    for task in TASKS:
        for model in MODELS:
            score = rng.normal(size=n) + 2 * truth[task["name"]]
            cat[f"score_{task['name']}_{model['name']}"] = score.astype(np.float32)
            cat[f"prob_{task['name']}_{model['name']}"] = (1 / (1 + np.exp(-score))).astype(
                np.float32)
            cat[f"rank_{task['name']}_{model['name']}"] = np.argsort(np.argsort(-score)) + 1
    cat.write(root / "catalog.fits", overwrite=True)
    u = rng.uniform(size=n)
    write_split(root / "split.fits", np.searchsorted([0.7, 0.85], u, side="right"), {})
    rows = np.sort(rng.choice(n, int(labelled * n), replace=False))
    Table({"objid": ids[rows], **{t["label"]: truth[t["name"]][rows].astype(np.int16)
                                  for t in TASKS}}).write(root / "labels.fits", overwrite=True)
    (root / "done").write_text("")


def before_src(work: Path, rev: str) -> Path:
    """``src/`` (and the schema in ``config/``) of ``rev`` (git archive), extracted once."""
    out = work / f"src-{rev}"
    if not (out / "src" / "skysift").exists():
        data = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src", "config"], check=True,
                              capture_output=True).stdout
        with tarfile.open(fileobj=BytesIO(data)) as tar:
            tar.extractall(out, filter="data")
    return out / "src"


def child(src: str, args: list[str]) -> int:
    """Run ``skysift evaluate ARGS`` from ``src`` in this process; print VmHWM (KiB) after
    the imports and at exit."""
    sys.path.insert(0, src)
    from skysift.evaluate import evaluate

    floor = vm_hwm_kib()
    code = evaluate.main(args)
    print(json.dumps({"floor_kib": floor, "peak_kib": vm_hwm_kib(), "code": code}))
    return code


def run(src: Path, root: Path, out: Path, n_boot: int) -> dict:
    config = {"seed": 1, "tasks": TASKS, "models": MODELS,
              "survey": {"labels": str(root / "labels.fits"), "labels_id_column": "objid"},
              "evaluate": {"n_bootstrap": n_boot}}
    out.mkdir(parents=True, exist_ok=True)
    args = ["--config-json", json.dumps(config), "--catalog", str(root / "catalog.fits"),
            "--split", str(root / "split.fits"), "--out", str(out / "metrics.json")]
    for fig in ("roc", "completeness", "purity", "reliability"):
        args += [f"--{fig}", str(out / f"{fig}.png")]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(src), *args],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    if proc.returncode:
        raise SystemExit(f"evaluate failed ({src}):\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall"] = time.perf_counter() - t0
    return res


def _metrics(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("provenance")
    return data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--before", default="00c2abe", help="git revision of the former reader")
    p.add_argument("--labelled", type=float, default=0.1, help="fraction of objects labelled")
    p.add_argument("--n-bootstrap", type=int, default=20)
    a = p.parse_args()
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, load average at start "
          f"{os.getloadavg()}; former reader: {a.before}")
    old_src = before_src(a.work, a.before)
    rows = []
    for n in a.sizes:
        root = a.work / f"n{n}"
        build(root, n, a.labelled)
        size = (root / "catalog.fits").stat().st_size
        res = {}
        for key, label, src in (("former", "former (whole catalog)", old_src),
                                ("blocks", "blocks, test rows only", REPO / "src")):
            res[label] = run(src, root, root / key, a.n_bootstrap)
        same = _metrics(root / "former" / "metrics.json") == _metrics(
            root / "blocks" / "metrics.json")
        for label, r in res.items():
            rows.append((n, label, r["peak_kib"] / 1024, (r["peak_kib"] - r["floor_kib"]) / 1024,
                         r["wall"], same))
        print(f"{n:,} objects (catalog.fits {size / n:.0f} B/object): "
              + "; ".join(f"{k}: peak {r['peak_kib'] / 1024:.0f} MiB, "
                          f"{(r['peak_kib'] - r['floor_kib']) / 1024:.0f} MiB above the imports"
                          f", {r['wall']:.1f} s" for k, r in res.items())
              + f"; same metrics.json: {same}", flush=True)
    print("\n| objects | reader | peak VmHWM (MiB) | above the imports (MiB) | wall (s) | "
          "same metrics |")
    print("|---|---|---|---|---|---|")
    for n, label, peak, above, wall, same in rows:
        print(f"| {n:,} | {label} | {peak:.0f} | {above:.0f} | {wall:.1f} | {same} |")
    print(f"load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        raise SystemExit(child(sys.argv[2], sys.argv[3:]))
    raise SystemExit(main())
