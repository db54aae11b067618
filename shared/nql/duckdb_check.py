"""The second gate: DuckDB's own parser must agree that the generated SQL is a plain read.

sqlglot is lenient by design, so the SQL we generate is parsed again by DuckDB:
`extract_statements` must give exactly one SELECT, and the parse tree from
`json_serialize_sql` may only read allowed relations (or CTEs it defines, under non-reserved
names), may call no table function, and may call only allow-listed functions. Any doubt,
including DuckDB failing to parse what sqlglot produced, fails closed with ForbiddenConstruct.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from functools import cache
from typing import Any

import duckdb

from shared.errors import ForbiddenConstruct
from shared.nql.allowlist import ALLOWED_FUNCTIONS, is_reserved_name, sample_duckdb_sql
from shared.nql.sandbox import connection

# Table references a plain read may contain; anything else (TABLE_FUNCTION, PIVOT,
# EXPRESSION_LIST, SHOW_REF, COLUMN_DATA, ...) is refused.
_TABLE_REFS = frozenset({"BASE_TABLE", "JOIN", "SUBQUERY", "EMPTY"})
_QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "CTE_NODE"})
_REFUSED_TYPES = frozenset(
    {"TABLE_FUNCTION", "PIVOT", "EXPRESSION_LIST", "SHOW_REF", "COLUMN_DATA", "DELIM_GET",
     "RECURSIVE_CTE_NODE"}
)  # fmt: skip
# Syntax whose DuckDB parse is a function call that no sample call produces.
_SYNTAX_SAMPLES = (
    "SELECT INTERVAL 3 DAY, INTERVAL '3' HOUR, EXTRACT(MINUTE FROM x), {'k': 1}, [1, 2], "
    "x[1], x[1:2], x LIKE 'a', x ILIKE 'a', x NOT LIKE 'a', x || 'a', COUNT(*), "
    "x IS NOT DISTINCT FROM y, x -> 'a', x ->> 'a', x // 2, x % 2, -x, x ^ 2, x & 1, x | 1, "
    "x << 1, x >> 1, ~x, DATE '2020-01-01' + INTERVAL 1 DAY, TIMESTAMP '2020-01-01 00:00:00'"
)


def _refuse(message: str) -> ForbiddenConstruct:
    return ForbiddenConstruct(f"The generated SQL failed the DuckDB check: {message}")


def _serialize(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    payload = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    result: dict[str, Any] = json.loads(payload[0]) if payload else {"error": True}
    return result


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _function_names(tree: Any) -> Iterator[str]:
    for node in _walk(tree):
        if "function_name" in node and not node.get("is_operator"):
            yield str(node["function_name"]).lower()


@cache
def allowed_duckdb_functions() -> frozenset[str]:
    """`ALLOWED_FUNCTIONS` plus the DuckDB names sqlglot generates for them and for syntax."""
    names = set(ALLOWED_FUNCTIONS)
    con = connection()
    for sql in [*sample_duckdb_sql(), _SYNTAX_SAMPLES]:
        tree = _serialize(con, sql)
        if not tree.get("error"):
            names.update(_function_names(tree))
    return frozenset(names)


def _check_table_refs(tree: Any, allowed: set[str]) -> None:
    ctes: set[str] = set()
    for node in _walk(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map") or []:
                name = str(entry.get("key", ""))
                if is_reserved_name(name):
                    raise _refuse(f"CTE name {name!r} is reserved")
                ctes.add(name.lower())
    for node in _walk(tree):
        kind = node.get("type")
        if kind in _REFUSED_TYPES:
            raise _refuse(f"{kind} is not allowed")
        if kind == "BASE_TABLE":  # wherever it appears, not only under FROM
            _check_from(node, allowed | ctes)
        for item in node.get("select_list") or []:
            if isinstance(item, dict) and item.get("class") == "STAR":
                raise _refuse("SELECT * / COLUMNS(...) is not allowed")
        if "from_table" in node:
            if kind not in _QUERY_NODES:
                raise _refuse(f"unexpected query node {kind}")
            _check_from(node["from_table"], allowed | ctes)


def _check_from(ref: Any, allowed: set[str]) -> None:
    if not isinstance(ref, dict) or ref.get("type") not in _TABLE_REFS:
        kind = ref.get("type") if isinstance(ref, dict) else type(ref).__name__
        raise _refuse(f"table reference {kind} is not allowed")
    kind = ref["type"]
    if kind == "JOIN":
        _check_from(ref.get("left"), allowed)
        _check_from(ref.get("right"), allowed)
    elif kind == "BASE_TABLE":
        name = str(ref.get("table_name", ""))
        if ref.get("schema_name") or ref.get("catalog_name"):
            raise _refuse(f"qualified table {name!r} is not allowed")
        if name.lower() not in allowed:
            raise _refuse(f"table {name!r} is not an allowed relation")


def _check_functions(tree: Any) -> None:
    allowed = allowed_duckdb_functions()
    for node in _walk(tree):
        if "function_name" not in node:
            continue
        name = str(node["function_name"])
        if node.get("schema") or node.get("catalog"):
            raise _refuse(f"qualified function {name!r} is not allowed")
        if node.get("is_operator") and not any(c.isalnum() for c in name):
            continue  # + - || ~~ ... are DuckDB's operators
        if name.lower() not in allowed:
            raise _refuse(f"function {name!r} is not allowed")


def check_duckdb_sql(sql: str, allowed_relations: Collection[str]) -> None:
    """Raise ForbiddenConstruct unless DuckDB parses `sql` as one plain read of the relations."""
    con = connection()
    try:
        statements = con.extract_statements(sql)
        tree = _serialize(con, sql)
    except duckdb.Error as e:
        raise _refuse("DuckDB cannot parse it") from e
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        kinds = ", ".join(s.type.name for s in statements) or "nothing"
        raise _refuse(f"expected exactly one SELECT statement, found {kinds}")
    if tree.get("error") or len(tree.get("statements") or []) != 1:
        raise _refuse(str(tree.get("error_message") or "it is not exactly one SELECT"))
    _check_table_refs(tree, {r.lower() for r in allowed_relations})
    _check_functions(tree)
