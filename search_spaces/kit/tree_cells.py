"""The tree-structured cell as JSON, and the path-level transformations on it (no torch here).

A *node* is ``{"split": s, "merge": m, "branches": [{"op": primitive, "child": node | null}, ...]}``, as in the
reference code's ``TreeNode`` (han-cai/PathLevel-EAS): each branch is an edge carrying a primitive, optionally
followed by a child node. ``merge`` is ``"add"`` (the branches' outputs averaged, i.e. each scaled by 1/N and
summed), ``"concat"`` (concatenated along channels) or ``null`` (a single branch); ``split`` says how the input
reaches the branches: ``"copy"`` (every branch sees all channels), ``"split"`` (each sees its share, used by
split-and-concat of channel-wise edges: identity and pooling) or ``null``. A *leaf node* has ``merge`` null, one
branch and no child. A node maps ``c_in`` to ``c_out`` channels; a branch's edge maps its share of the input to
its share of the output (:func:`branch_channels`) and its child keeps that width.

The transformations (paper §3, reference ``TreeNode.set_merge_type / insert_node / replace_identity_edge``):

* ``set_merge`` with ``add`` and N = 2, 3: *replicate-and-add* of a leaf node's edge;
* ``set_merge`` with ``concat`` and N = 2: *split-and-concat*, each branch holding its share of the filters;
* ``insert_node``: a new leaf node with an identity edge between a branch's edge and its child;
* ``replace_identity``: *identity → layer*, an identity edge becomes a primitive initialised as identity.

Ops are plain dicts ``{"type", "path", ...}`` where ``path`` lists branch indices from the root to the node the
op applies to, so the same list transforms the JSON here and a built network in :mod:`search_spaces.nas.transforms`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

PRIMITIVES = ("identity", "conv1x1", "sep3x3", "sep5x5", "sep7x7", "maxpool3x3", "avgpool3x3", "gconv3x3")
CHANNELWISE = ("identity", "maxpool3x3", "avgpool3x3")  # no mixing of channels: split-and-concat splits input
LAYERS = ("conv1x1", "sep3x3", "sep5x5", "sep7x7", "gconv3x3")  # have weights and can start a cell
# The merge-scheme actor's choices (paper §4.2): leave the leaf, replicate-and-add 2 or 3, split-and-concat 2.
MERGE_CHOICES = (("none", 1), ("add", 2), ("add", 3), ("concat", 2))
NODE_TYPES = ("leaf", "add-copy", "concat-split", "concat-copy")
MAX_BRANCHES = 3

Tree = dict[str, Any]
Op = dict[str, Any]


class TreeError(ValueError):
    """A cell tree or transformation that is not valid."""


def leaf(op: str) -> Tree:
    """A leaf node holding one edge ``op`` (the start cell of a search)."""
    return {"split": None, "merge": None, "branches": [{"op": op, "child": None}]}


def is_leaf(node: Tree) -> bool:
    return node["merge"] is None and len(node["branches"]) == 1 and node["branches"][0]["child"] is None


def node_type(node: Tree | None) -> str:
    """One of :data:`NODE_TYPES` (``None``, no child, counts as a leaf) — the encoder's node token."""
    if node is None or node["merge"] is None:
        return "leaf"
    return f"{node['merge']}-{node['split']}"


def depth(node: Tree | None) -> int:
    """Levels of nodes: a leaf node alone has depth 1."""
    if node is None:
        return 0
    return 1 + max((depth(b["child"]) for b in node["branches"]), default=0)


def split_list(channels: int, parts: int) -> list[int]:
    """Channels shared out as evenly as possible, the first parts one larger (reference ``get_split_list``)."""
    sizes = [channels // parts] * parts
    for i in range(channels % parts):
        sizes[i] += 1
    return sizes


def branch_channels(node: Tree, c_in: int, c_out: int) -> list[tuple[int, int]]:
    """``(in, out)`` channels of each branch's edge of ``node`` mapping ``c_in`` to ``c_out`` channels."""
    n = len(node["branches"])
    ins = split_list(c_in, n) if node["split"] == "split" else [c_in] * n
    outs = split_list(c_out, n) if node["merge"] == "concat" else [c_out] * n
    return list(zip(ins, outs, strict=True))


def validate(node: Any, c_in: int | None = None, c_out: int | None = None, *, max_depth: int = 3) -> None:
    """Raise :class:`TreeError` unless ``node`` is a well-formed cell (channel-checked when widths are given)."""
    if depth_checked(node) > max_depth:
        raise TreeError(f"the cell is deeper than {max_depth} levels")
    _validate_node(node, c_in, c_out)


def depth_checked(node: Any) -> int:
    if not isinstance(node, dict) or set(node) != {"split", "merge", "branches"}:
        raise TreeError("a node is an object with exactly the keys split, merge, branches")
    branches = node["branches"]
    if not isinstance(branches, list) or not branches:
        raise TreeError("a node needs a non-empty list of branches")
    deepest = 0
    for b in branches:
        if not isinstance(b, dict) or set(b) != {"op", "child"}:
            raise TreeError("a branch is an object with exactly the keys op, child")
        if b["child"] is not None:
            deepest = max(deepest, depth_checked(b["child"]))
    return 1 + deepest


def _validate_node(node: Tree, c_in: int | None, c_out: int | None) -> None:
    merge, split, n = node["merge"], node["split"], len(node["branches"])
    if merge is None and (n != 1 or split is not None):
        raise TreeError("a node without a merge scheme has one branch and no split scheme")
    if merge == "add" and (split != "copy" or not 2 <= n <= MAX_BRANCHES):
        raise TreeError(f"an add node copies its input to 2..{MAX_BRANCHES} branches")
    if merge == "concat" and (split not in ("copy", "split") or not 2 <= n <= MAX_BRANCHES):
        raise TreeError(f"a concat node copies or splits its input to 2..{MAX_BRANCHES} branches")
    if merge not in (None, "add", "concat"):
        raise TreeError(f"unknown merge scheme {merge!r}")
    shares = branch_channels(node, c_in, c_out) if c_in and c_out else [(None, None)] * n
    for b, (i, o) in zip(node["branches"], shares, strict=True):
        if b["op"] not in PRIMITIVES:
            raise TreeError(f"unknown primitive {b['op']!r}; choose one of {', '.join(PRIMITIVES)}")
        if i is not None and o is not None and (min(i, o) < 1 or (b["op"] in CHANNELWISE and i != o)):
            raise TreeError(f"edge {b['op']} cannot map {i} to {o} channels")
        if b["child"] is not None:
            _validate_node(b["child"], o, o)


def count_edges(node: Tree | None) -> int:
    """Edges of the cell, children included."""
    if node is None:
        return 0
    return sum(1 + count_edges(b["child"]) for b in node["branches"])


def edge_widths(node: Tree, c_in: int, c_out: int) -> list[list[int]]:
    """``[in, out]`` channels of every edge of ``node`` mapping ``c_in`` to ``c_out``, depth-first (an edge,
    then its child's edges, then the next branch): the widths a freshly built cell has."""
    pairs: list[list[int]] = []
    for b, (i, o) in zip(node["branches"], branch_channels(node, c_in, c_out), strict=True):
        pairs.append([i, o])
        if b["child"] is not None:
            pairs.extend(edge_widths(b["child"], o, o))
    return pairs


def check_widths(node: Tree, c_in: int, pairs: Any) -> int:
    """The output width of ``node`` fed ``c_in`` channels when its edges have the explicit ``[in, out]`` widths
    taken in depth-first order from the iterator ``pairs`` (a channel-pruned cell); raises :class:`TreeError`
    unless they fit: a copy split feeds every edge all ``c_in`` channels, a split shares them out, an add merge
    needs equal branch outputs, a concat sums them, a channel-wise edge keeps its width, a child node takes
    its edge's output."""
    ins, outs = [], []
    for b in node["branches"]:
        pair = next(pairs, None)
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in pair)
        ):
            raise TreeError("each edge width is a pair [in, out] of integers in 1..4096, one per edge")
        i, o = pair
        if b["op"] in CHANNELWISE and i != o:
            raise TreeError(f"edge {b['op']} cannot map {i} to {o} channels")
        ins.append(i)
        outs.append(check_widths(b["child"], o, pairs) if b["child"] is not None else o)
    if (sum(ins) if node["split"] == "split" else max(ins)) != c_in or (node["split"] != "split" and min(ins) != c_in):
        raise TreeError(f"the edges' inputs {ins} do not fit the node's {c_in} input channels")
    if node["merge"] == "concat":
        return sum(outs)
    if len(set(outs)) != 1:
        raise TreeError(f"an add node needs equal branch outputs; got {outs}")
    return outs[0]


def get_node(tree: Tree, path: list[int] | tuple[int, ...]) -> Tree:
    """The node reached from the root by following branch indices ``path`` (each must have a child)."""
    node = tree
    for i in path:
        child = node["branches"][i]["child"]
        if child is None:
            raise TreeError(f"branch path {list(path)} ends before a node")
        node = child
    return node


def canonical(tree: Tree) -> str:
    """A compact, canonical string of the cell (identifies equal cells)."""
    return json.dumps(tree, sort_keys=True, separators=(",", ":"))


def describe(node: Tree | None) -> str:
    """A short human-readable form, e.g. ``add(sep3x3, sep3x3>concat(identity, avgpool3x3))``."""
    if node is None:
        return ""
    parts = [b["op"] + (f">{describe(b['child'])}" if b["child"] is not None else "") for b in node["branches"]]
    if node["merge"] is None:
        return parts[0]
    return f"{node['merge']}({', '.join(parts)})"


# --- the transformations on JSON ----------------------------------------------------------------------


def concat_split_type(op: str) -> str:
    """How split-and-concat feeds the branches: channel-wise edges split the input, layers copy it."""
    return "split" if op in CHANNELWISE else "copy"


def apply(tree: Tree, op: Op) -> Tree:
    """A new tree with transformation ``op`` applied (see the module docstring); ``tree`` is not changed."""
    out = copy.deepcopy(tree)
    node = get_node(out, op["path"])
    kind = op["type"]
    if kind == "set_merge":
        if not is_leaf(node):
            raise TreeError("only a leaf node gets a merge scheme")
        edge = node["branches"][0]["op"]
        n, merge = int(op["branches"]), op["merge"]
        if merge == "concat" and edge == "gconv3x3":
            raise TreeError("split-and-concat of a group convolution is not supported")
        node["merge"] = merge
        node["split"] = "copy" if merge == "add" else concat_split_type(edge)
        node["branches"] = [{"op": edge, "child": None} for _ in range(n)]
    elif kind == "insert_node":
        branch = node["branches"][op["branch"]]
        inserted = leaf("identity")
        inserted["branches"][0]["child"] = branch["child"]
        branch["child"] = inserted
    elif kind == "replace_identity":
        branch = node["branches"][op["branch"]]
        if branch["op"] != "identity":
            raise TreeError("only an identity edge is replaced by a layer")
        if op["op"] not in PRIMITIVES:
            raise TreeError(f"unknown primitive {op['op']!r}")
        branch["op"] = op["op"]
    else:
        raise TreeError(f"unknown transformation {kind!r}")
    return out


def apply_all(tree: Tree, ops: list[Op]) -> Tree:
    for op in ops:
        tree = apply(tree, op)
    return tree
