"""Benchmark: simulated training examples per second per core (skysift.sim.{inject,simulate}).

One thread, the default training_set config, a 48-px 3-band stamp at 0.263"/px with a 0.95"
Gaussian PSF; each kind is rendered into the same raw stamp with its own seed. The
baseline, in the same process, is the mock survey's own lens renderer
(skysift.sim.objects.make_lens + mock_render.render); the ratio says how the injections compare.

    OMP_NUM_THREADS=1 python benchmarks/inject.py [--n 200] [--size 48]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from timing import Stopwatch, rate  # noqa: E402

from skysift import config as skyconfig  # noqa: E402
from skysift.sim import mock  # noqa: E402
from skysift.sim.inject import inject_lens  # noqa: E402
from skysift.sim.objects import make_lens  # noqa: E402
from skysift.sim.paint import Frame, psf_kernels  # noqa: E402
from skysift.sim.render import render  # noqa: E402
from skysift.sim.simulate import Host, simulate  # noqa: E402
from skysift.sim.visibility import keep_rows  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="examples per kind")
    p.add_argument("--size", type=int, default=48, help="stamp side, pixels")
    args = p.parse_args()
    config = skyconfig.load()
    tcfg = config["training_set"]
    bands = config["survey"]["bands"]
    kernels = psf_kernels([0.95] * len(bands), 0.263, bands, tcfg["psf"])
    c = args.size // 2
    frame = Frame(args.size, 0.263, (c + 0.2, c - 0.3), np.full(len(bands), 30.0),
                  np.array([475.0, 622.0, 763.0]), np.full(len(bands), 20.0),
                  np.full(len(bands), 4.0), kernels, 1)
    raw = np.random.default_rng(0).normal(0, 20.0, (len(bands), args.size, args.size))
    raw = raw.astype(np.float32)
    host = Host(np.array([1500.0, 3000.0, 4500.0]), 21.3, 2.0, 0.8)

    ctx = mock.model_context(config)
    with Stopwatch() as sw:
        for i in range(args.n):
            obj, _ = make_lens(np.random.default_rng(i), ctx)
            render(obj, c, c, ctx.cd_arcsec, ctx.fwhm_arcsec)
    base = rate(args.n, sw.seconds)
    print(f"baseline mock lens (make_lens + render): {base:7.1f} /s/core")

    # as the training sets draw them: theta_E above the PSF FWHM when invisible ones are dropped
    min_te = 0.95 if tcfg["drop_invisible"] else 0.0
    inject_lens(raw, frame, tcfg["lens"], tcfg["supersample"], np.random.default_rng(0))  # warm
    rates, visible = {}, {}
    cols: dict[str, list] = {}
    with Stopwatch() as sw:
        for i in range(args.n):
            _, params = inject_lens(raw, frame, tcfg["lens"], tcfg["supersample"],
                                    np.random.default_rng(i), min_theta_e=min_te)
            _collect(cols, params, "lens")
    rates["lens"] = rate(args.n, sw.seconds)
    visible["lens"] = _visible(cols, "lens", tcfg)
    snr = np.asarray(cols["arc_snr"])
    for kind in ("merger", "projection", "ring", "spiral", "pair"):
        cols = {}
        with Stopwatch() as sw:
            for i in range(args.n):
                _, params = simulate(kind, raw, frame, host, tcfg, np.random.default_rng(i))
                _collect(cols, params, kind)
        rates[kind] = rate(args.n, sw.seconds)
        visible[kind] = _visible(cols, kind, tcfg) if kind == "merger" else 1.0
    for kind, per_s in rates.items():
        print(f"{kind:>10}: {per_s:7.1f} stamps/s/core  ({per_s / base:5.2f} x baseline); "
              f"visible {visible[kind]:.2f}: {per_s * visible[kind]:7.1f} kept/s/core")
    print(f"lens arc S/N quantiles 5/50/95%: {np.percentile(snr, [5, 50, 95]).round(1)}")


def _collect(cols: dict, params: dict, kind: str) -> None:
    """Append one draw's parameters (NaN / empty where absent) to ``cols``."""
    for name in ("arc_snr", "theta_e_arcsec", "feature_snr", "separation_arcsec"):
        cols.setdefault(name, []).append(params.get(name, np.nan))
    cols.setdefault("merger_stage", []).append(str(params.get("merger_stage", "")).encode())
    cols.setdefault("kind", []).append(kind)


def _visible(cols: dict, kind: str, tcfg: dict) -> float:
    """Fraction of the draws a person could see (skysift.sim.visibility, 0.95" PSF)."""
    params = {k: np.asarray(v) for k, v in cols.items() if k != "kind"}
    params["psf_fwhm_arcsec"] = np.full(len(cols["kind"]), 0.95)
    keep, _ = keep_rows(np.asarray(cols["kind"]), np.ones(len(cols["kind"]), int), params,
                        dict(tcfg, drop_invisible=True))
    return float(keep.mean())


if __name__ == "__main__":
    main()
