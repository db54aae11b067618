"""Golden cases: NQL in, exact DuckDB SQL out, then run on DuckDB over generated data.

Set UPDATE_GOLDEN=1 to rewrite the expected `kind`, `columns` and `sql` from the compiler.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from shared.nql import StaticCatalog, compile_nql

from .golden import load_cases, save_cases

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CASES = load_cases()


@pytest.fixture(scope="module", autouse=True)
def _rewrite_golden_file() -> Iterator[None]:
    yield
    if UPDATE:
        save_cases(CASES)


def test_corpus_is_large_and_names_are_unique() -> None:
    names = [case["name"] for case in CASES]
    assert len(names) >= 40
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_golden_case(case: dict[str, Any], nql_catalog: StaticCatalog, bound_db: duckdb.DuckDBPyConnection) -> None:
    compiled = compile_nql(case["nql"], nql_catalog)
    columns = [[c.name, c.duckdb_type] for c in compiled.output_columns]
    if UPDATE:
        case.update(kind=str(compiled.kind), columns=columns, sql=compiled.select_sql)
    assert compiled.select_sql == case["sql"]
    assert str(compiled.kind) == case["kind"]
    assert columns == case["columns"]

    # It runs on the worker's binding (ds_N views over Parquet) with the promised columns.
    # (DESCRIBE may fold an alias's case to the column's; the result itself keeps it.)
    described = bound_db.execute(f"DESCRIBE {compiled.select_sql}").fetchall()
    assert [[row[0].lower(), row[1]] for row in described] == [[n.lower(), t] for n, t in columns]
    cursor = bound_db.execute(compiled.select_sql)
    cursor.fetchall()
    assert [d[0] for d in cursor.description] == [name for name, _ in columns]
