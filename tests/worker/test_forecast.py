"""Forecasts: exact counts, sampled estimates inside honest bounds, cost, query shapes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared.config import Settings
from shared.nql import ResolvedDataset, StaticCatalog, compile_nql
from shared.sample_data import SEED_COLUMNS, SEED_VIEW_NQL
from shared.states import JobState
from shared.store import Store
from shared.store.datasets import get_dataset
from tests.s3 import local_copies
from worker.forecast import Forecast, exact_count, forecast
from worker.inputs import Input, bind_inputs
from worker.lifecycle import Outcome
from worker.shape import Shape, query_shape

from .conftest import run
from .queries import FILTER_FORECAST, SEED

ROWS = 20_000
CATALOG = StaticCatalog([ResolvedDataset(6402, "seed", "ds_6402", SEED_COLUMNS),
                         ResolvedDataset(7, "other", "ds_7", SEED_COLUMNS)])


def _sql(nql: str) -> str:
    return compile_nql(nql, CATALOG).select_sql


@pytest.fixture(scope="module")
def bound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[Input]]]:
    from shared.sample_data import write_seed_dataset

    folder = tmp_path_factory.mktemp("forecast")
    write_seed_dataset(folder / "big.parquet", ROWS)
    write_seed_dataset(folder / "small.parquet", 2_000, seed=3)
    inputs = [Input(dataset_id=6402, relation="ds_6402", columns=SEED_COLUMNS,
                    files=(folder / "big.parquet",), row_count=ROWS,
                    price_micro_cents_per_row=3, snapshot_id=1),
              Input(dataset_id=7, relation="ds_7", columns=SEED_COLUMNS,
                    files=(folder / "small.parquet",), row_count=2_000,
                    price_micro_cents_per_row=5, snapshot_id=2)]
    con = duckdb.connect()
    con.execute("SET threads = 1")  # with a seed, samples are repeatable on one thread
    bind_inputs(con, inputs)
    yield con, inputs
    con.close()


JOIN = (f'EXPLAIN SELECT a."event_timestamp" AS t, b."event_timestamp" AS u FROM {SEED} AS a '
        'JOIN company_data."7" AS b ON a."mobile_id_unique_identifier"."value" = '
        'b."mobile_id_unique_identifier"."value" WHERE a."timestamp_object"."hour" < 12')
CASES = {
    "filter": (FILTER_FORECAST, Shape.LINEAR),
    "rare": (f'EXPLAIN SELECT "event_timestamp" AS ts FROM {SEED} WHERE "timestamp_object"."hour" = 3 '
             "AND \"timestamp_object\".\"day\" = DATE '2024-01-05'", Shape.LINEAR),
    "nothing": (f'EXPLAIN SELECT "event_timestamp" AS ts FROM {SEED} WHERE "timestamp_object"."hour" > 30',
                Shape.LINEAR),
    "join": (JOIN, Shape.LINEAR),
    "by_day": (f'EXPLAIN SELECT "timestamp_object"."day" AS d, count(*) AS n FROM {SEED} GROUP BY 1',
               Shape.GROUPED),
    "distinct_ids": (f'EXPLAIN SELECT DISTINCT "mobile_id_unique_identifier"."value" AS m FROM {SEED}',
                     Shape.GROUPED),
    "distinct_times": (f'EXPLAIN SELECT DISTINCT "event_timestamp" AS t FROM {SEED}', Shape.GROUPED),
    "one_row": (f'EXPLAIN SELECT count(*) AS n FROM {SEED}', Shape.ONE_ROW),
    "window": (f'EXPLAIN SELECT "event_timestamp" AS t, row_number() OVER (ORDER BY "event_timestamp") AS r '
               f'FROM {SEED}', Shape.OTHER),
    "having": (f'EXPLAIN SELECT "timestamp_object"."day" AS d FROM {SEED} GROUP BY 1 HAVING count(*) > 700',
               Shape.OTHER),
    "limit": (f'EXPLAIN SELECT "event_timestamp" AS t FROM {SEED} LIMIT 10 ROWS', Shape.OTHER),
    "self_join": (f'EXPLAIN SELECT a."event_timestamp" AS t FROM {SEED} AS a JOIN {SEED} AS b '
                  'ON a."event_timestamp" = b."event_timestamp"', Shape.OTHER),
    "seed_view": ("EXPLAIN " + SEED_VIEW_NQL.split(" as ", 1)[1], Shape.OTHER),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_query_shapes(name: str) -> None:
    nql, shape = CASES[name]
    assert query_shape(_sql(nql), "ds_6402") == shape


def test_right_join_on_the_sampled_side_is_not_linear() -> None:
    sql = _sql(JOIN.replace(" JOIN ", " RIGHT JOIN "))
    assert query_shape(sql, "ds_6402") == Shape.OTHER


def test_small_inputs_are_counted_exactly(bound: tuple[duckdb.DuckDBPyConnection, list[Input]]) -> None:
    con, inputs = bound
    sql = _sql(JOIN)
    result = forecast(con, sql, inputs, exact_max_rows=ROWS + 2_000, sample_percent=5)
    truth = exact_count(con, sql)
    # a join row is priced as its dearest input (5 micro-cents)
    assert result == Forecast(rows=truth, cost=truth * 5)
    assert result.as_result() == {"rows": truth, "cost": truth * 5}


@pytest.mark.parametrize("name", sorted(n for n, (_, s) in CASES.items() if s != Shape.OTHER))
def test_sampled_estimates_hold_the_true_count_within_their_bounds(
        bound: tuple[duckdb.DuckDBPyConnection, list[Input]], name: str) -> None:
    con, both = bound
    inputs = both if name == "join" else both[:1]
    sql = _sql(CASES[name][0])
    truth = exact_count(con, sql)
    # Five fixed samples, so the test cannot flake; the bounds aim at 99.9% coverage and
    # missed 1 of 1,500 fresh samples on these cases (the join) when this was written.
    for seed in range(5):
        result = forecast(con, sql, inputs, exact_max_rows=1_000, sample_percent=20, seed=seed)
        if CASES[name][1] == Shape.ONE_ROW:
            assert result.rows == truth == 1 and result.rows_lower is None and result.cost == 3
            continue
        assert result.rows_lower is not None and result.rows_upper is not None
        assert result.rows_lower <= truth <= result.rows_upper, (name, truth, result)
        assert result.rows_lower <= result.rows <= result.rows_upper
        assert result.cost == result.rows * (5 if name == "join" else 3)
        assert set(result.as_result()) == {"rows", "cost", "rows_lower", "rows_upper"}
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)


def test_a_linear_estimate_is_close(bound: tuple[duckdb.DuckDBPyConnection, list[Input]]) -> None:
    con, inputs = bound
    sql = _sql(FILTER_FORECAST)
    truth = exact_count(con, sql)
    result = forecast(con, sql, inputs, exact_max_rows=1_000, sample_percent=20, seed=7)
    assert abs(result.rows - truth) < 0.1 * truth
    assert result.rows_upper - result.rows_lower < 0.5 * truth  # type: ignore[operator]


def test_shapes_the_sample_cannot_bound_are_counted_exactly(
        bound: tuple[duckdb.DuckDBPyConnection, list[Input]]) -> None:
    con, inputs = bound
    sql = _sql(CASES["having"][0])
    result = forecast(con, sql, inputs, exact_max_rows=1_000, sample_percent=20)
    assert result.rows == exact_count(con, sql) and result.rows_lower is None


@pytest.mark.postgres
def test_a_forecast_job_completes_with_rows_and_cost(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any], no_leftovers: None,
        tmp_path: Path) -> None:
    with pg_store.unit_of_work() as session:
        get_dataset(session, 6402).price_micro_cents_per_row = 250
    outcome, job = run(pg_store, wsettings, FILTER_FORECAST, type="nql-forecast")
    assert outcome == Outcome.COMPLETED and job.state == JobState.COMPLETED
    con = duckdb.connect()
    [seed_copy] = local_copies(wsettings, seed["files"], tmp_path)
    con.execute(f"CREATE VIEW ds_6402 AS SELECT * FROM '{seed_copy}'")
    truth = exact_count(con, job.compiled_sql or "")
    assert job.result == {"rows": truth, "cost": truth * 250}
    assert job.statistics["records_inserted"] == 0
    sampled = wsettings.model_copy(update={"forecast_exact_max_rows": 100})
    _, job = run(pg_store, sampled, FILTER_FORECAST, type="nql-forecast")
    assert job.result and job.result["rows_lower"] <= truth <= job.result["rows_upper"]


def test_a_view_submitted_as_a_forecast_job_fails(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    outcome, job = run(pg_store, wsettings, SEED_VIEW_NQL, type="nql-forecast")
    assert outcome == Outcome.FAILED and "cannot run" in job.failures[0]["message"]
