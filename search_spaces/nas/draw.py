"""An SVG drawing of a tree cell: input at the top, one box per edge, one circle per merge, output at the bottom.

The layout mirrors the tree: edges of depth ``d`` sit on row ``d`` below the input, the merge of a node of
depth ``d`` on row ``2·H + 1 − d`` (``H`` the tree's height), so every merge lies below every edge box and a
nested merge above the merge it feeds. Plain string building (no plotting library), so the job page can
show the file as it is.
"""

from __future__ import annotations

from html import escape

from search_spaces.kit import tree_cells as T

COL, ROW, BOX_W, BOX_H = 110, 64, 96, 26
_COLOURS = {
    "identity": "#eeeeee",
    "conv1x1": "#cfe2ff",
    "sep3x3": "#d1e7dd",
    "sep5x5": "#a3cfbb",
    "sep7x7": "#75b798",
    "maxpool3x3": "#f8d7da",
    "avgpool3x3": "#fde2c8",
    "gconv3x3": "#e2d9f3",
}


def _width(node: T.Tree | None) -> int:
    """Columns a subtree needs: one per branch that ends without a child."""
    if node is None:
        return 1
    return sum(_width(b["child"]) for b in node["branches"])


def _height(node: T.Tree | None) -> int:
    if node is None:
        return 0
    return 1 + max(_height(b["child"]) for b in node["branches"])


def tree_svg(tree: T.Tree, title: str = "") -> str:
    """The SVG document of ``tree`` (see the module docstring)."""
    cols, levels = _width(tree), _height(tree)
    width = max(cols * COL + 40, 260)
    height = (2 * levels + 1) * ROW + 60
    parts: list[str] = []
    top, bottom = (width / 2, 30.0), (width / 2, 30.0 + (2 * levels + 1) * ROW)
    x0 = (width - cols * COL) / 2
    _draw(tree, x0, top, 1, bottom, levels, parts)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">'
    )
    label = f"<title>{escape(title or T.describe(tree))}</title>"
    ends = [_terminal(top, "input"), _terminal(bottom, "output")]
    return "\n".join([head, label, *parts, *ends, "</svg>"]) + "\n"


def _terminal(at: tuple[float, float], text: str) -> str:
    x, y = at
    return (
        f'<rect x="{x - 30:.1f}" y="{y - 12:.1f}" width="60" height="24" rx="12" fill="#333"/>'
        f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" fill="#fff">{text}</text>'
    )


def _draw(
    node: T.Tree,
    x0: float,
    source: tuple[float, float],
    level: int,
    sink: tuple[float, float],
    levels: int,
    parts: list[str],
) -> None:
    """Draw ``node``'s branches from ``source`` to its merge point, which then feeds ``sink``."""
    y_merge = 30.0 + (2 * levels + 1 - level) * ROW if node["merge"] else sink[1]
    merge_at = (x0 + _width(node) * COL / 2, y_merge)
    x = x0
    for b in node["branches"]:
        span = _width(b["child"]) * COL
        cx = x + span / 2
        y_box = 30.0 + level * ROW
        parts.append(_line(source, (cx, y_box - BOX_H / 2)))
        colour = _COLOURS.get(b["op"], "#fff")
        parts.append(
            f'<rect x="{cx - BOX_W / 2:.1f}" y="{y_box - BOX_H / 2:.1f}" width="{BOX_W}" height="{BOX_H}" '
            f'rx="4" fill="{colour}" stroke="#555"/>'
            f'<text x="{cx:.1f}" y="{y_box + 4:.1f}" text-anchor="middle">{escape(b["op"])}</text>'
        )
        if b["child"] is not None:
            _draw(b["child"], x, (cx, y_box + BOX_H / 2), level + 1, merge_at, levels, parts)
        else:
            parts.append(_line((cx, y_box + BOX_H / 2), merge_at))
        x += span
    if node["merge"]:
        symbol = "+" if node["merge"] == "add" else "C"
        parts.append(
            f'<circle cx="{merge_at[0]:.1f}" cy="{merge_at[1]:.1f}" r="11" fill="#fff" stroke="#333"/>'
            f'<text x="{merge_at[0]:.1f}" y="{merge_at[1] + 4:.1f}" text-anchor="middle">{symbol}</text>'
        )
        parts.append(_line((merge_at[0], merge_at[1] + 11), sink))


def _line(a: tuple[float, float], b: tuple[float, float]) -> str:
    return f'<line x1="{a[0]:.1f}" y1="{a[1]:.1f}" x2="{b[0]:.1f}" y2="{b[1]:.1f}" stroke="#555"/>'
