"""Tests of skysift.ids: ids as exact join keys, the one join of labels, evaluation, index."""

import logging

import numpy as np
import pytest

from skysift.errors import SurveyError
from skysift.ids import common_keys, find_sorted, id_keys, match_ids
from skysift.survey.labels import LabelIndex, unmatched_label_ids

BIG = 2**53  # float64 cannot tell BIG from BIG + 1


def test_integer_ids_above_2_53_survive_exactly():
    ids = np.array([BIG + 1, BIG, 2**63 - 1], dtype=np.uint64)
    keys = id_keys(ids)
    assert keys.dtype == np.int64
    assert keys.tolist() == [BIG + 1, BIG, 2**63 - 1]
    assert match_ids(np.array([BIG, BIG + 1, BIG + 2]), keys).tolist() == [1, 0, -1]


def test_integer_ids_meet_text_ids_through_their_decimal_string():
    text = np.array(["7", str(BIG + 1), "x"])
    assert match_ids(np.array([BIG + 1, 7, BIG]), text).tolist() == [1, 0, -1]
    assert match_ids(text, np.array([7, BIG + 1], np.int64)).tolist() == [0, 1, -1]
    a, b = common_keys(id_keys(np.array([5])), id_keys(np.array(["5"])))
    assert a.dtype.kind == b.dtype.kind == "U" and a.tolist() == b.tolist() == ["5"]


def test_bytes_in_fixed_width_and_object_arrays_are_decoded_not_repr():
    text = np.array(["ñu-1", "b", "42"])
    fixed = np.array(["ñu-1".encode(), b"42"])
    objects = np.array(["ñu-1".encode(), "b", 42, b"zz"], dtype=object)
    assert id_keys(fixed).tolist() == ["ñu-1", "42"]
    assert id_keys(objects).tolist() == ["ñu-1", "b", "42", "zz"]
    assert match_ids(fixed, text).tolist() == [0, 2]
    assert match_ids(objects, text).tolist() == [0, 1, 2, -1]
    assert match_ids(objects, fixed).tolist() == [0, -1, 1, -1]
    assert match_ids(text, objects).tolist() == [0, 1, 2]


def test_masked_ids_are_read_through_their_data():
    ids = np.ma.MaskedArray([BIG + 1, 3], mask=[False, True])
    assert id_keys(ids).tolist() == [BIG + 1, 3]


@pytest.mark.parametrize("ids", [np.array([1.0, 2.0]), np.array([True])])
def test_float_ids_raise_naming_the_source_and_the_fix(ids):
    with pytest.raises(SurveyError, match=r"cat\.fits: column 'objid'.*integers or strings"
                                          r".*store the id column as integer or text"):
        id_keys(ids, "cat.fits: column 'objid'")


def test_unsigned_ids_beyond_int64_are_exact_decimal_text_as_the_catalog_keeps_them():
    big = np.array([2**63, 2**64 - 1], dtype=np.uint64)
    assert id_keys(big).tolist() == [str(2**63), str(2**64 - 1)]
    assert id_keys(np.array([5], dtype=np.uint64)).dtype == np.int64  # small ones stay integer
    assert match_ids(np.array([str(2**64 - 1), "7"]), big).tolist() == [1, -1]
    found, labels = LabelIndex(big, np.array([1, 0])).lookup(np.array([str(2**63)]))
    assert found.tolist() == [True] and labels.tolist() == [1]


def test_match_ids_absent_ids_and_empty_inputs():
    ref = np.array([10, 20, 30])
    assert match_ids(np.array([30, 5, 10, 31]), ref).tolist() == [2, -1, 0, -1]
    empty = match_ids(np.array([], np.int64), ref)
    assert empty.dtype == np.int64 and empty.shape == (0,)
    assert match_ids(np.array(["a", "b"]), np.array([], dtype=str)).tolist() == [-1, -1]
    assert match_ids(np.array([1]), np.array([], dtype=np.int64)).tolist() == [-1]
    assert match_ids(np.array([], dtype=str), np.array([], dtype=str)).shape == (0,)
    assert find_sorted(np.array([], np.int64), np.array([1, 2])).tolist() == [-1, -1]


def test_match_ids_agrees_with_a_dictionary_on_random_mixed_ids():
    rng = np.random.default_rng(11)
    for _ in range(20):
        ref = rng.choice(BIG + np.arange(40), size=25, replace=False)
        ids = rng.choice(BIG + np.arange(40), size=30)
        as_text = rng.random() < 0.5
        ref_in = ref.astype(str) if as_text else ref
        where = {int(v): i for i, v in enumerate(ref)}
        assert match_ids(ids, ref_in).tolist() == [where.get(int(v), -1) for v in ids]


def test_label_index_agrees_with_match_ids_on_a_mixed_example(caplog):
    label_ids = np.array([b"x", "y", BIG + 1, "12", b"x"], dtype=object)
    labels = np.array([1, 0, 1, 0, 1], np.uint8)
    stamp_ids = np.array([BIG + 1, 12, 5, BIG])
    index = LabelIndex(label_ids, labels)
    with caplog.at_level(logging.INFO):
        found, got = index.lookup(stamp_ids)
    pos = match_ids(stamp_ids, label_ids)
    assert found.tolist() == (pos >= 0).tolist() == [True, True, False, False]
    assert got.tolist() == np.where(pos >= 0, labels[pos], 0).tolist() == [1, 0, 0, 0]
    assert "repeated rows" in caplog.text  # b"x" twice with the same label, counted once
    # text stamp ids, bytes among them, against the same index
    found, got = index.lookup(np.array([b"x", b"y", b"q"]))
    pos = match_ids(np.array([b"x", b"y", b"q"]), label_ids)
    assert found.tolist() == (pos >= 0).tolist() == [True, True, False]
    assert got.tolist() == [1, 0, 0]
    # the labels that found a stamp are remembered (sorted text keys: 12, 900..., x, y)
    assert index.matched.tolist() == [True, True, True, True]


def test_label_index_remembers_which_labels_found_a_stamp():
    index = LabelIndex(np.array([BIG + 2, BIG, BIG + 1]), np.array([1, 0, 1]))
    found, got = index.lookup(np.array([BIG + 1, 3]))
    assert found.tolist() == [True, False] and got.tolist() == [1, 0]
    assert int(index.matched.sum()) == 1  # BIG + 1 only; BIG and BIG + 2 found no stamp
    with pytest.raises(SurveyError, match="different labels"):
        LabelIndex(np.array(["a", "a"]), np.array([0, 1])).lookup(np.array(["a"]))


def test_unmatched_label_ids_decodes_bytes_of_either_side():
    catalog = np.array([b"a", b"b"])
    labels = np.array(["b", "c", "a"], dtype=object)
    assert unmatched_label_ids(labels, catalog).tolist() == ["c"]
    assert unmatched_label_ids(np.array([7, BIG + 1]), np.array(["7"])).tolist() == [BIG + 1]
