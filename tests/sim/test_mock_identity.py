"""The mock survey's tiles, catalog and truth stay bit-identical across refactors.

The expected digests were recorded on the code before ``simulate.Knots`` and
``mock_render.Blobs`` were merged into one class (task G of issue 4). Each digest covers a
file's content, not its bytes: pixel data and every header card except provenance (git
commit, config hash and version change with every commit and every new schema key), and
every table column. Run ``python tests/sim/test_mock_identity.py`` to print the digests.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from skysift.sim import mock

#: Provenance cards (skysift.io.provenance) left out of the digests.
PROVENANCE = {"SKYSIFT_VERSION", "GIT_COMMIT", "CONFIG_HASH", "SEED", "H5_LAYOUT_VERSION", "STEP"}

#: A mock with every kind of object (stars, field galaxies, lenses, mergers of all stages).
SETTINGS = ("seed=11", "mock.n_tiles=2", "mock.tile_size_pix=120", "mock.n_galaxies_per_tile=24",
            "mock.n_stars_per_tile=4", "mock.lens_fraction=0.25", "mock.merger_fraction=0.5")

#: Recorded on the unmodified code (git ed67cb8) with ``python tests/sim/test_mock_identity.py``.
EXPECTED: dict[str, str] = {
    "tiles/m000_g.fits": "2cf9c92fadbc0a56fd1cd561d2ce9e85751835283b9def2bbb6324a3b9b3cbe6",
    "tiles/m000_i.fits": "245653e9ac29eff0ff7e6ba3731c60af52583aeddc032d5d2bc8b9cde778a40d",
    "tiles/m000_r.fits": "2db54609a2cd5354d4330b22b27b600f04f956a889e05685c4db3d143a23b7b4",
    "tiles/m001_g.fits": "c616ed5d71749edcaf09dd4be62294bf709f38064f5b9a5dced8671b85f24eaf",
    "tiles/m001_i.fits": "edc3e1b9b83cdc276462eb49eab2ef6e1261eab1728df0cbea5442561358643b",
    "tiles/m001_r.fits": "708bf44c0f59e0a7e3767a62dc4837291ca6e4e035c67dfa9273f03cc6acf0fb",
    "catalog.fits": "0fbc65c7784df02747f2f7079a96c35b951dd9f9cc0a81df41a42158c137a232",
    # re-recorded when the merger_tidal_snr column was added (session 4); tiles and catalog
    # unchanged: the merger draws are the same with mock.merger.tidal_snr_min at 0
    "truth.fits": "c94e0a59ed09a4da69514f10351e84af6c3bea049419ebbb7008358c0ad715d9",
}


def content_digest(path: Path) -> str:
    """SHA-256 of a FITS file's data and non-provenance header cards, HDU by HDU."""
    h = hashlib.sha256()
    with fits.open(path) as hdul:
        for hdu in hdul:
            for card in hdu.header.cards:
                if card.keyword.upper() not in PROVENANCE:
                    h.update(f"{card.keyword}={card.value!r}".encode())
            if hdu.data is None:
                continue
            if isinstance(hdu, fits.BinTableHDU):
                for name in hdu.columns.names:
                    col = np.asarray(hdu.data[name])
                    h.update(name.encode() + str(col.dtype).encode() + col.tobytes())
            else:
                h.update(np.ascontiguousarray(hdu.data).tobytes())
    return h.hexdigest()


def make_mock(root: Path) -> dict[str, str]:
    """Write the small mock under ``root`` with the mock CLI; digests by relative path."""
    argv = ["--quiet", "--set", f"survey.tiles={root}/tiles/{{tile}}_{{band}}.fits",
            "--set", f"survey.catalog={root}/catalog.fits",
            "--set", f"survey.labels={root}/truth.fits"]
    for setting in SETTINGS:
        argv += ["--set", setting]
    assert mock.main(argv) == 0
    files = sorted((root / "tiles").glob("*.fits")) + [root / "catalog.fits", root / "truth.fits"]
    return {str(p.relative_to(root)): content_digest(p) for p in files}


def test_mock_tiles_catalog_truth_unchanged(tmp_path):
    digests = make_mock(tmp_path)
    assert digests == EXPECTED


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        for name, digest in make_mock(Path(d)).items():
            print(f"    {name!r}: {digest!r},")
    sys.exit(0)
