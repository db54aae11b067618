"""NQL's own rules on top of SQL, each a small pass over the query tree.

- Explicit columns: `SELECT *`, `t.*`, `* EXCLUDE (...)` are rejected with a message saying
  NQL needs explicit columns. `COUNT(*)` is allowed: it counts rows and names no column, and
  so is `[NOT] EXISTS (SELECT * ...)`, whose select list is never read: it is rewritten to
  `EXISTS (SELECT 1 ...)` before any check, so no star reaches DuckDB.
- Output column names must be unique (case-insensitively, as DuckDB compares them): a
  duplicate is rejected naming it, rather than silently renamed, so results stay stable.
- NULLs sort as the highest value; that is the dialect's NULL ordering (`dialect.py`), and the
  generator writes it out explicitly.
- `LIMIT n ROWS` / `OFFSET m ROWS` mean plain `LIMIT n` / `OFFSET m`; `PERCENT`/`WITH TIES`
  are not supported.
"""

from __future__ import annotations

from sqlglot import exp

from shared.errors import NQLError, UnsupportedConstruct
from shared.nql.position import located

STAR_MESSAGE = "SELECT * is not allowed: NQL needs explicit columns; list the columns you want (COUNT(*) is fine)"


def _exists_select(node: exp.Exists) -> exp.Select | None:
    inner = node.this
    while isinstance(inner, exp.Subquery):
        inner = inner.this
    return inner if isinstance(inner, exp.Select) else None


def _is_star(projection: exp.Expr) -> bool:
    if isinstance(projection, exp.Column):
        return isinstance(projection.this, exp.Star)
    return isinstance(projection, exp.Star)


def rewrite_exists_star(query: exp.Expr) -> None:
    """`EXISTS (SELECT * ...)` -> `EXISTS (SELECT 1 ...)`: EXISTS only asks whether a row
    exists, so its select list names no output column (TPC-H Q4, Q21, Q22 are written so)."""
    for node in list(query.find_all(exp.Exists)):
        select = _exists_select(node)
        if select is not None and select.expressions and all(_is_star(p) for p in select.expressions):
            select.set("expressions", [exp.Literal.number(1)])


def check_explicit_columns(query: exp.Expr) -> None:
    for star in query.find_all(exp.Star):
        parent = star.parent
        if isinstance(parent, exp.Count) and parent.this is star:
            continue
        raise located(NQLError(STAR_MESSAGE, rule="explicit-columns"), parent or star)


def normalize_limits(query: exp.Expr) -> None:
    """Drop the noise word ROWS from LIMIT (DuckDB rejects `LIMIT n ROWS ONLY`)."""
    for options in list(query.find_all(exp.LimitOptions)):
        if options.args.get("percent") or options.args.get("with_ties"):
            raise located(UnsupportedConstruct("LIMIT ... PERCENT / WITH TIES is not supported in NQL"),
                          options.parent)
        options.pop()


def leftmost_select(query: exp.Expr) -> exp.Select | None:
    """The SELECT whose projections name a query's output (the left arm of set operations)."""
    node: exp.Expr | None = query
    while isinstance(node, (exp.SetOperation, exp.Subquery)):
        node = node.this
    return node if isinstance(node, exp.Select) else None


def output_names(query: exp.Expr) -> list[str]:
    """The output column names as written; unnamed expressions get sqlglot's `_col_<i>`."""
    select = leftmost_select(query)
    if select is None:
        return []
    names = []
    for i, projection in enumerate(select.expressions):
        name = projection.alias_or_name
        names.append(name if name and name != "*" else f"_col_{i}")
    return names


def check_unique_names(names: list[str], query: exp.Expr | None = None) -> None:
    """Raise on a duplicate output name (at the duplicate's position when `query` is given)."""
    seen: set[str] = set()
    select = leftmost_select(query) if query is not None else None
    for index, name in enumerate(names):
        if name.lower() in seen:
            at = select.expressions[index] if select is not None and index < len(select.expressions) else None
            raise located(NQLError(
                f"Duplicate output column {name!r}: give each output column a unique name with AS",
                rule="unique-output-columns",
                output_column=name,
            ), at)
        seen.add(name.lower())
