"""The published seed view compiles and returns exactly what the hand-written query returns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb

from shared.nql import StatementKind, StaticCatalog, compile_nql
from shared.sample_data import SEED_VIEW_NQL, hand_written_seed_query, write_seed_dataset

from .datasets import SEED


def test_seed_text_is_the_published_one() -> None:
    assert SEED_VIEW_NQL.startswith('CREATE MATERIALIZED VIEW "sampleNQL" as WITH OrderedData AS')
    assert '"company_data"."6402"' in SEED_VIEW_NQL
    assert '"mobile_id_unique_identifier"."value" IS NOT NULL \n), \n' in SEED_VIEW_NQL
    assert SEED_VIEW_NQL.endswith(" latitude,\n longitude\n")


def test_seed_compiles(nql_catalog: StaticCatalog) -> None:
    compiled = compile_nql(SEED_VIEW_NQL, nql_catalog)
    assert compiled.kind is StatementKind.MATERIALIZE_VIEW
    assert compiled.view is not None and compiled.view.name == "sampleNQL"
    assert compiled.datasets == (SEED,)
    assert [(c.name, c.duckdb_type) for c in compiled.output_columns] == [
        ("mobile_id", "VARCHAR"),
        ("day", "DATE"),
        ("hour", "INTEGER"),
        ("latitude", "DOUBLE"),
        ("longitude", "DOUBLE"),
    ]
    assert 'FROM "ds_6402" AS "ds_6402"' in compiled.select_sql
    assert "company_data" not in compiled.select_sql
    assert 'ORDER BY "ds_6402"."event_timestamp" ASC NULLS LAST' in compiled.select_sql


def test_seed_rows_match_the_hand_written_query(nql_catalog: StaticCatalog, tmp_path: Path) -> None:
    path = tmp_path / "seed.parquet"
    write_seed_dataset(path, 20_000, seed=3)
    con = duckdb.connect(":memory:")
    con.execute(f"CREATE VIEW ds_6402 AS SELECT * FROM read_parquet('{path}')")

    compiled = compile_nql(SEED_VIEW_NQL, nql_catalog)
    got = Counter(con.execute(compiled.select_sql).fetchall())
    expected = Counter(con.execute(hand_written_seed_query("ds_6402")).fetchall())
    assert got == expected
    assert 200 < sum(got.values()) < 20_000  # the gap rule matches a decent number of rows


def test_seed_data_is_deterministic_and_shaped(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    write_seed_dataset(first, 5_000, seed=1)
    write_seed_dataset(second, 5_000, seed=1)
    write_seed_dataset(other, 5_000, seed=2)
    con = duckdb.connect(":memory:")
    read = "SELECT * FROM read_parquet('{}') ORDER BY ALL"
    assert con.execute(read.format(first)).fetchall() == con.execute(read.format(second)).fetchall()
    assert con.execute(read.format(first)).fetchall() != con.execute(read.format(other)).fetchall()
    schema = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{first}')").fetchall()
    assert [(r[0], r[1]) for r in schema] == list(SEED.columns)
    nulls, null_values, total = con.execute(
        "SELECT count(*) FILTER (WHERE mobile_id_unique_identifier IS NULL), "
        "count(*) FILTER (WHERE mobile_id_unique_identifier.value IS NULL), count(*) "
        f"FROM read_parquet('{first}')"
    ).fetchone() or (0, 0, 0)
    assert total == 5_000 and 0 < nulls < null_values < total // 10
