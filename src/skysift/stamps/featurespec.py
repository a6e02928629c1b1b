"""What the stamp features depend on (:class:`FeatureSpec`, stored in classical checkpoints) and
how it is made from feature settings and a file's attrs: one definition for the classical
model (:mod:`skysift.learn.classical`) and the realism score (:mod:`skysift.sim.realism`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from skysift.errors import DataError


@dataclass(frozen=True)
class FeatureSpec:
    """What the features of a set of stamps depend on (stored in classical checkpoints).

    ``radii_arcsec`` are the outer radii of the aperture annuli; ``border_pix`` the width of
    the border that measures the sky; ``smooth_arcsec`` the smoothing box of the clumpiness;
    ``seg_nsigma`` the Gini/M20 threshold in sky sigmas; ``hog_bins`` the HoG bins.
    """

    bands: tuple[str, ...]
    pixscale_arcsec: float
    psf_fwhm_arcsec: tuple[float, ...] | None
    radii_arcsec: tuple[float, ...]
    border_pix: int
    smooth_arcsec: float
    seg_nsigma: float
    hog_bins: int

    def to_dict(self) -> dict:
        """Plain types (JSON / ``torch.load(weights_only=True)`` safe)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        """Inverse of :meth:`to_dict`."""
        psf = d.get("psf_fwhm_arcsec")
        return cls(bands=tuple(str(b) for b in d["bands"]),
                   pixscale_arcsec=float(d["pixscale_arcsec"]),
                   psf_fwhm_arcsec=None if psf is None else tuple(float(p) for p in psf),
                   radii_arcsec=tuple(float(r) for r in d["radii_arcsec"]),
                   border_pix=int(d["border_pix"]), smooth_arcsec=float(d["smooth_arcsec"]),
                   seg_nsigma=float(d["seg_nsigma"]), hog_bins=int(d["hog_bins"]))


def feature_spec(settings: Mapping, attrs: Mapping) -> FeatureSpec:
    """The FeatureSpec of feature ``settings`` (a models[] entry's ``classical`` block, or the
    realism discriminator's fixed ones) and a stamps or training-set file's ``attrs``."""
    if attrs.get("pixscale_arcsec") is None:
        raise DataError("the training set has no 'pixscale_arcsec' attribute, which the "
                        "classical features need; re-run the training_set rule")
    psf = attrs.get("psf_fwhm_arcsec")
    bands = [str(b) for b in attrs["bands"]]
    if psf is not None and np.ndim(psf) == 0:
        psf = [float(psf)] * len(bands)
    return FeatureSpec(bands=tuple(bands), pixscale_arcsec=float(attrs["pixscale_arcsec"]),
                       psf_fwhm_arcsec=None if psf is None else tuple(float(p) for p in psf),
                       radii_arcsec=tuple(float(r) for r in settings["radii_arcsec"]),
                       border_pix=int(settings["border_pix"]),
                       smooth_arcsec=float(settings["smooth_arcsec"]),
                       seg_nsigma=float(settings["seg_nsigma"]),
                       hog_bins=int(settings["hog_bins"]))
