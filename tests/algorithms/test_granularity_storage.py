"""The relative-index storage model of Mao et al. (arXiv:1705.08922) / Deep Compression, bits counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from search_spaces.granularity.storage import (
    dense_layer_storage,
    kept_groups,
    model_storage,
    relative_index_entries,
    sparse_layer_storage,
)


def flags(text: str) -> list[bool]:
    return [ch == "1" for ch in text]


@pytest.mark.parametrize(
    ("pattern", "index_bits", "expected"),
    [
        ("1001", 4, (2, 0)),
        ("0000", 4, (0, 0)),
        ("1" + "0" * 3 + "1", 2, (2, 0)),  # gap 3 = 2**2 - 1 still fits
        ("1" + "0" * 4 + "1", 2, (2, 1)),  # gap 4 overflows: one padding entry
        ("1" + "0" * 7 + "1", 2, (2, 1)),  # pad after 3 skipped, pad occupies 1, then gap 3 fits
        ("1" + "0" * 8 + "1", 2, (2, 2)),
        ("0" * 4 + "1", 2, (1, 1)),  # the leading gap counts from the layer start
        ("1" + "0" * 9 + "1" + "000", 2, (2, 2)),  # trailing zeros cost nothing
    ],
)
def test_relative_index_entries(pattern: str, index_bits: int, expected: tuple[int, int]) -> None:
    assert relative_index_entries(flags(pattern), index_bits) == expected


def test_padding_overflow_bits_by_hand() -> None:
    # 11 groups of 2 weights; groups 0 and 10 kept; 2-bit relative index, 8-bit values.
    mask = np.zeros(22)
    mask[[0, 1, 20, 21]] = 1
    layer = sparse_layer_storage("w", mask, 2, value_bits=8, index_bits=2, dense_value_bits=32)
    # gap of 9 pruned groups: skip 3 + pad, skip 3 + pad, then a gap of 1 fits -> 2 padding entries.
    assert (layer.kept_groups, layer.padding_entries) == (2, 2)
    assert layer.compressed_bits == 4 * (2 + 2 * 8)  # 4 entries x (index + two 8-bit values) = 72
    assert layer.dense_bits == 22 * 32


def test_kept_groups_from_a_mask() -> None:
    mask = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]])
    assert kept_groups(mask, 2).tolist() == [True, False, False, False, True, False]
    with pytest.raises(ValueError):
        kept_groups(mask, 5)


def test_index_saving_of_kernels_at_equal_sparsity() -> None:
    # A (2, 2, 3, 3) conv weight, 36 weights, half pruned, either as 2 whole 3x3 kernels or as scattered weights.
    kernel_mask = np.zeros((2, 2, 3, 3))
    kernel_mask[0, 1] = 1
    kernel_mask[1, 0] = 1
    fine_mask = np.zeros(36)
    fine_mask[::2] = 1
    kernel = sparse_layer_storage("w", kernel_mask, 9, value_bits=8, index_bits=4)
    fine = sparse_layer_storage("w", fine_mask, 1, value_bits=8, index_bits=4)
    assert kernel.compressed_bits == 2 * (4 + 9 * 8)  # 152: two entries, one index each
    assert fine.compressed_bits == 18 * (4 + 8)  # 216: eighteen entries
    assert kernel.compressed_bits < fine.compressed_bits


def test_model_storage_ratio_with_a_dense_classifier() -> None:
    conv_mask = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1])  # groups of 3: kept, gap 2, kept
    report = model_storage(
        {"conv.weight": 12, "out.weight": 6},
        {"conv.weight": conv_mask},
        {"conv.weight": 3},
        value_bits=8,
        index_bits=4,
        dense_value_bits=32,
    )
    conv_bits = 2 * (4 + 3 * 8)  # 56
    out_bits = 6 * 8  # 48: dense at 8 bits, no index
    assert report.compressed_bits == conv_bits + out_bits
    assert report.dense_bits == 18 * 32
    assert report.compression_ratio == pytest.approx(18 * 32 / (conv_bits + out_bits))
    assert report.index_entries == 2 and report.padding_entries == 0
    assert dense_layer_storage("out.weight", 6).compressed_bits == 48
    assert report.summary()["layers"][0]["kept_groups"] == 2
