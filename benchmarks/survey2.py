"""survey2: a second benchmark survey, HSC-like and built independently of skysift's mock.

The pipeline was never tuned on it: 0.168" pixels, five bands g r i z y, fpack tiles named
like hscPipe coadds with rotated TAN WCSs, Moffat PSFs that vary from tile to tile,
correlated coadd noise, field galaxies with look-alikes (rings, spirals, edge-on discs,
projections), stars, strong lenses ray-traced with lenstronomy and mergers with tidal
features. Labels come for half of the tiles; the other half is scored against the truth.

    python benchmarks/survey2.py make --out DIR --seed 1 [--n-tiles 36] [--objects-per-tile 156]
    python benchmarks/survey2.py run --survey DIR --work WORK [--set train.epochs=1] [--cores 2]
    python benchmarks/survey2.py scarce --survey DIR --out DIR2 [--positives 50] [--seed 0]

``make`` writes DIR/tiles/calexp-HSC-{band}-{tile}.fits.fz, DIR/catalog.fits,
DIR/labels.fits and DIR/truth.fits (survey2_make.py). ``run`` writes WORK/survey2.yaml,
runs the Snakefile on it and scores the unlabelled half (survey2_run.py): AUROC, TPR0 and
TPR10 with 95 % stratified bootstrap intervals, printed and written to
WORK/survey2_metrics.json. ``scarce`` makes the scarce-label variant of a survey: DIR2 links
DIR's tiles, catalog and truth, and its labels.fits holds only ``--positives`` lenses and as
many mergers drawn from DIR's labels (positives only: each row's other task is masked, no
labelled negatives), so ``run`` on DIR2 scores every other object. Object models:
survey2_galaxies.py, survey2_systems.py; rendering: survey2_render.py. No module here
imports skysift.sim.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_TILES = 36  #: 6 x 6 patches of 1000^2 pixels: 0.072 deg^2
DEFAULT_PER_TILE = 156  #: ~21.6 objects per arcmin^2; 5616 objects, 2808 per half


def _parser() -> argparse.ArgumentParser:
    """The command line: subcommands ``make`` and ``run``."""
    p = argparse.ArgumentParser(prog="survey2.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="write the survey")
    make.add_argument("--out", type=Path, required=True, help="survey directory")
    make.add_argument("--seed", type=int, required=True, help="the only source of randomness")
    make.add_argument("--n-tiles", type=int, default=DEFAULT_TILES, help="tiles (patches)")
    make.add_argument("--objects-per-tile", type=int, default=DEFAULT_PER_TILE,
                      help="catalogued objects per tile")
    make.add_argument("--tile-size", type=int, default=1000, help="tile side, pixels")
    run = sub.add_parser("run", help="run the pipeline on a survey and score the unlabelled half")
    run.add_argument("--survey", type=Path, required=True, help="directory written by make")
    run.add_argument("--work", type=Path, required=True, help="snakemake working directory")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="config override (dotted key, YAML value); repeatable")
    run.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    run.add_argument("--metrics-only", action="store_true",
                     help="score an existing WORK/results/catalog.fits without running snakemake")
    scarce = sub.add_parser("scarce", help="the scarce-label variant: a few positives only")
    scarce.add_argument("--survey", type=Path, required=True, help="directory written by make")
    scarce.add_argument("--out", type=Path, required=True, help="the variant's directory")
    scarce.add_argument("--positives", type=int, default=50, help="labelled positives per task")
    scarce.add_argument("--seed", type=int, default=0, help="which positives are drawn")
    return p


def _scarce(args: argparse.Namespace) -> int:
    """``scarce``: link the survey, write a positives-only labels table; exit status."""
    import numpy as np
    from astropy.table import MaskedColumn, Table, vstack

    src, out = args.survey.resolve(), args.out.resolve()
    labels = Table.read(src / "labels.fits")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tiles", "catalog.fits", "truth.fits"):
        if not (out / name).exists():
            (out / name).symlink_to(src / name)
    rng = np.random.default_rng(args.seed)
    parts = []
    for column, other in (("is_lens", "is_merger"), ("is_merger", "is_lens")):
        pos = np.flatnonzero(np.asarray(labels[column]) == 1)
        if pos.size < args.positives:
            raise SystemExit(f"survey2 scarce: {src}/labels.fits has {pos.size} positives of "
                             f"{column}, fewer than --positives {args.positives}")
        rows = labels[np.sort(rng.choice(pos, args.positives, replace=False))]
        part = Table({"object_id": rows["object_id"], column: np.ones(len(rows), np.int16),
                      other: MaskedColumn(np.zeros(len(rows), np.int16), mask=True)})
        parts.append(part[["object_id", "is_lens", "is_merger"]])
    table = vstack(parts)
    table.write(out / "labels.fits", overwrite=True)
    print(f"survey2 scarce: {out}/labels.fits: {args.positives} lenses and {args.positives} "
          f"mergers (positives only) of {src}")
    return 0


def _make(args: argparse.Namespace) -> int:
    """``make``: write the survey and print a one-line summary; exit status."""
    from survey2_make import make_survey

    if args.n_tiles < 2 or args.objects_per_tile < 20:
        raise SystemExit("survey2 make: use at least 2 tiles and 20 objects per tile")
    s = make_survey(args.out, args.seed, args.n_tiles, args.objects_per_tile, args.tile_size)
    lab, sco = s["halves"]["labelled"], s["halves"]["scored"]
    print(f"survey2 seed {args.seed}: {s['objects']} objects on {s['tiles']} tiles "
          f"({s['density_per_arcmin2']:.1f}/arcmin2); labelled half {lab['objects']} objects, "
          f"{lab['lenses']} lenses, {lab['mergers']} mergers; scored half {sco['objects']} "
          f"objects, {sco['lenses']} lenses, {sco['mergers']} mergers; {s['seconds']:.1f} s")
    return 0


def _run(args: argparse.Namespace) -> int:
    """``run``: the pipeline on the survey, then the metrics; exit status."""
    from survey2_run import run_pipeline

    return run_pipeline(args.survey.resolve(), args.work.resolve(), args.set, args.cores,
                        args.metrics_only)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``make`` or ``run`` (see the module docstring)."""
    args = _parser().parse_args(argv)
    return {"make": _make, "run": _run, "scarce": _scarce}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
