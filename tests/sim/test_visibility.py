"""The visibility criterion of simulated positives (skysift.sim.visibility)."""

import numpy as np

from skysift.sim.visibility import invisible, keep_rows, summarise

TCFG = {"visible_arc_snr": 20.0, "visible_merger_snr": 10.0, "drop_invisible": True}
NAN = np.nan


def _params():
    #          lens ok, lens dim, lens small, merger ok, pair close, merger dim, ring dim
    return {"arc_snr": np.array([30, 5, 30, NAN, NAN, NAN, NAN]),
            "theta_e_arcsec": np.array([1.2, 1.2, 0.5, NAN, NAN, NAN, NAN]),
            "psf_fwhm_arcsec": np.full(7, 0.8),
            "feature_snr": np.array([NAN, NAN, NAN, 50, 50, 3, 1]),
            "separation_arcsec": np.array([NAN, NAN, NAN, 1.5, 0.5, 2.0, NAN]),
            "merger_stage": np.array([b"", b"", b"", b"pair", b"pair", b"interacting", b""])}


KIND = np.array(["lens", "lens", "lens", "merger", "merger", "merger", "ring"])
LABEL = np.array([1, 1, 1, 1, 1, 1, 0])


def test_each_reason_names_the_rows_that_fail_it():
    why = invisible(KIND, LABEL, _params(), TCFG)
    assert np.flatnonzero(why["arc_snr"]).tolist() == [1]
    assert np.flatnonzero(why["theta_e_within_psf"]).tolist() == [2]
    assert np.flatnonzero(why["pair_within_psf"]).tolist() == [4]
    assert np.flatnonzero(why["merger_snr"]).tolist() == [5]  # the dim ring: a negative


def test_interacting_mergers_need_no_separation_and_negatives_are_never_dropped():
    p = _params()
    p["separation_arcsec"][5], p["feature_snr"][5] = 0.0, 40.0  # coalesced, bright tails
    keep, counts = keep_rows(KIND, LABEL, p, TCFG)
    assert keep.tolist() == [True, False, False, True, False, True, True]
    assert counts == {"arc_snr": 1, "theta_e_within_psf": 1, "merger_snr": 0,
                      "pair_within_psf": 1, "total": 3}
    keep, counts = keep_rows(KIND, LABEL, p, dict(TCFG, drop_invisible=False))
    assert keep.all() and counts["total"] == 3


def test_summary_adds_shards_and_gives_the_visible_fraction():
    s = summarise([{"arc_snr": 2, "total": 2}, {"merger_snr": 1, "total": 1}], 12, True)
    assert s["invisible_positives"]["total"] == 3 and s["invisible_positives"]["arc_snr"] == 2
    assert s["visible_fraction"] == 0.75 and s["invisible_dropped"]
