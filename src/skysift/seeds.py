"""Seeds derived from the master ``seed``: one function, so every stream is a stable hash.

Every random stream of the pipeline (blank-sky positions, training sets, augmentation
copies, training, bootstrap) is seeded by BLAKE2b (8-byte digest) of a text naming the
stream, so a stream never depends on the order in which others are drawn. The texts and
their encodings are fixed by each caller: changing one changes that stream's data.
"""

from __future__ import annotations

import hashlib
from typing import Literal

_MASK_63 = 2**63 - 1


def derive_seed(*parts: object, sep: str = "/", byteorder: Literal["little", "big"] = "little",
                fold: Literal["mask", "shift"] = "mask") -> int:
    """A 63-bit seed: BLAKE2b-64 of ``sep.join(str(part))``, folded into [0, 2**63).

    Parameters
    ----------
    parts : the stream's name, e.g. ``(seed, "train", task, model, member, purpose)``.
    sep : separator between the parts.
    byteorder : how the 8 digest bytes become an integer.
    fold : ``mask`` keeps the low 63 bits, ``shift`` drops the lowest bit.
    """
    text = sep.join(str(part) for part in parts).encode()
    value = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), byteorder)
    return value >> 1 if fold == "shift" else value & _MASK_63
