"""A TD query as NQL. `db` is the namespace (`company_data` today): unqualified table names
resolve in it (an AST rewrite). A bare SELECT becomes an interactive query: a
`CREATE MATERIALIZED VIEW` of its own, tagged `interactive`, into a dataset named after the
job; CREATE MATERIALIZED VIEW and EXPLAIN run as they are."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlglot import exp

from shared.errors import NotFound
from shared.nql.dialect import NQL, Explain, MaterializedView
from shared.nql.syntax import parse_statement
from shared.store.td import INTERACTIVE_TAG, RESULT_DATASET_PREFIX

NAMESPACE = "company_data"


class DatabaseNotFound(NotFound):
    """TD's database: only our one namespace exists."""


@dataclass(frozen=True)
class TdStatement:
    nql: str
    interactive: bool


def result_dataset_name(job_id: uuid.UUID) -> str:
    return f"{RESULT_DATASET_PREFIX}{job_id.hex}"


def _qualify(tree: exp.Expr) -> bool:
    """Put unqualified tables (not CTE names) in the namespace; whether anything changed."""
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    changed = False
    for table in tree.find_all(exp.Table):
        if not table.args.get("db") and table.name and table.name not in ctes:
            table.set("db", exp.to_identifier(NAMESPACE))
            changed = True
    return changed


def to_nql(database: str, query: str, job_id: uuid.UUID) -> TdStatement:
    if database != NAMESPACE:
        raise DatabaseNotFound(f"Database {database!r} not found: the namespace is {NAMESPACE!r}")
    tree = parse_statement(query)  # NQLSyntaxError (400) for what is not NQL
    changed = _qualify(tree)
    if isinstance(tree, MaterializedView | Explain):
        return TdStatement(tree.sql(dialect=NQL) if changed else query, interactive=False)
    select = tree.sql(dialect=NQL, comments=False)
    name = result_dataset_name(job_id)
    return TdStatement(
        f'CREATE MATERIALIZED VIEW "{name}" TAGS=(\'{INTERACTIVE_TAG}\') AS {select}',
        interactive=True)
