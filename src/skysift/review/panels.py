"""The images of the grading page, made once per candidate at review time.

Each candidate gets a thumbnail (the colour composite at the page's one stretch, shown in
the grid and as the first panel of the larger view) and, for the larger view, a composite
at a deeper stretch and one grey strip of every band at the page's stretch followed, for
lens tasks, by the lens residual (:func:`skysift.stamps.residual.lens_residual`, the one
shared with the classical lens features). All are PNG data URIs: the page fetches nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from skysift.stamps.display import (
    auto_stretch,
    composite,
    grey,
    png_data_uri,
    rgb_bands,
    signed_grey,
)
from skysift.stamps.residual import lens_residual, residual_bands

#: Scale bar lengths to choose from, arcsec.
NICE_ARCSEC = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass
class Panels:
    """Data URIs (n,) of each candidate's images and what they show."""

    thumbs: list[str]        # composite at ``stretch``
    deep: list[str]          # composite at ``deep_stretch``
    strips: list[str]        # grey strip: each band at ``stretch``, then the residual
    strip_labels: list[str]  # one label per panel of the strip
    rgb: list[str]           # bands shown as red, green, blue ("mean": of red and blue)
    stretch: float           # image units
    deep_stretch: float      # image units


def scale_bar(pixscale_arcsec: float | None, stamp_pix: int) -> tuple[float, float] | None:
    """A scale bar for a stamp: (length in arcsec, fraction of the stamp's width).

    The longest of :data:`NICE_ARCSEC` no longer than a third of the stamp (the shortest
    when none is); None when the pixel scale is unknown or the stamp empty.
    """
    if not pixscale_arcsec or not np.isfinite(pixscale_arcsec) or stamp_pix <= 0:
        return None
    width_arcsec = stamp_pix * float(pixscale_arcsec)
    fits = [a for a in NICE_ARCSEC if a <= width_arcsec / 3]
    arcsec = fits[-1] if fits else NICE_ARCSEC[0]
    return arcsec, arcsec / width_arcsec


def make_panels(images: np.ndarray, bands: Sequence[str], opts: Mapping,
                residual_core_pix: float | None) -> Panels:
    """The page's images of stamps (n, band, y, x) in image units (NaN shown black).

    opts : config ``review`` (rgb_bands, stretch, deep_stretch, q, minimum);
    residual_core_pix : radius (pixels) of the core on which the residual's red-band scale
    is fitted, None for no residual panel (a task that is not a lens search, or one band).
    """
    order = rgb_bands(bands, opts["rgb_bands"])
    stretch = auto_stretch(images) if opts["stretch"] == "auto" else float(opts["stretch"])
    deep = stretch * float(opts["deep_stretch"])
    q, lo = opts["q"], opts["minimum"]
    thumbs = [png_data_uri(im) for im in composite(images, order, stretch, q, lo)]
    deeps = [png_data_uri(im) for im in composite(images, order, deep, q, lo)]
    strip = grey(images, stretch, q, lo)                       # (n, band, y, x)
    labels = list(bands)
    pair = residual_bands(bands) if residual_core_pix is not None else None
    if pair is not None:
        res = signed_grey(lens_residual(images, *pair, residual_core_pix), stretch, q)
        strip = np.concatenate([strip, res[:, None]], axis=1)
        labels.append(f"{bands[pair[0]]} − α·{bands[pair[1]]}")
    n, nb, s = strip.shape[0], strip.shape[1], strip.shape[-1]
    rows = strip.transpose(0, 2, 1, 3).reshape(n, s, nb * s)   # bands side by side
    return Panels(thumbs=thumbs, deep=deeps, strips=[png_data_uri(r) for r in rows],
                  strip_labels=labels, rgb=["mean" if i < 0 else bands[i] for i in order],
                  stretch=stretch, deep_stretch=deep)
