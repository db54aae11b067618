"""Where a construct is in the statement: 1-based line and column for NQL errors.

sqlglot records token positions on identifiers only (our dialect adds function calls), so
a node's position is that of the first positioned node inside it (by text offset); a node
without any (`COUNT(*)`, a literal) has none and its error keeps line/column null.
"""

from __future__ import annotations

from typing import TypeVar

from sqlglot import exp

from shared.errors import NQLError

E = TypeVar("E", bound=NQLError)


def node_position(node: exp.Expr) -> tuple[int, int] | None:
    best: tuple[int, int, int] | None = None
    for child in node.walk():
        meta = child.meta
        if not isinstance(meta.get("start"), int) or not isinstance(meta.get("line"), int):
            continue
        column = int(meta["col"]) - (int(meta["end"]) - int(meta["start"]))
        candidate = (int(meta["start"]), int(meta["line"]), max(1, column))
        if best is None or candidate < best:
            best = candidate
    return (best[1], best[2]) if best else None


def located(error: E, node: exp.Expr | None) -> E:
    """`error` with the node's line and column, unless it already has a position."""
    if node is not None and error.line is None:
        position = node_position(node)
        if position is not None:
            error.line, error.column = position
    return error
