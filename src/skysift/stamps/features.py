"""Per-object features of preprocessed stamps for the ``classical`` model (pure numpy).

Everything is measured about the stamp centre ``((s-1)/2, (s-1)/2)`` on every band and on a
detection image (the band mean), so the features of ``g x`` equal those of ``x`` for the 8
rotations/flips g of the square (to float rounding): a D4-augmented training set adds nothing.
Per channel (bands, then ``det``):

- ``ann{k}_{c}``: mean surface brightness in the annuli ``features.radii_arcsec`` (the first is
  a disc), ``col{k}_{b1}{b2}``: its difference between adjacent bands (arcsinh units: a colour),
  ``apflux_{b}``: flux within the largest radius, ``peak_{b}``: brightest pixel of the disc;
- ``r20/r50/r80_{c}`` (pixels, from the curve of growth within ``R = s/2 - 3``) and the
  concentration ``conc_{c} = 5 log10(r80/r20)`` (Conselice 2003);
- ``asym_{c}``: the rotational asymmetry sum|I - I180| / sum|I| (Lotz et al. 2004) minimised
  over rotation centres within ±1 pixel in half-pixel steps, ``asymbg_{c}``: minus the
  expected asymmetry of the sky noise, ``ashift_det``: distance of the best centre (pixels);
- ``gini_{c}``, ``m20_{c}`` (Lotz et al. 2004) on the pixels above ``seg_nsigma`` × sky noise;
- ``smooth_{c}``: clumpiness sum(I - I_smooth)+ / sum|I| outside the central disc;
- residuals where arcs and tidal features live: ``symres{k}_{c}`` = sum|I - I180| per annulus
  / sum|I|; ``ellres{k}_{c}`` = positive residual after subtracting the median in elliptical
  annuli (shape from the second moments of ``det``) / sum|I|; ``axis_ratio``;
- rotation-invariant HoG on ``det``: ``hogr{a}_{j}`` histograms of the angle between the
  gradient and the radial direction (0 = pointing outwards) in 3 annuli, and ``hogs{j}``, the
  absolute-orientation histogram sorted (pooled over orientation); both magnitude-weighted,
  soft-binned and normalised;
- ``sky_{b}`` (1.4826 MAD of the border pixels), ``skymed_{b}``, ``psf_{b}`` (FWHM arcsec,
  from the training set's ``psf_fwhm_arcsec`` attribute; NaN when unknown) and
  ``r50psf_{b}`` = r50 / PSF FWHM; ``masked`` = fraction of masked pixels;
- the lens residual (:mod:`skysift.stamps.residual`): ``bres{k}``, ``bres_peak/cover/tangential``.

Masked pixels (NaN) are left out of every sum, mean, median and sort; undefined values are
NaN, which the boosted trees route as missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import uniform_filter

from skysift.stamps.featurespec import FeatureSpec
from skysift.stamps.residual import residual_feature_names, residual_features

__all__ = ["compute_features", "feature_names", "gini", "growth_radii",
           "hog_pooled"]

#: Rotation-centre offsets searched by the asymmetry, in half pixels (±1 pixel).
CENTRE_STEPS = range(-2, 3)
#: Annuli of the radial HoG (fractions of the measuring radius).
HOG_ANNULI = (0.0, 1 / 3, 2 / 3, 1.0)
MAD_TO_SIGMA = 1.4826


def feature_names(spec: FeatureSpec) -> list[str]:
    """Names of the columns of :func:`compute_features`, in order."""
    bands = list(spec.bands)
    chans = bands + ["det"]
    nk = len(spec.radii_arcsec)
    names = [f"ann{k}_{c}" for c in bands for k in range(nk)]
    names += [f"col{k}_{a}{b}" for a, b in zip(bands[:-1], bands[1:], strict=True)
              for k in range(nk)]
    names += [f"apflux_{b}" for b in bands] + [f"peak_{b}" for b in bands]
    for stat in ("r20", "r50", "r80", "conc", "asym", "asymbg", "gini", "m20", "smooth"):
        names += [f"{stat}_{c}" for c in chans]
    names += ["ashift_det", "axis_ratio"]
    names += [f"symres{k}_{c}" for c in chans for k in range(nk)]
    names += [f"ellres{k}_{c}" for c in chans for k in range(nk)]
    names += [f"hogr{a}_{j}" for a in range(len(HOG_ANNULI) - 1) for j in range(spec.hog_bins)]
    names += [f"hogs{j}" for j in range(spec.hog_bins)]
    names += [f"sky_{b}" for b in bands] + [f"skymed_{b}" for b in bands]
    names += [f"psf_{b}" for b in bands] + [f"r50psf_{b}" for b in bands] + ["masked"]
    return names + residual_feature_names(nk)


def compute_features(images, spec: FeatureSpec, batch_size: int = 256) -> np.ndarray:
    """Features of every stamp, ``batch_size`` stamps at a time.

    Parameters
    ----------
    images : array-like (n, band, s, s) float32
        Preprocessed stamps (numpy array or h5py dataset); NaN marks masked pixels.
    spec : FeatureSpec
        Bands, pixel scale, PSF and the feature settings.

    Returns
    -------
    np.ndarray (n, len(feature_names(spec))) float32
    """
    n = len(images)
    out = np.empty((n, len(feature_names(spec))), dtype=np.float32)
    for start in range(0, n, batch_size):
        x = np.asarray(images[start:start + batch_size], dtype=np.float32)
        out[start:start + len(x)] = _batch(x, spec)
    return out


def gini(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Gini coefficient (Lotz et al. 2004) of |values| over the ``mask`` pixels of each row.

    values, mask : (..., m); returns (...), 0 for a uniform image, 1 when one pixel holds all
    the flux, NaN with fewer than 2 pixels.
    """
    a = np.sort(np.where(mask, np.abs(values), np.inf), axis=-1)
    m = mask.sum(axis=-1)
    i = np.arange(1, values.shape[-1] + 1)
    w = np.where(i <= m[..., None], 2 * i - m[..., None] - 1, 0)
    a = np.where(np.isfinite(a), a, 0.0)
    total = a.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (w * a).sum(axis=-1) / (total * (m - 1))
    return np.where((m >= 2) & (total > 0), g, np.nan)


def growth_radii(flux: np.ndarray, radius: np.ndarray, fractions: Sequence[float]
                 ) -> np.ndarray:
    """Radii enclosing ``fractions`` of the flux, from the curve of growth.

    flux : (..., m) pixel fluxes; radius : (m,) their distance to the centre (pixels).
    The pixels are taken in order of radius; after k pixels the enclosed area is k pixel²,
    i.e. the radius sqrt(k / pi), which interpolates the curve far better than the pixel
    centres' radii. Returns (len(fractions), ...) in pixels, NaN when the total is <= 0.
    """
    order = np.argsort(radius, kind="stable")
    # only after whole rings of equal radius, so the curve does not depend on pixel order
    rs = np.round(radius[order], 9)
    ends = np.flatnonzero(np.r_[rs[1:] != rs[:-1], True])
    cum = np.maximum.accumulate(np.cumsum(flux[..., order], axis=-1)[..., ends], axis=-1)
    r_area = np.sqrt((ends + 1) / np.pi)
    total = cum[..., -1:]
    out = []
    for frac in fractions:
        target = frac * total
        k = np.argmax(cum >= target, axis=-1)[..., None]
        km = np.maximum(k - 1, 0)
        c1, c0 = np.take_along_axis(cum, k, -1), np.take_along_axis(cum, km, -1)
        r1 = r_area[k]
        r0 = np.where(k > 0, r_area[km], 0.0)
        c0 = np.where(k > 0, c0, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(c1 > c0, (target - c0) / (c1 - c0), 1.0)
        out.append(np.where(total > 0, r0 + t * (r1 - r0), np.nan)[..., 0])
    return np.stack(out)


def _soft_bins(angle: np.ndarray, weight: np.ndarray, nbins: int, period: float,
               cyclic: bool) -> np.ndarray:
    """Linear-interpolation histogram (..., nbins) of ``angle`` in [0, period]."""
    pos = angle / period * nbins - (0.0 if cyclic else 0.5)
    lo = np.floor(pos)
    t = pos - lo
    lo = lo.astype(np.int64)
    hi = lo + 1
    if cyclic:
        lo, hi = lo % nbins, hi % nbins
    else:
        t = np.where(lo < 0, 1.0, np.where(hi > nbins - 1, 0.0, t))
        lo, hi = np.clip(lo, 0, nbins - 1), np.clip(hi, 0, nbins - 1)
    rows = np.arange(weight.size // weight.shape[-1]).reshape(weight.shape[:-1] + (1,)) * nbins
    size = weight.size // weight.shape[-1] * nbins
    hist = (np.bincount((rows + lo).ravel(), (weight * (1 - t)).ravel(), minlength=size)
            + np.bincount((rows + hi).ravel(), (weight * t).ravel(), minlength=size))
    return hist.reshape(weight.shape[:-1] + (nbins,))


def hog_pooled(det: np.ndarray, radius_pix: float, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotation- and flip-invariant gradient histograms of images (n, s, s) about their centre.

    Returns ``(radial (n, 3, nbins), sorted (n, nbins))``: per annulus of
    :data:`HOG_ANNULI` × ``radius_pix``, the histogram of the angle in [0, pi] between the
    gradient and the outward radial direction; and the histogram of the gradient's absolute
    orientation (mod pi, cyclic bins centred on multiples of pi/nbins), sorted decreasing.
    Both are weighted by the gradient magnitude and normalised by its sum in the disc.
    """
    n, s, _ = det.shape
    gy, gx = np.gradient(det, axis=(1, 2))
    ry, rx = np.mgrid[:s, :s] - (s - 1) / 2
    r = np.hypot(ry, rx)
    inside = (r < radius_pix).ravel()
    mag = np.hypot(gx, gy).reshape(n, -1)[:, inside]
    cross = np.abs(rx * gy - ry * gx).reshape(n, -1)[:, inside]
    dot = (rx * gx + ry * gy).reshape(n, -1)[:, inside]
    phi = np.arctan2(cross, dot)
    ring = np.digitize(r.ravel()[inside], np.array(HOG_ANNULI[1:-1]) * radius_pix)
    norm = np.maximum(mag.sum(axis=1), 1e-12)[:, None]
    radial = np.stack([_soft_bins(phi[:, ring == a], mag[:, ring == a], nbins, np.pi, False)
                       for a in range(len(HOG_ANNULI) - 1)], axis=1) / norm[:, :, None]
    theta = np.mod(np.arctan2(gy, gx).reshape(n, -1)[:, inside], np.pi)
    pooled = -np.sort(-_soft_bins(theta, mag, nbins, np.pi, True), axis=-1) / norm
    return radial, pooled


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """Median along the last axis ignoring NaN (NaN when all are); faster than np.nanmedian."""
    srt = np.sort(a, axis=-1)
    m = np.isfinite(a).sum(axis=-1, keepdims=True)
    lo = np.take_along_axis(srt, np.maximum((m - 1) // 2, 0), -1)
    hi = np.take_along_axis(srt, np.minimum(m // 2, a.shape[-1] - 1), -1)
    return np.where(m > 0, 0.5 * (lo + hi), np.nan)[..., 0]


def _rotations(x: np.ndarray, steps) -> dict[tuple[int, int], np.ndarray]:
    """Views of x (..., s, s) rotated by 180° about ((s-1+dy)/2, (s-1+dx)/2), zero-padded."""
    p = max(abs(d) for d in steps)
    flipped = np.pad(x[..., ::-1, ::-1], [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
    s = x.shape[-1]
    return {(dy, dx): flipped[..., p - dy:p - dy + s, p - dx:p - dx + s]
            for dy in steps for dx in steps}


def _ellipse(det: np.ndarray, ry: np.ndarray, rx: np.ndarray, inside: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(axis ratio (n,), elliptical radius (n, s, s)) from second moments about the centre."""
    w = np.where(inside, np.maximum(det, 0), 0)
    tot = np.maximum(w.sum(axis=(1, 2)), 1e-12)
    mxx = (w * rx ** 2).sum(axis=(1, 2)) / tot
    myy = (w * ry ** 2).sum(axis=(1, 2)) / tot
    mxy = (w * rx * ry).sum(axis=(1, 2)) / tot
    half = np.sqrt(((mxx - myy) / 2) ** 2 + mxy ** 2)
    lmax, lmin = (mxx + myy) / 2 + half, np.maximum((mxx + myy) / 2 - half, 0)
    q = np.clip(np.sqrt(lmin / np.maximum(lmax, 1e-12)), 0.2, 1.0)
    theta = 0.5 * np.arctan2(2 * mxy, mxx - myy)
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u, v = rx * c + ry * s, -rx * s + ry * c
    qq = q[:, None, None]
    return q, np.sqrt(qq * u ** 2 + v ** 2 / qq)


def _elliptical_median(x: np.ndarray, valid: np.ndarray, rell: np.ndarray, nbins: int
                       ) -> np.ndarray:
    """Median of x (n, c, m) in 1-pixel elliptical annuli ``rell`` (n, m); model (n, c, m)."""
    n, c, m = x.shape
    b = np.minimum(np.floor(rell), nbins - 1).astype(np.int64)[:, None, :].repeat(c, 1)
    b = np.where(valid, b, nbins)  # masked pixels into a bin of their own
    order = np.lexsort((x, b), axis=-1)
    xs = np.take_along_axis(x, order, -1)
    rows = np.arange(n * c).reshape(n, c, 1) * (nbins + 1)
    counts = np.bincount((rows + b).ravel(), minlength=n * c * (nbins + 1))
    counts = counts.reshape(n, c, nbins + 1)
    starts = np.cumsum(counts, axis=-1) - counts
    lo = np.clip(starts + (counts - 1) // 2, 0, m - 1)
    hi = np.clip(starts + counts // 2, 0, m - 1)
    med = 0.5 * (np.take_along_axis(xs, lo, -1) + np.take_along_axis(xs, hi, -1))
    med = np.where(counts > 0, med, 0.0)
    return np.take_along_axis(med, b, -1)


def _channels(x: np.ndarray, valid_b: np.ndarray, border_pix: int) -> tuple[np.ndarray, ...]:
    """Sky-subtracted channels, valid (n, C, s, s), sky noise, sky median (n, C); C = bands+det."""
    s = x.shape[-1]
    nvalid = valid_b.sum(axis=1)
    xb = np.where(valid_b, x, 0.0).astype(np.float64)
    det = np.where(nvalid > 0, xb.sum(axis=1) / np.maximum(nvalid, 1), 0.0)
    ch = np.concatenate([xb, det[:, None]], axis=1)               # (n, C, s, s)
    valid = np.concatenate([valid_b, (nvalid > 0)[:, None]], axis=1)
    yy, xx = np.mgrid[:s, :s]
    edge = np.minimum(np.minimum(yy, xx), np.minimum(s - 1 - yy, s - 1 - xx))
    border = edge < border_pix
    bvals = np.where(valid[..., border], ch[..., border], np.nan)
    skymed = np.nan_to_num(_nanmedian(bvals))
    sky = np.nan_to_num(MAD_TO_SIGMA * _nanmedian(np.abs(bvals - skymed[..., None])))
    return np.where(valid, ch - skymed[..., None, None], 0.0), valid, sky, skymed


def _apertures(flat: np.ndarray, vflat: np.ndarray, onehot: np.ndarray, disc: np.ndarray,
               nb: int) -> list[np.ndarray]:
    """``ann``, ``col``, ``apflux``, ``peak`` of flat channels (n, C, m); onehot (m, nk)."""
    n = len(flat)
    sums, counts = flat @ onehot, vflat @ onehot
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    feats = [mean[:, :nb].reshape(n, -1), (mean[:, :nb - 1] - mean[:, 1:nb]).reshape(n, -1)]
    feats += [np.nansum(mean[:, :nb] * onehot.sum(axis=0), axis=-1)]  # apflux: mean x area
    peak = np.where(vflat[:, :nb, disc] > 0, flat[:, :nb, disc], -np.inf).max(axis=-1)
    return feats + [np.where(np.isfinite(peak), peak, np.nan)]


def _asymmetry(ch: np.ndarray, valid: np.ndarray, inside: np.ndarray, sky: np.ndarray,
               absum: np.ndarray) -> tuple[np.ndarray, ...]:
    """asym, asymbg, centre shift (n, C) at the best centre, and |I - I180| there (n, C, s, s)."""
    chv = np.where(valid & inside, ch, 0.0).astype(np.float32)  # float32: the costly loop
    rot_ch = _rotations(ch.astype(np.float32), CENTRE_STEPS)
    rot_ok = _rotations(valid, CENTRE_STEPS)
    offsets = list(rot_ch)
    asyms = np.empty((len(offsets),) + ch.shape[:2])
    npix = np.empty_like(asyms)
    for i, off in enumerate(offsets):
        both = rot_ok[off] & valid & inside
        den = np.abs(np.where(both, chv, 0)).sum(axis=(-2, -1), dtype=np.float64)
        asyms[i] = np.where(both, np.abs(chv - rot_ch[off]), 0).sum(
            axis=(-2, -1), dtype=np.float64) / np.maximum(den, 1e-12)
        npix[i] = both.sum(axis=(-2, -1))
    best = np.argmin(asyms, axis=0)                                  # (n, C)
    best_a = np.take_along_axis(asyms, best[None], 0)[0]
    best_npix = np.take_along_axis(npix, best[None], 0)[0]
    best_shift = 0.5 * np.hypot(*np.array(offsets, dtype=np.float64).T)[best]
    best_res = np.zeros_like(ch)
    for i, off in enumerate(offsets):
        rows = best == i
        if rows.any():
            both = rot_ok[off][rows] & valid[rows] & inside
            best_res[rows] = np.where(both, np.abs(chv[rows] - rot_ch[off][rows]), 0)
    return best_a, best_a - best_npix * 2 * sky / np.sqrt(np.pi) / absum, best_shift, best_res


def _gini_m20(chf: np.ndarray, segf: np.ndarray, ry: np.ndarray, rx: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Gini and M20 (n, C) of flat channels (n, C, m) on the segmentation ``segf`` (n, C, m)."""
    g = gini(chf, segf)
    f = np.where(segf, chf, 0.0)
    ftot = f.sum(axis=-1)
    with np.errstate(all="ignore"):
        yc = (f * ry.ravel()).sum(-1) / ftot
        xc = (f * rx.ravel()).sum(-1) / ftot
        mi = f * ((ry.ravel() - yc[..., None]) ** 2 + (rx.ravel() - xc[..., None]) ** 2)
        order = np.argsort(-np.where(segf, chf, -np.inf), axis=-1)
        fs, ms = np.take_along_axis(f, order, -1), np.take_along_axis(mi, order, -1)
        before = np.cumsum(fs, axis=-1) - fs
        m20 = np.log10((ms * (before < 0.2 * ftot[..., None])).sum(-1) / mi.sum(-1))
    return g, np.where((segf.sum(-1) >= 2) & (ftot > 0), m20, np.nan)


def _batch(x: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Features (n, len(feature_names(spec))) float32 of stamps x (n, band, s, s)."""
    n, nb, s, _ = x.shape
    if nb != len(spec.bands):
        raise ValueError(f"stamps have {nb} bands, the feature spec {len(spec.bands)}")
    valid_b = np.isfinite(x)
    ch, valid, sky, skymed = _channels(x, valid_b, spec.border_pix)
    ry, rx = np.mgrid[:s, :s] - (s - 1) / 2
    r = np.hypot(ry, rx)
    edges = np.r_[0.0, np.asarray(spec.radii_arcsec) / spec.pixscale_arcsec]
    ann = np.digitize(r, edges) - 1                                 # -1 never (r >= 0)
    onehot = (ann.ravel()[:, None] == np.arange(len(edges) - 1)).astype(np.float64)  # (m, nk)
    flat, vflat = ch.reshape(n, -1, s * s), valid.reshape(n, -1, s * s).astype(np.float64)
    feats = _apertures(flat, vflat, onehot, (r < edges[1]).ravel(), nb)
    big = s / 2 - 3
    inside = r < big
    rads = growth_radii(flat[..., inside.ravel()], r[inside], (0.2, 0.5, 0.8))
    with np.errstate(all="ignore"):
        conc = 5 * np.log10(rads[2] / rads[0])
    absum = np.maximum(np.abs(np.where(inside, ch, 0)).sum(axis=(-2, -1)), 1e-12)
    best_a, asym_bg, best_shift, best_res = _asymmetry(ch, valid, inside, sky, absum)
    seg = valid & inside & (ch > spec.seg_nsigma * sky[..., None, None])
    g, m20 = _gini_m20(flat, seg.reshape(n, -1, s * s), ry, rx)
    k = max(1, int(round(spec.smooth_arcsec / spec.pixscale_arcsec)) // 2 * 2 + 1)
    smooth = uniform_filter(ch, size=(1, 1, k, k), mode="nearest")
    ring = valid & inside & (r >= edges[1])  # clumpiness outside the central disc
    smoothness = np.where(ring, np.maximum(ch - smooth, 0), 0).sum(axis=(-2, -1)) / absum
    feats += [rads[0], rads[1], rads[2], conc, best_a, asym_bg, g, m20, smoothness]
    q, rell = _ellipse(ch[:, -1], ry, rx, inside)
    feats += [best_shift[:, -1:], q[:, None]]
    # residual flux per annulus: 180° rotation, elliptical median model
    feats += [(best_res.reshape(n, -1, s * s) @ onehot / absum[..., None]).reshape(n, -1)]
    sel = inside.ravel()
    model = _elliptical_median(flat[..., sel], vflat[..., sel] > 0, rell.reshape(n, -1)[:, sel],
                               int(np.ceil(big)) + 1)
    pos = np.maximum(flat[..., sel] - model, 0) * vflat[..., sel]
    feats += [(pos @ onehot[sel] / absum[..., None]).reshape(n, -1)]
    feats += [h.reshape(n, -1) for h in hog_pooled(ch[:, -1], big, spec.hog_bins)]
    psf = (np.full(nb, np.nan) if spec.psf_fwhm_arcsec is None
           else np.asarray(spec.psf_fwhm_arcsec, dtype=np.float64))
    feats += [sky[:, :nb], skymed[:, :nb], np.broadcast_to(psf, (n, nb)),
              rads[1][:, :nb] * spec.pixscale_arcsec / psf,
              1 - valid_b.mean(axis=(1, 2, 3))[:, None]]
    feats.append(residual_features(x, spec.bands, edges[1:], edges[1], spec.border_pix))
    out = np.concatenate([np.asarray(a, dtype=np.float64).reshape(n, -1) for a in feats], axis=1)
    return out.astype(np.float32)
