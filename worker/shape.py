"""How a query's row count responds to sampling one input relation.

    LINEAR    every output row comes from exactly one row of the sampled relation, and
              whether it does depends on that row alone (filters, projections, joins
              against other, unsampled relations, with the sampled one on the preserved
              side). Sampling rows with probability p then samples output rows the same
              way: count/p is unbiased and the sample's count is a hard lower bound.
    GROUPED   GROUP BY / DISTINCT (no HAVING, LIMIT, QUALIFY) over a LINEAR input: every
              group seen in the sample exists in the full result (a lower bound), and a
              group is seen with probability >= p (so groups <= E[count]/p).
    ONE_ROW   aggregates without GROUP BY or HAVING: exactly one row.
    OTHER     anything else (windows, HAVING, LIMIT, set operations, the sampled relation
              read twice...): a sample says nothing reliable, count it exactly.

Decided on the sqlglot tree of the compiled DuckDB SQL, conservatively: any doubt is OTHER.
"""

from __future__ import annotations

from enum import StrEnum

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError


class Shape(StrEnum):
    LINEAR = "linear"
    GROUPED = "grouped"
    ONE_ROW = "one_row"
    OTHER = "other"


def _own(node: exp.Expr) -> list[exp.Expr]:
    """The nodes of one SELECT's own clauses, not those of nested queries."""
    return list(node.walk(prune=lambda n: n is not node and isinstance(n, exp.Query | exp.Subquery)))


def _has(select: exp.Select, kind: type[exp.Expr] | tuple[type[exp.Expr], ...]) -> bool:
    return any(isinstance(n, kind) for e in select.expressions for n in _own(e))


def _row_wise(select: exp.Select) -> bool:
    if any(select.args.get(k) for k in ("group", "having", "qualify", "distinct", "limit", "offset")):
        return False
    return not _has(select, (exp.Window, exp.AggFunc))


def _table_refs(tree: exp.Expr, name: str) -> int:
    return sum(1 for t in tree.find_all(exp.Table) if t.name.lower() == name)


def _ctes(tree: exp.Expr) -> dict[str, exp.Expr]:
    return {cte.alias_or_name.lower(): cte.this for cte in tree.find_all(exp.CTE)}


def _reaches(select: exp.Select, relation: str, tree: exp.Expr, ctes: dict[str, exp.Expr]) -> bool:
    """The FROM of `select` leads, through row-wise queries read once, to `relation`."""
    for join in select.args.get("joins") or []:
        if join.side in ("RIGHT", "FULL"):
            return False  # unmatched rows of the other side would not be sampled
    source = select.args.get("from_")
    if source is None:
        return False
    this = source.this
    if isinstance(this, exp.Table):
        name = this.name.lower()
        if name == relation:
            return True
        body = ctes.get(name)
        if body is None or _table_refs(tree, name) != 1:
            return False
    elif isinstance(this, exp.Subquery):
        body = this.this
    else:
        return False
    return isinstance(body, exp.Select) and _row_wise(body) and _reaches(body, relation, tree, ctes)


def query_shape(select_sql: str, relation: str) -> Shape:
    try:
        tree = sqlglot.parse_one(select_sql, read="duckdb")
    except SqlglotError:
        return Shape.OTHER
    if not isinstance(tree, exp.Select):
        return Shape.OTHER  # set operations
    relation = relation.lower()
    if any(tree.args.get(k) for k in ("having", "qualify", "limit", "offset")) or _has(tree, exp.Window):
        return Shape.OTHER
    grouped = bool(tree.args.get("group") or tree.args.get("distinct"))
    if not grouped and _has(tree, exp.AggFunc):
        return Shape.ONE_ROW
    if _table_refs(tree, relation) != 1 or not _reaches(tree, relation, tree, _ctes(tree)):
        return Shape.OTHER
    return Shape.GROUPED if grouped else Shape.LINEAR
