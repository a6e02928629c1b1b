"""Tests of skysift.sim.simulate (mergers, hard negatives) and skysift.sim.hosts (photometry,
selection)."""

import json

import numpy as np
import pytest
from astropy.table import Table

from skysift import config as skyconfig
from skysift.errors import ConfigError
from skysift.sim.hosts import colour_slope, magnitudes, select_hosts, stamp_photometry
from skysift.sim.paint import Frame, psf_kernels
from skysift.sim.render import Blobs
from skysift.sim.simulate import Host, simulate

PIX = 0.263
SIZE = 48


@pytest.fixture(scope="module")
def tcfg():
    return skyconfig.load()["training_set"]


def _frame(gain=None):
    kernels = psf_kernels([0.9, 0.9], PIX, ["g", "r"], {"model": "moffat", "fwhm_arcsec": None,
                                                       "moffat_beta": 3.0, "image": None})
    return Frame(SIZE, PIX, (24.0, 24.0), np.array([30.0, 30.0]), np.array([475.0, 622.0]),
                 np.array([1.0, 1.0]), gain, kernels, 1)


HOST = Host(np.array([3000.0, 5000.0]), 20.75, 1.0, 0.6)


def _centroid(image):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    w = image.sum(axis=0)
    return (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()


def test_knots_grid_and_pointwise_agree_and_have_unit_flux():
    knots = Blobs(np.array([0.0, 1.0]), np.array([0.5, -1.0]), np.array([0.2, 0.3]),
                  np.array([0.25, 0.75]))
    xa = np.linspace(-3, 3, 121)
    grid = knots.evaluate_grid(xa, xa)
    xi, eta = np.meshgrid(xa, xa)
    assert np.allclose(grid, knots.evaluate(xi, eta))
    assert grid.sum() * (xa[1] - xa[0]) ** 2 == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("kind", ["merger", "projection", "ring", "spiral", "pair", "edgeon"])
def test_every_kind_adds_light_reproducibly(kind, tcfg):
    raw = np.random.default_rng(0).normal(0, 1, (2, SIZE, SIZE)).astype(np.float32)
    a, pa = simulate(kind, raw, _frame(np.array([4.0, 4.0])), HOST, tcfg,
                     np.random.default_rng(5))
    b, pb = simulate(kind, raw, _frame(np.array([4.0, 4.0])), HOST, tcfg,
                     np.random.default_rng(5))
    assert np.array_equal(a, b) and pa == pb
    assert a.dtype == np.float32 and pa["sim_snr"] > 5
    assert (a - raw).sum() > 0


def test_ring_is_centred_and_pair_is_not(tcfg):
    raw = np.zeros((2, SIZE, SIZE), np.float32)
    ring, p = simulate("ring", raw, _frame(), HOST, tcfg, np.random.default_rng(1))
    assert _centroid(ring) == pytest.approx((24, 24), abs=0.5)
    assert ring[:, 24, 24].sum() < ring.max(axis=(1, 2)).sum()  # a hole in the middle
    pair, p = simulate("pair", raw, _frame(), HOST, tcfg, np.random.default_rng(1))
    assert np.hypot(*(np.array(_centroid(pair)) - 24)) * PIX > 0.5
    assert 0.8 <= p["separation_arcsec"] <= 3.5


def test_edgeon_disc_is_a_thin_streak_mostly_tangential_to_the_host(tcfg):
    """Second moments of the added light: a median axis ratio < 0.5 (small discs are
    rounded by the 0.9" PSF) and, in most draws, the long axis perpendicular to the line to
    the host (where a lensed arc would lie)."""
    frame, raw = _frame(), np.zeros((2, SIZE, SIZE), np.float32)
    tangential, ratios = 0, []
    for seed in range(20):
        img, p = simulate("edgeon", raw, frame, HOST, tcfg, np.random.default_rng(seed))
        w = img.sum(axis=0)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
        dx, dy = xx - cx, yy - cy
        m = np.array([[(w * dx * dx).sum(), (w * dx * dy).sum()],
                      [(w * dx * dy).sum(), (w * dy * dy).sum()]]) / w.sum()
        vals, vecs = np.linalg.eigh(m)
        ratios.append(np.sqrt(vals[0] / vals[1]))
        radial = np.array([cx - 24.0, cy - 24.0]) / np.hypot(cx - 24.0, cy - 24.0)
        tangential += abs(vecs[:, 1] @ radial) < 0.3  # long axis ~ perpendicular to radius
        assert p["separation_arcsec"] == pytest.approx(np.hypot(cx - 24, cy - 24) * PIX, rel=0.1)
    assert np.median(ratios) < 0.5
    assert 8 <= tangential <= 18  # 60% drawn tangential, the rest at random angles


def test_merger_parameters(tcfg):
    raw = np.zeros((2, SIZE, SIZE), np.float32)
    seen = set()
    for seed in range(24):
        _, p = simulate("merger", raw, _frame(), HOST, tcfg, np.random.default_rng(seed))
        seen.add(p["merger_stage"])
        assert p["major"] == float(p["mass_ratio"] >= tcfg["merger"]["major_ratio"])
        if p["merger_stage"] == "post":
            assert p["separation_arcsec"] == 0.0
        else:
            assert 0.5 <= p["separation_arcsec"] <= 4.0
        assert (p["flux_fraction"] == 0) == (p["merger_stage"] == "pair")
    assert seen == {"pair", "interacting", "coalescing", "post"}


def test_secondary_flux_follows_the_mass_ratio(tcfg):
    """A pair's added light is the secondary alone: mass_ratio x the host flux."""
    cfg = dict(tcfg, merger=dict(tcfg["merger"], stages=["pair"],
                                 separation_arcsec=[1.0, 1.5]))
    added, p = simulate("merger", np.zeros((2, SIZE, SIZE), np.float32), _frame(), HOST, cfg,
                        np.random.default_rng(2))
    host_flux = 10 ** (-0.4 * (HOST.mag - 30.0))
    assert added[1].sum() == pytest.approx(p["mass_ratio"] * host_flux, rel=0.05)


def test_stamp_photometry_of_a_gaussian_galaxy():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    sigma_pix = 2.0
    gal = np.exp(-0.5 * ((xx - 24) ** 2 + (yy - 24) ** 2) / sigma_pix**2)
    gal /= gal.sum()
    raw = np.stack([10.0 + 800 * gal, 10.0 + 2000 * gal])[None] + rng.normal(0, 0.5, (1, 2, SIZE,
                                                                                     SIZE))
    p = stamp_photometry(raw.astype(np.float32), PIX, aperture_arcsec=3.0, ref=1)
    assert p["flux"][0] == pytest.approx([800, 2000], rel=0.03)
    assert p["r50_arcsec"][0] == pytest.approx(1.1774 * sigma_pix * PIX, abs=0.5 * PIX)
    assert p["sky_sigma"][0] == pytest.approx([0.5, 0.5], rel=0.1)
    assert p["peak_offset_arcsec"][0] == 0.0
    shifted = np.roll(raw, 5, axis=3)  # the galaxy now 5 px off the object's pixel
    offset = stamp_photometry(shifted.astype(np.float32), PIX, 3.0, ref=1)["peak_offset_arcsec"]
    assert offset[0] == pytest.approx(5 * PIX)
    mag = magnitudes(p["flux"], np.full((1, 2), 30.0))
    slope = colour_slope(mag, np.array([475.0, 622.0]), ref=1)
    # f_nu ratio 2.5 over log10(622/475): slope = log(2.5) / log(622/475)
    assert slope[0] == pytest.approx(np.log(2.5) / np.log(622 / 475), rel=0.05)
    assert np.isnan(magnitudes(np.array([[-1.0, 1.0]]), np.full((1, 2), 30.0))[0, 0])


def test_select_hosts_applies_every_cut(tmp_path):
    n = 6
    ids = np.arange(100, 100 + n, dtype=np.int64)
    Table({"objid": ids, "z": [0.1, 0.5, 0.5, 0.5, 0.5, 0.5]}).write(tmp_path / "cat.fits")
    Table({"objid": ids[:5]}).write(tmp_path / "hosts.csv")
    config = skyconfig.load(None, json.dumps({
        "survey": {"catalog": str(tmp_path / "cat.fits"), "bands": ["g", "r"]},
        "training_set": {"hosts": {"catalog_cuts": {"z": [0.2, 0.8]},
                                   "ids": str(tmp_path / "hosts.csv"),
                                   "colour": {"bands": ["g", "r"], "range": [0.5, None]},
                                   "mag": [17, 21]}}}))
    mag = np.array([[20.0, 19.0]] * n)
    mag[2] = [19.2, 19.0]  # too blue
    mag[3] = [23.0, 22.0]  # too faint
    flags = np.array([0, 0, 0, 0, 1, 0], np.uint8)
    r50, fwhm, peak = np.full(n, 1.0), np.full(n, 0.9), np.zeros(n)
    r50[1] = 0.45  # point-like for FWHM 0.9
    ok, removed = select_hosts(config, np.arange(n), ids, flags, mag, r50, fwhm, peak)
    assert ok.tolist() == [False] * n and removed["point-like"] == 1
    r50[1], peak[1] = 1.0, 0.8  # a neighbour dominates the aperture
    ok, removed = select_hosts(config, np.arange(n), ids, flags, mag, r50, fwhm, peak)
    assert ok.tolist() == [False] * n and removed["off-centre peak"] == 1
    peak[1] = 0.2
    ok, removed = select_hosts(config, np.arange(n), ids, flags, mag, r50, fwhm, peak)
    assert ok.tolist() == [False, True, False, False, False, False]
    assert removed == {"flagged": 1, "magnitude": 1, "point-like": 0, "off-centre peak": 0,
                       "colour": 1, "catalog z": 1, "not in hosts.ids": 1}
    bad = dict(config, training_set=dict(config["training_set"], hosts=dict(
        config["training_set"]["hosts"], colour={"bands": ["g", "z"], "range": [0, 1]})))
    with pytest.raises(ConfigError, match="colour.bands"):
        select_hosts(bad, np.arange(n), ids, flags, mag, r50, fwhm, peak)


def test_blank_sky_draws_a_simulated_primary_with_the_hosts_photometry(tcfg):
    from skysift.sim.paint import sed_flux
    frame, zero = _frame(), np.zeros((2, SIZE, SIZE), np.float32)
    ref_flux = sed_flux(HOST.mag, HOST.slope, frame.lam_nm, frame.ref, frame.zeropoint)
    iso, params = simulate("isolated", zero, frame, HOST, tcfg, np.random.default_rng(1))
    assert iso.sum(axis=(1, 2)) == pytest.approx(ref_flux, rel=0.02)  # the host's magnitude
    cx, cy = _centroid(iso)
    assert abs(cx - 24) < 0.1 and abs(cy - 24) < 0.1 and params["sim_snr"] > 0
    merger, p = simulate("merger", zero, frame, HOST, tcfg, np.random.default_rng(1), True)
    alone, _ = simulate("merger", zero, frame, HOST, tcfg, np.random.default_rng(1))
    assert p["merger_stage"] in ("pair", "interacting", "coalescing", "post")
    # on blank sky the primary is simulated too: more light than the secondary and tides
    assert merger[frame.ref].sum() > alone[frame.ref].sum() + 0.9 * ref_flux[frame.ref]


def test_reddest_hosts_by_the_surveys_own_colours():
    """host_red_fraction keeps the reddest fraction in g - i (the residual's bands), judged
    by the hosts' own colour distribution, whatever the band order."""
    from skysift.sim.hosts import reddest
    rng = np.random.default_rng(2)
    mag = np.column_stack([rng.normal(21, 0.5, 400), rng.normal(20.5, 0.5, 400),
                           rng.normal(20, 0.5, 400)])  # columns i, r, g (g - i = col2 - col0)
    ok = rng.uniform(size=400) < 0.9
    red, thr = reddest(mag, ["i", "r", "g"], ok, 0.25)
    colour = mag[:, 2] - mag[:, 0]
    assert not (red & ~ok).any()
    assert red.sum() == pytest.approx(0.25 * ok.sum(), abs=2)
    assert colour[red].min() >= thr > colour[ok & ~red].max()
    same, _ = reddest(mag[:, :1], ["i"], ok, 0.25)  # one band: nothing to judge by
    assert np.array_equal(same, ok)
