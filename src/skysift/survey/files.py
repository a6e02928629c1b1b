"""Survey tile files: the ``survey.tiles`` pattern, tile discovery and mask files.

A tile is one FITS file per band named by ``survey.tiles`` (``{tile}``, ``{band}``). These
functions look only at file names (no FITS is opened); reading a tile is
:mod:`skysift.survey.tiles`.
"""

from __future__ import annotations

import glob
import re
import string
from collections.abc import Sequence

from skysift.errors import SurveyError


def tile_path(pattern: str, tile: str, band: str) -> str:
    """The file of ``tile`` in ``band``: ``pattern.format(tile=tile, band=band)``."""
    try:
        return pattern.format(tile=tile, band=band)
    except (KeyError, IndexError, ValueError) as exc:
        raise SurveyError(f"survey.tiles '{pattern}': bad pattern ({exc}); use only the "
                          "fields {tile} and {band}") from None


def _pattern_parts(pattern: str) -> list[tuple[str, str | None]]:
    try:
        parts = [(lit, name) for lit, name, _, _ in string.Formatter().parse(pattern)]
    except ValueError as exc:
        raise SurveyError(f"survey.tiles '{pattern}': bad pattern ({exc})") from None
    bad = {name for _, name in parts if name not in (None, "tile", "band")}
    if bad or not any(name == "tile" for _, name in parts):
        raise SurveyError(f"survey.tiles '{pattern}': the pattern must contain {{tile}} and "
                          f"may contain {{band}}, nothing else (found {sorted(bad)})")
    return parts


def find_tiles(pattern: str, bands: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Tiles with a file matching ``pattern`` in some band: (sorted names, {tile: missing bands}).

    A tile appears when any band's file exists; the second value lists, per incomplete
    tile, the bands whose file is missing.
    """
    parts = _pattern_parts(pattern)
    if len(bands) > 1 and not any(name == "band" for _, name in parts):
        raise SurveyError(f"survey.tiles '{pattern}' has no {{band}} but survey.bands lists "
                          f"{list(bands)}; put {{band}} in the pattern")
    found: dict[str, set[str]] = {}
    for band in bands:
        glob_pat, regex, seen_tile = "", "", False
        for literal, name in parts:
            glob_pat += glob.escape(literal)
            regex += re.escape(literal)
            if name == "band":
                glob_pat += glob.escape(band)
                regex += re.escape(band)
            elif name == "tile":
                glob_pat += "*"
                regex += "(?P=tile)" if seen_tile else "(?P<tile>[^/\\\\]+)"
                seen_tile = True
        for path in glob.glob(glob_pat):
            match = re.fullmatch(regex, path)
            if match:
                found.setdefault(match["tile"], set()).add(band)
    tiles = sorted(found)
    missing = {t: [b for b in bands if b not in found[t]] for t in tiles}
    return tiles, {t: m for t, m in missing.items() if m}


def missing_band_message(pattern: str, tile: str, absent: Sequence[str]) -> str:
    """The user-facing message for a tile whose files of bands ``absent`` are missing."""
    path = tile_path(pattern, tile, absent[0])
    return (f"{path}: band '{absent[0]}' of tile '{tile}' is missing; add the file, remove "
            "the tile's other bands, or fix survey.bands")


def discover_tiles(pattern: str, bands: Sequence[str]) -> list[str]:
    """Names of the tiles with a file in every band of ``bands``, sorted.

    A tile missing the file of some band is left out (:func:`find_tiles` lists it with its
    missing bands): the survey index rejects its objects (``missing_band:<band>``), or
    refuses the survey under ``strict``, so a missing file does not stop the plan.

    Raises
    ------
    SurveyError
        If the pattern is malformed or has no ``{band}`` while several bands are configured.
    """
    tiles, missing = find_tiles(pattern, bands)
    return [t for t in tiles if t not in missing]


def mask_paths(survey: dict, tile: str, bands: Sequence[str] | None = None) -> list[str]:
    """Files holding the mask of each band of ``tile`` (``bands``, default ``survey.bands``;
    [] when ``survey.mask.kind`` is none)."""
    mask = survey["mask"]
    if mask["kind"] == "none":
        return []
    pattern = mask["file"] or survey["tiles"]
    return [tile_path(pattern, tile, band) for band in (survey["bands"] if bands is None
                                                        else bands)]
