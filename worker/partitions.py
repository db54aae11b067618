"""PARTITIONED_BY: Hive-partitioned output, and partition pruning on reads.

Writing: the view's rows are copied with one generated column per `col DAY|MONTH|YEAR`
(`strftime` of the column: '2024-01-05', '2024-01', '2024'); DuckDB's `PARTITION_BY`
writes one folder per value and leaves the generated columns out of the files, so the
files hold exactly the view's columns. Each file is then placed under
`<dataset>/<col>_<transform>=<value>/...` (`shared.storage.partitioned_output_key`).

Reading: a dataset whose files sit under such folders, read exactly once by a query whose
WHERE (at the level that reads it) has conjuncts `<its alias>.<col> <op> <literal>`
(=, <, <=, >, >=, BETWEEN, IN), loses the files whose period cannot hold a matching value
before anything is fetched. Conservative: anything not understood keeps the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp

from shared.storage import partition_of_key
from worker.inputs import Input
from worker.sandbox import sql_identifier, sql_string

FORMATS = {"DAY": "%Y-%m-%d", "MONTH": "%Y-%m", "YEAR": "%Y"}
GENERATED = "nql_part_{}"


def partition_folder(column: str, transform: str) -> str:
    return f"{column}_{transform.lower()}"


def write_partitioned(con: duckdb.DuckDBPyConnection, select_sql: str, out: Path,
                      partitions: Sequence[tuple[str, str]], columns: Sequence[tuple[str, str]],
                      *, file_bytes: int) -> tuple[int, list[tuple[Path, tuple[tuple[str, str], ...]]]]:
    """COPY the rows Hive-partitioned into `out`; returns (rows, [(file, partition)])."""
    names = ", ".join(sql_identifier(n) for n, _ in columns)
    generated = ", ".join(
        f"strftime({sql_identifier(col)}, '{FORMATS[t]}') AS {GENERATED.format(i)}"
        for i, (col, t) in enumerate(partitions))
    by = ", ".join(GENERATED.format(i) for i in range(len(partitions)))
    row = con.execute(
        f"COPY (SELECT {names}, {generated} FROM ({select_sql})) TO {sql_string(out)} "
        f"(FORMAT parquet, PARTITION_BY ({by}), FILE_SIZE_BYTES {int(file_bytes)}, "
        "FILENAME_PATTERN 'part-{i}')").fetchone()
    files = []
    for path in sorted(out.rglob("*.parquet")):
        folders = dict(part.split("=", 1) for part in path.relative_to(out).parts[:-1])
        partition = tuple((partition_folder(col, t), folders.get(GENERATED.format(i), "NULL"))
                          for i, (col, t) in enumerate(partitions))
        files.append((path, partition))
    return (int(row[0]) if row else 0), files


# -- pruning -------------------------------------------------------------------------------

def _period(value: str, transform: str) -> tuple[datetime, datetime] | None:
    """[start, end) of a partition value."""
    try:
        if transform == "day":
            start = datetime.fromisoformat(value)
            return start, start + timedelta(days=1)
        if transform == "month":
            year, month = (int(p) for p in value.split("-"))
            return datetime(year, month, 1), datetime(year + month // 12, month % 12 + 1, 1)
        if transform == "year":
            return datetime(int(value), 1, 1), datetime(int(value) + 1, 1, 1)
    except ValueError:
        return None
    return None


def _literal(node: exp.Expr) -> datetime | None:
    while isinstance(node, exp.Cast | exp.TryCast | exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal) and node.is_string:
        try:
            parsed = datetime.fromisoformat(node.this)
        except ValueError:
            return None
        return parsed
    return None


def _may_match(op: type[exp.Expr], value: datetime, start: datetime, end: datetime) -> bool:
    if op is exp.EQ:
        return start <= value < end
    if op in (exp.GT, exp.GTE):
        return end > value
    if op is exp.LT:
        return start < value
    if op is exp.LTE:
        return start <= value
    return True


def _conjuncts(where: exp.Expr | None) -> list[exp.Expr]:
    if where is None:
        return []
    node = where.this if isinstance(where, exp.Where) else where
    return list(node.flatten()) if isinstance(node, exp.And) else [node]


_FLIP: dict[type[exp.Expr], type[exp.Expr]] = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT,
                                                exp.LTE: exp.GTE, exp.EQ: exp.EQ}


def _keep(conditions: list[tuple[str, exp.Expr]], partition: dict[str, str]) -> bool:
    for folder, condition in conditions:
        if folder not in partition:
            continue
        transform = folder.rsplit("_", 1)[1]
        period = _period(partition[folder], transform)
        if period is None:
            continue
        start, end = period
        if isinstance(condition, exp.Between):
            low, high = _literal(condition.args["low"]), _literal(condition.args["high"])
            if (low is not None and not _may_match(exp.GTE, low, start, end)) or \
                    (high is not None and not _may_match(exp.LTE, high, start, end)):
                return False
        elif isinstance(condition, exp.In):
            values = [_literal(v) for v in condition.expressions]
            if values and all(v is not None for v in values) and \
                    not any(_may_match(exp.EQ, v, start, end) for v in values if v is not None):
                return False
        else:
            value = _literal(condition.expression) if isinstance(condition.this, exp.Column) \
                else _literal(condition.this)
            op = type(condition) if isinstance(condition.this, exp.Column) else _FLIP[type(condition)]
            if value is not None and not _may_match(op, value, start, end):
                return False
    return True


def _conditions(select_sql: str, relation: str, folders: set[str]) -> list[tuple[str, exp.Expr]]:
    tree = sqlglot.parse_one(select_sql, dialect="duckdb")
    tables = [t for t in tree.find_all(exp.Table) if t.name == relation]
    if len(tables) != 1:
        return []
    table = tables[0]
    select = table.parent_select
    if not isinstance(select, exp.Select):
        return []
    alias = table.alias_or_name
    found = []
    for conjunct in _conjuncts(select.args.get("where")):
        if isinstance(conjunct, exp.Between | exp.In):
            column = conjunct.this
        elif isinstance(conjunct, tuple(_FLIP)):
            column = conjunct.this if isinstance(conjunct.this, exp.Column) else conjunct.expression
        else:
            continue
        if not isinstance(column, exp.Column) or column.table != alias:
            continue
        for folder in folders:
            if folder.rsplit("_", 1)[0] == column.name:
                found.append((folder, conjunct))
    return found


def prune(inputs: Sequence[Input], select_sql: str) -> tuple[Input, ...]:
    """Inputs without the partition files the query's filters rule out."""
    pruned = []
    for item in inputs:
        partitions = [partition_of_key(k) for k in item.keys]
        folders = {name for p in partitions for name in p}
        if not folders:
            pruned.append(item)
            continue
        conditions = _conditions(select_sql, item.relation, folders)
        if not conditions:
            pruned.append(item)
            continue
        keys = tuple(k for k, p in zip(item.keys, partitions, strict=True) if _keep(conditions, p))
        pruned.append(replace(item, keys=keys))
    return tuple(pruned)


