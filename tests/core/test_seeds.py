"""One seed derivation for every random stream, each keeping its documented encoding."""

from __future__ import annotations

import hashlib

from skysift.evaluate.evaluate import task_seed
from skysift.learn.runinfo import derive_seed as train_seed
from skysift.learn.transforms import copy_seed
from skysift.seeds import derive_seed
from skysift.sim.trainsim import derive_seed as trainset_seed
from skysift.stamps.cut import blank_seed


def _blake(text: str, byteorder: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), byteorder)


def test_derive_seed_is_blake2b_of_the_joined_parts_folded_to_63_bits():
    assert derive_seed(7, "a", 3) == _blake("7/a/3", "little") & (2**63 - 1)
    assert derive_seed(7, "a", sep=":", fold="shift") == _blake("7:a", "little") >> 1
    assert derive_seed("x", byteorder="big", fold="shift") == _blake("x", "big") >> 1
    assert 0 <= derive_seed(1, 2) < 2**63
    assert derive_seed(1, 2) != derive_seed(2, 1)


def test_every_stream_keeps_its_text_and_encoding():
    """The texts the streams were seeded with before there was one function: outputs stay
    identical only while these hold."""
    assert blank_seed(42, "t0") == _blake("42/cutouts/blank/t0", "little") & (2**63 - 1)
    assert task_seed(42, "lens") == _blake("42:lens", "little") >> 1
    assert copy_seed(42, "lens", 3) == _blake("skysift-augment:42:lens:3", "big") >> 1
    assert train_seed(42, "lens", "torch", "cnn", 1) == \
        _blake("42/train/lens/cnn/1/torch", "little") & (2**63 - 1)
    assert trainset_seed(42, "lens", "s0") == \
        _blake("42/training_set/lens/s0", "little") & (2**63 - 1)
