"""Tree cells as JSON: round trips, validation, the JSON transformations and the drawing (no Django)."""

from __future__ import annotations

import json

import pytest
import torch

from search_spaces.kit import pathlevel as N
from search_spaces.kit import tree_cells as T
from search_spaces.nas.draw import tree_svg

GROWN = T.apply_all(
    T.leaf("sep3x3"),
    [
        {"type": "set_merge", "path": [], "merge": "add", "branches": 3},
        {"type": "insert_node", "path": [], "branch": 2},
        {"type": "set_merge", "path": [2], "merge": "concat", "branches": 2},
        {"type": "replace_identity", "path": [2], "branch": 0, "op": "avgpool3x3"},
        {"type": "insert_node", "path": [2], "branch": 1},
        {"type": "replace_identity", "path": [2, 1], "branch": 0, "op": "conv1x1"},
    ],
)


def test_grown_tree_has_the_expected_shape_and_depth() -> None:
    assert T.describe(GROWN) == "add(sep3x3, sep3x3, sep3x3>concat(avgpool3x3, identity>conv1x1))"
    assert T.depth(GROWN) == 3
    assert GROWN["branches"][2]["child"]["split"] == "split"  # channel-wise edges split their input


@pytest.mark.parametrize("base", ["resnet", "densenet"])
def test_tree_json_round_trip_through_a_built_network(base: str) -> None:
    arch = {
        "input_shape": [1, 8, 8],
        "num_classes": 3,
        "base": base,
        "stem": 8,
        "widths": [8, 10],
        "growth": 6,
        "dense_layers": [2, 1],
        "tree": GROWN,
    }
    text = json.dumps(arch["tree"])
    net = N.build_network(arch)
    assert N.network_tree(net) == json.loads(text) == GROWN
    assert all(cell.to_json() == GROWN for cell in N.cells(net))
    assert T.canonical(N.build_network({**arch, "tree": json.loads(text)}).features[-1].cell.to_json()) == T.canonical(
        GROWN
    )
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"split": None, "merge": "add", "branches": [{"op": "sep3x3", "child": None}]}, "add node"),
        ({"split": None, "merge": None, "branches": [{"op": "conv9x9", "child": None}]}, "unknown primitive"),
        ({"split": None, "merge": None, "branches": []}, "non-empty"),
        ({"merge": None, "branches": [{"op": "sep3x3", "child": None}]}, "exactly the keys"),
    ],
)
def test_malformed_trees_are_refused(bad: dict, match: str) -> None:
    with pytest.raises(T.TreeError, match=match):
        T.validate(bad)


def test_depth_limit_and_channel_checks() -> None:
    deep = T.apply_all(GROWN, [{"type": "insert_node", "path": [2, 1], "branch": 0}])
    assert T.depth(deep) == 4
    with pytest.raises(T.TreeError, match="deeper"):
        T.validate(deep, max_depth=3)
    # an identity edge cannot change the width (a dense cell maps C to the growth rate)
    with pytest.raises(T.TreeError, match="cannot map"):
        T.validate(T.leaf("identity"), 8, 4)


def test_transformations_refuse_what_does_not_apply() -> None:
    with pytest.raises(T.TreeError, match="leaf"):
        T.apply(GROWN, {"type": "set_merge", "path": [], "merge": "add", "branches": 2})
    with pytest.raises(T.TreeError, match="identity"):
        T.apply(GROWN, {"type": "replace_identity", "path": [], "branch": 0, "op": "conv1x1"})
    with pytest.raises(T.TreeError, match="group"):
        T.apply(T.leaf("gconv3x3"), {"type": "set_merge", "path": [], "merge": "concat", "branches": 2})


def test_svg_drawing_names_every_edge() -> None:
    svg = tree_svg(GROWN)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count(">sep3x3<") == 3 and ">avgpool3x3<" in svg and ">conv1x1<" in svg and svg.count(">identity<") == 1


def test_svg_merges_lie_below_every_edge_and_nested_merges_above_their_parent() -> None:
    import re

    nested = {
        "split": "copy",
        "merge": "add",
        "branches": [
            {"op": "sep3x3", "child": None},
            {
                "op": "sep3x3",
                "child": {
                    "split": "copy",
                    "merge": "add",
                    "branches": [
                        {
                            "op": "sep5x5",
                            "child": {
                                "split": "copy",
                                "merge": "concat",
                                "branches": [{"op": "maxpool3x3", "child": None}, {"op": "sep5x5", "child": None}],
                            },
                        },
                        {"op": "identity", "child": None},
                    ],
                },
            },
        ],
    }
    svg = tree_svg(nested)
    box_bottoms = [float(y) + 26 for y in re.findall(r'<rect x="[^"]+" y="([^"]+)" width="96"', svg)]
    merges = [float(y) for y in re.findall(r'<circle cx="[^"]+" cy="([^"]+)"', svg)]
    assert len(box_bottoms) == 6 and len(merges) == 3
    assert min(merges) - 11 > max(box_bottoms), "a merge circle overlaps an edge box"
    assert merges == sorted(set(merges))  # drawn innermost first: each merge above the one it feeds
