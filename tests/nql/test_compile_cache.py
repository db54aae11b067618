"""Compiles are memoized per process; the cache must never outlive what a compile depends on:
the catalog's answers (access, dataset ids, schemas) are asked for on every compile."""

from __future__ import annotations

import dataclasses

import pytest

from shared.errors import ColumnNotFound, DatasetNotFound
from shared.nql import ResolvedDataset, StaticCatalog, clear_compile_cache, compile_nql, compiler
from shared.nql.memo import LruMemo

from .datasets import USERS

NQL = 'CREATE MATERIALIZED VIEW "plans" AS SELECT "user_id", "plan", "age" FROM company_data.users'


def _users(dataset_id: int = USERS.dataset_id, **column_types: str) -> ResolvedDataset:
    columns = tuple((name, column_types.get(name, type_)) for name, type_ in USERS.columns)
    return dataclasses.replace(USERS, dataset_id=dataset_id, relation=f"ds_{dataset_id}", columns=columns)


def test_a_repeated_compile_equals_a_fresh_one() -> None:
    catalog = StaticCatalog([USERS])
    first = compile_nql(NQL, catalog)
    again = compile_nql(NQL, catalog)
    clear_compile_cache()
    fresh = compile_nql(NQL, catalog)
    assert again == first == fresh


def test_a_schema_change_is_seen_by_the_next_compile() -> None:
    before = compile_nql(NQL, StaticCatalog([_users()]))
    after = compile_nql(NQL, StaticCatalog([_users(age="VARCHAR")]))
    assert dict((c.name, c.duckdb_type) for c in before.output_columns)["age"] == "INTEGER"
    assert dict((c.name, c.duckdb_type) for c in after.output_columns)["age"] == "VARCHAR"


def test_the_same_name_in_another_company_reads_that_companys_dataset() -> None:
    ours = compile_nql(NQL, StaticCatalog([_users()]))
    theirs = compile_nql(NQL, StaticCatalog([_users(dataset_id=99)]))
    assert [d.dataset_id for d in ours.datasets] == [USERS.dataset_id]
    assert [d.dataset_id for d in theirs.datasets] == [99]
    assert '"ds_99"' in theirs.select_sql and f'"ds_{USERS.dataset_id}"' not in theirs.select_sql


def test_access_is_checked_on_every_compile() -> None:
    compile_nql(NQL, StaticCatalog([USERS]))
    with pytest.raises(DatasetNotFound):
        compile_nql(NQL, StaticCatalog([]))


def test_an_error_is_not_remembered() -> None:
    nql = 'SELECT "user_id", "score" FROM company_data.users'
    with pytest.raises(ColumnNotFound):
        compile_nql(nql, StaticCatalog([USERS]))
    with_score = dataclasses.replace(USERS, columns=(*USERS.columns, ("score", "DOUBLE")))
    compiled = compile_nql(nql, StaticCatalog([with_score]))
    assert [c.name for c in compiled.output_columns] == ["user_id", "score"]


def test_the_memo_keeps_the_most_recently_used_entries() -> None:
    memo: LruMemo[int] = LruMemo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # "b" is now the least recently used
    memo.put("c", 3)
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (1, None, 3)
    assert len(memo) == 2


def test_long_statements_are_compiled_but_not_kept() -> None:
    clear_compile_cache()
    padding = " " * compiler.MEMO_MAX_CHARS
    compiled = compile_nql(f'SELECT "user_id"{padding} FROM company_data.users', StaticCatalog([USERS]))
    assert [c.name for c in compiled.output_columns] == ["user_id"]
    assert len(compiler._compiled) == 0 and len(compiler._statements) == 0
    compile_nql(NQL, StaticCatalog([USERS]))
    assert len(compiler._compiled) == 1


QUERY = 'SELECT "user_id", "plan" FROM company_data.users'


def test_a_view_under_a_new_name_reuses_the_query_compile() -> None:
    clear_compile_cache()
    catalog = StaticCatalog([USERS])
    first = compile_nql(f'CREATE MATERIALIZED VIEW "a" AS {QUERY}', catalog)
    renamed = compile_nql(f"CREATE MATERIALIZED VIEW \"b\" TAGS = ('t') AS {QUERY} BUDGET 5 USD", catalog)
    forecast = compile_nql(f"EXPLAIN {QUERY};", catalog)
    # One compile per kind of statement, whatever the view is called or carries.
    assert len(compiler._compiled) == 2
    assert renamed.select_sql == first.select_sql == forecast.select_sql
    assert (first.view and first.view.name, renamed.view and renamed.view.name) == ("a", "b")
    assert renamed.view is not None and renamed.view.tags == ("t",) and renamed.view.budget is not None
    assert forecast.kind.value == "nql-forecast" and forecast.view is None


def test_view_checks_still_run_when_the_query_compile_is_reused() -> None:
    catalog = StaticCatalog([USERS])
    compile_nql(f'CREATE MATERIALIZED VIEW "a" AS {QUERY}', catalog)
    with pytest.raises(ColumnNotFound, match="PARTITIONED_BY"):
        compile_nql(f'CREATE MATERIALIZED VIEW "a" PARTITIONED_BY "age" DAY AS {QUERY}', catalog)


def test_another_query_text_is_another_compile() -> None:
    clear_compile_cache()
    catalog = StaticCatalog([USERS])
    compile_nql(f'CREATE MATERIALIZED VIEW "a" AS {QUERY}', catalog)
    other = compile_nql(f'CREATE MATERIALIZED VIEW "a" AS {QUERY} WHERE "plan" = \'x\'', catalog)
    assert len(compiler._compiled) == 2 and "WHERE" in other.select_sql
