"""The view's MERGE against DuckDB's own `MERGE INTO` on the same rows: update, insert,
delete, conditional actions, NULL keys matched with IS NOT DISTINCT FROM, and duplicate
matches refused readably (nothing merged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared.nql import parse_nql
from worker.incremental import MergeConflict, bind_target, merge_into_target

COLUMNS = (("k", "VARCHAR"), ("n", "BIGINT"), ("note", "VARCHAR"))
VIEW = 'CREATE MATERIALIZED VIEW "m" AS SELECT k, n, note FROM company_data."1" {merge}'

UPSERT = ("MERGE ON target.k IS NOT DISTINCT FROM source.k "
          "WHEN MATCHED THEN UPDATE SET n = target.n + source.n, note = source.note "
          "WHEN NOT MATCHED THEN INSERT (k, n, note) VALUES (source.k, source.n, source.note)")
UPSERT_EQ = UPSERT.replace("IS NOT DISTINCT FROM", "=")
DELETE_OR_UPDATE = ("MERGE ON target.k IS NOT DISTINCT FROM source.k "
                    "WHEN MATCHED AND source.note = 'drop' THEN DELETE "
                    "WHEN MATCHED THEN UPDATE SET n = source.n "
                    "WHEN NOT MATCHED AND source.n > 0 THEN INSERT (k, n, note) VALUES (source.k, source.n, 'new')")
INSERT_ONLY = ("MERGE ON target.k = source.k "
               "WHEN NOT MATCHED THEN INSERT (k, n, note) VALUES (source.k, source.n * 10, source.note)")

TARGET = [("a", 1, "t"), ("b", 2, "t"), (None, 3, "t"), ("c", 4, "t")]
SOURCE = [("a", 10, "s"), ("b", 20, "drop"), (None, 30, "s"), ("d", 40, "s"), ("e", -1, "s")]


def _values(rows: list[tuple[Any, ...]]) -> str:
    def lit(v: Any) -> str:
        return "NULL" if v is None else str(v) if isinstance(v, int) else f"'{v}'"
    body = ", ".join("(" + ", ".join(lit(v) for v in row) + ")" for row in rows) or "(NULL, NULL, NULL)"
    return (f"SELECT k::VARCHAR AS k, n::BIGINT AS n, note::VARCHAR AS note "
            f"FROM (VALUES {body}) AS v(k, n, note){'' if rows else ' WHERE false'}")


def ours(merge: str, target: list[tuple[Any, ...]], source: list[tuple[Any, ...]], tmp: Path) -> list[Any]:
    view = parse_nql(VIEW.format(merge=merge)).view
    assert view is not None and view.merge is not None
    files = []
    if target:
        path = tmp / "target.parquet"
        duckdb.execute(f"COPY ({_values(target)}) TO '{path}' (FORMAT parquet)")
        files.append(("1/view-file.parquet", path))
    con = duckdb.connect()
    bind_target(con, COLUMNS)
    merged = merge_into_target(con, select_sql=_values(source), view=view, columns=COLUMNS, target_files=files)
    assert merged.carried == ()  # not partitioned: every view row is merged
    return sorted(con.execute(merged.select_sql).fetchall(), key=repr)


def duckdbs(merge_sql_body: str, target: list[tuple[Any, ...]], source: list[tuple[Any, ...]]) -> list[Any]:
    """DuckDB's own MERGE INTO, written by hand from the clause."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (k VARCHAR, n BIGINT, note VARCHAR)")
    if target:
        con.execute(f"INSERT INTO t {_values(target)}")
    con.execute(f"MERGE INTO t AS target USING ({_values(source)}) AS source {merge_sql_body}")
    return sorted(con.execute("SELECT k, n, note FROM t").fetchall(), key=repr)


@pytest.mark.parametrize("merge", [UPSERT, UPSERT_EQ, DELETE_OR_UPDATE, INSERT_ONLY],
                         ids=["upsert-null-safe", "upsert-equals", "delete-or-update", "insert-only"])
@pytest.mark.parametrize(("target", "source"), [(TARGET, SOURCE), ([], SOURCE), (TARGET, [])],
                         ids=["both", "empty-target", "empty-source"])
def test_merge_equals_duckdbs_merge_into(merge: str, target: list[Any], source: list[Any], tmp_path: Path) -> None:
    expected = duckdbs(merge.removeprefix("MERGE "), target, source)
    assert ours(merge, target, source, tmp_path) == expected


def test_null_keys_match_only_with_is_not_distinct_from(tmp_path: Path) -> None:
    null_safe = ours(UPSERT, TARGET, SOURCE, tmp_path)
    equals = ours(UPSERT_EQ, TARGET, SOURCE, tmp_path)
    assert (None, 33, "s") in null_safe and (None, 3, "t") not in null_safe
    assert (None, 3, "t") in equals and (None, 30, "s") in equals  # NULL = NULL never matches


def test_a_view_row_matched_by_two_query_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MergeConflict, match="row of the view \\(target\\) matches 2 rows of the query"):
        ours(UPSERT, TARGET, [("a", 1, "x"), ("a", 2, "y")], tmp_path)
    # Standard SQL calls this a cardinality violation; DuckDB 2.0.1's MERGE INTO does not
    # check it and silently keeps one of the two updates, which is why we check first.
    applied = duckdbs(UPSERT.removeprefix("MERGE "), TARGET, [("a", 1, "x"), ("a", 2, "y")])
    assert next(row for row in applied if row[0] == "a")[1] in (2, 3)


def test_a_query_row_matching_two_view_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MergeConflict, match="row of the query \\(source\\) matches 2 rows of the view"):
        ours(UPSERT, [("a", 1, "t"), ("a", 2, "t")], [("a", 5, "s")], tmp_path)


def test_insert_only_tolerates_duplicate_view_rows_that_nothing_matches(tmp_path: Path) -> None:
    rows = ours(INSERT_ONLY, [("a", 1, "t"), ("a", 2, "t")], [("b", 5, "s")], tmp_path)
    assert rows == sorted([("a", 1, "t"), ("a", 2, "t"), ("b", 50, "s")], key=repr)
