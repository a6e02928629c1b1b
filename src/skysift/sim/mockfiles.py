"""Which files the mock survey writes (tiles, catalog, truth, known lenses) and the checks of
its config: what the workflow plans before the mock runs (:mod:`skysift.plan`)."""

from __future__ import annotations

import logging
from pathlib import Path

from skysift.errors import ConfigError
from skysift.survey.known import LENSCAT

log = logging.getLogger(__name__)


_TABLE_FORMATS = {".fits": "fits", ".fit": "fits", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}


def tile_names(config: dict) -> list[str]:
    """Names of the mock tiles, ``m000``, ``m001``, ... (``config["mock"]["n_tiles"]``)."""
    n = int(config["mock"]["n_tiles"])
    width = max(3, len(str(n - 1)))
    return [f"m{i:0{width}d}" for i in range(n)]


def tile_paths(config: dict) -> list[str]:
    """Every tile file the mock writes: ``survey.tiles`` for each tile, then each band."""
    pattern, bands = config["survey"]["tiles"], config["survey"]["bands"]
    if len(bands) > 1 and "{band}" not in pattern:
        raise ConfigError(f"survey.tiles '{pattern}' has no {{band}} but there are "
                          f"{len(bands)} bands; put {{band}} in the pattern")
    try:
        return [pattern.format(tile=t, band=b) for t in tile_names(config) for b in bands]
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"survey.tiles '{pattern}': only {{tile}} and {{band}} may appear "
                          f"in braces ({exc!r})") from None


def truth_path(config: dict) -> Path:
    """Where the mock writes its truth table: ``survey.labels``, which the validated config
    of a mock always sets (``mock.truth``, or ``<catalog stem>_truth.fits``: skysift.config)."""
    return Path(config["survey"]["labels"])


def table_format(path: Path, key: str) -> str:
    fmt = _TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{key} '{path}': unknown table suffix; use .fits, .csv or .ecsv")
    return fmt


def check_config(config: dict) -> None:
    survey, mock = config["survey"], config["mock"]
    if survey["kind"] != "mock":
        raise ConfigError("survey.kind is 'files': the mock writes a survey only when "
                          "survey.kind is mock (it would overwrite your tiles)")
    for key in ("psf_fwhm_arcsec", "sky_sigma_mag"):
        missing = [b for b in survey["bands"] if b not in mock[key]]
        if missing:
            raise ConfigError(f"mock.{key} has no value for bands {missing}; add them")
    if mock["lens_fraction"] + mock["merger_fraction"] > 1.0:
        raise ConfigError("mock.lens_fraction + mock.merger_fraction exceed 1; lower them")
    cols = survey["columns"]
    if len({cols["id"], cols["ra"], cols["dec"]}) < 3:
        raise ConfigError(f"survey.columns {cols}: id, ra and dec need distinct names")
    table_format(Path(survey["catalog"]), "survey.catalog")
    table_format(truth_path(config), "survey.labels")
    if truth_path(config) == Path(survey["catalog"]):
        raise ConfigError("survey.labels is the catalog path; give the truth table its own file")
    if survey["known_lenses"] and survey["known_lenses"] != LENSCAT:  # lenscat: shipped
        table_format(Path(survey["known_lenses"]), "survey.known_lenses")
        if Path(survey["known_lenses"]) in (Path(survey["catalog"]), truth_path(config)):
            raise ConfigError("survey.known_lenses is the catalog or truth path; give the "
                              "known-lens table its own file")
        names = [v for v in survey["known_lenses_columns"].values() if v]
        if len(set(names)) < len(names):
            raise ConfigError(f"survey.known_lenses_columns {survey['known_lenses_columns']}: "
                              "ra, dec and name need distinct names")
    tile_paths(config)
