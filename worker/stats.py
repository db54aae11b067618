"""Per-column statistics of a snapshot, computed by DuckDB in one pass over its files.

Stored on the snapshot as `{column: {position, type, count, nulls, completeness,
approx_count_distinct, min, max, mean, standard_deviation}}` (Narrative's column-stats
names): `count` counts non-null values, `completeness` is their share of the rows,
`min`/`max` exist for orderable scalar types, `mean`/`standard_deviation` (sample) for
numeric ones. Values are JSON-ready in the results format (`shared.results.json_value`).
The statistics describe the whole snapshot (after an append: old and new files).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from shared.results import json_value
from worker.inputs import parquet_list
from worker.sandbox import sql_identifier

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")
_ORDERED = (*_NUMERIC, "VARCHAR", "DATE", "TIME", "TIMESTAMP", "BOOLEAN", "UUID", "INTERVAL")
_MAX_TEXT = 256  # min/max of long strings are cut: stats are a summary, not a copy


def _base(duckdb_type: str) -> str:
    upper = duckdb_type.strip().upper()
    if upper.endswith("]") or upper.startswith(("STRUCT", "MAP", "UNION")):
        return "NESTED"
    return upper.split("(")[0].strip()


def _is(duckdb_type: str, kinds: Sequence[str]) -> bool:
    base = _base(duckdb_type)
    return any(base == k or base.startswith(k + " ") for k in kinds)


def _aggregates(name: str, duckdb_type: str) -> list[tuple[str, str]]:
    col = sql_identifier(name)
    out = [("count", f"count({col})"), ("approx_count_distinct", f"approx_count_distinct({col})")]
    if _is(duckdb_type, _ORDERED):
        out += [("min", f"min({col})"), ("max", f"max({col})")]
    if _is(duckdb_type, _NUMERIC):
        out += [("mean", f"avg({col})::DOUBLE"), ("standard_deviation", f"stddev_samp({col})::DOUBLE")]
    return out


def _cut(value: Any) -> Any:
    return value[:_MAX_TEXT] if isinstance(value, str) else value


def compute_column_stats(con: duckdb.DuckDBPyConnection, files: Sequence[Path],
                         columns: Sequence[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    plan = [(name, type_, _aggregates(name, type_)) for name, type_ in columns]
    select = ["count(*)"] + [sql for _, _, aggs in plan for _, sql in aggs]
    if files:
        row = con.execute(
            f"SELECT {', '.join(select)} FROM read_parquet({parquet_list(files)}, "
            "hive_partitioning = false)").fetchone()
    else:
        row = None
    values = list(row) if row else [0] + [None] * (len(select) - 1)
    total = int(values[0] or 0)
    stats: dict[str, dict[str, Any]] = {}
    index = 1
    for position, (name, type_, aggs) in enumerate(plan):
        entry: dict[str, Any] = {"position": position, "type": type_, "min": None, "max": None,
                                 "mean": None, "standard_deviation": None}
        for key, _ in aggs:
            entry[key] = _cut(json_value(values[index]))
            index += 1
        count = int(entry.get("count") or 0)
        entry["count"] = count
        entry["nulls"] = total - count
        entry["completeness"] = (count / total) if total else None
        entry["approx_count_distinct"] = int(entry.get("approx_count_distinct") or 0)
        stats[name] = entry
    return stats
