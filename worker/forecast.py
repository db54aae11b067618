"""`nql-forecast` (EXPLAIN <select>) and BUDGET checks: rows and cost, writing nothing.

Rows: `SELECT count(*) FROM (<select>)`, exactly, when the inputs hold at most
`forecast_exact_max_rows` rows in total. Above that the largest input is sampled
(Bernoulli, `forecast_sample_percent`) into a temporary table and the query counted over
the sample, as `worker.shape` says is sound for the query's shape:

* LINEAR: the sample is split into K random buckets and the query counted over each; the
  estimate is count/p and its spread across buckets (batch means, Student t at 99.9%)
  gives the interval, never narrower than the binomial one. The sample's own count is a
  hard lower bound; `ln(1000)/p` is added above so that a count of zero still has an
  honest upper bound (Poisson, 99.9%).
* GROUPED: the groups seen in the sample are a hard lower bound and, since each group is
  seen with probability >= p, `(seen + 3.3 sqrt(seen) + ln 1000) / p` an upper bound. The
  estimate comes from how the number of groups grows from half the sample to all of it
  (equal-sized groups fitted to that ratio), clamped into the bounds.
* ONE_ROW: exactly 1. OTHER: counted exactly (a sample would not bound it honestly).

Cost, in micro-cents USD: rows x the price per row. A row of a join is priced at the
most expensive of the datasets it reads (max of `price_micro_cents_per_row`): the
conservative choice, and exact for a single dataset. No price, no cost: 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb

from shared.errors import BudgetExceeded
from shared.nql import Budget
from worker.inputs import Input
from worker.sandbox import sql_identifier
from worker.shape import Shape, query_shape

BUCKETS = 10
# 99.9% two-sided: a forecast's bounds should almost never be wrong.
T_999_9DF = 4.781  # Student t, BUCKETS - 1 degrees of freedom
Z_999 = 3.291
LN_1000 = math.log(1000)  # Poisson: a zero count still allows a mean of up to this
MICRO_CENTS_PER_USD = 100 * 1_000_000
_SAMPLE = "__nql_forecast_sample"
_BUCKET = "__nql_forecast_bucket"


@dataclass(frozen=True)
class Forecast:
    rows: int
    cost: int
    rows_lower: int | None = None
    rows_upper: int | None = None

    def as_result(self) -> dict[str, Any]:
        result: dict[str, Any] = {"rows": self.rows, "cost": self.cost}
        if self.rows_lower is not None:
            result.update(rows_lower=self.rows_lower, rows_upper=self.rows_upper)
        return result


def price_per_row(inputs: Sequence[Input]) -> int:
    return max((i.price_micro_cents_per_row for i in inputs), default=0)


def exact_count(con: duckdb.DuckDBPyConnection, select_sql: str) -> int:
    row = con.execute(f"SELECT count(*) FROM ({select_sql}) AS nql_forecast").fetchone()
    return int(row[0]) if row else 0


def forecast(con: duckdb.DuckDBPyConnection, select_sql: str, inputs: Sequence[Input], *,
             exact_max_rows: int, sample_percent: float, seed: int | None = None) -> Forecast:
    """`seed` makes the sample repeatable (with one DuckDB thread): for tests."""
    price = price_per_row(inputs)
    total = sum(i.row_count for i in inputs)
    if total <= exact_max_rows or not inputs:
        rows = exact_count(con, select_sql)
        return Forecast(rows=rows, cost=rows * price)
    target = max(inputs, key=lambda i: i.row_count)
    shape = query_shape(select_sql, target.relation)
    if shape == Shape.ONE_ROW:
        return Forecast(rows=1, cost=price)
    if shape == Shape.OTHER:
        rows = exact_count(con, select_sql)
        return Forecast(rows=rows, cost=rows * price)
    p = sample_percent / 100
    _draw_sample(con, target, sample_percent, seed)
    try:
        if shape == Shape.LINEAR:
            rows, lower, upper = _linear(con, select_sql, target, p)
        else:
            rows, lower, upper = _grouped(con, select_sql, target, p)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {_SAMPLE}")
    return Forecast(rows=rows, cost=rows * price, rows_lower=lower, rows_upper=upper)


def _draw_sample(con: duckdb.DuckDBPyConnection, target: Input, percent: float,
                 seed: int | None) -> None:
    method = "bernoulli" if seed is None else f"bernoulli, {int(seed)}"
    if seed is not None:
        con.execute("SELECT setseed(?)", [(int(seed) % 1000) / 1000])
    con.execute(
        f"CREATE TEMP TABLE {_SAMPLE} AS SELECT *, "
        f"CAST(floor(random() * {BUCKETS}) AS INTEGER) AS {_BUCKET} "
        f"FROM {sql_identifier(target.relation)} TABLESAMPLE {float(percent)}% ({method})"
    )


def _count_over(con: duckdb.DuckDBPyConnection, select_sql: str, target: Input,
                buckets: str) -> int:
    # The CTE shadows the relation's view: the query reads the chosen buckets instead.
    columns = ", ".join(sql_identifier(n) for n, _ in target.columns)
    row = con.execute(
        f"WITH {sql_identifier(target.relation)} AS (SELECT {columns} FROM {_SAMPLE} "
        f"WHERE {_BUCKET} {buckets}) SELECT count(*) FROM ({select_sql}) AS nql_forecast"
    ).fetchone()
    return int(row[0]) if row else 0


def _linear(con: duckdb.DuckDBPyConnection, select_sql: str, target: Input,
            p: float) -> tuple[int, int, int]:
    counts = [_count_over(con, select_sql, target, f"= {k}") for k in range(BUCKETS)]
    seen = sum(counts)
    estimate = seen / p
    per_bucket = [c * BUCKETS / p for c in counts]
    spread = math.sqrt(sum((e - estimate) ** 2 for e in per_bucket) / (BUCKETS - 1))
    error = max(spread / math.sqrt(BUCKETS), math.sqrt(seen * (1 - p)) / p)
    lower = max(seen, math.floor(estimate - T_999_9DF * error))
    upper = math.ceil(estimate + T_999_9DF * error + LN_1000 / p)
    return round(estimate), lower, upper


def _seen_fraction(p: float, size: float) -> float:
    """Chance that a group of `size` rows shows up in a Bernoulli(p) sample."""
    return -math.expm1(size * math.log1p(-p)) if p < 1 else 1.0


def _group_size(ratio: float, p: float) -> float:
    """The equal group size whose seen-fraction at p over that at p/2 equals `ratio`."""
    low, high = 1.0, 1e12
    for _ in range(200):
        mid = math.sqrt(low * high)
        if _seen_fraction(p, mid) / _seen_fraction(p / 2, mid) > ratio:
            low = mid
        else:
            high = mid
    return math.sqrt(low * high)


def _grouped(con: duckdb.DuckDBPyConnection, select_sql: str, target: Input,
             p: float) -> tuple[int, int, int]:
    seen = _count_over(con, select_sql, target, f"< {BUCKETS}")
    half = _count_over(con, select_sql, target, f"< {BUCKETS // 2}")
    lower = seen
    upper = max(lower, math.ceil((seen + Z_999 * math.sqrt(seen) + LN_1000) / p))
    if seen == 0:
        return 0, 0, upper
    ratio = seen / half if half else 2.0
    if ratio >= 2.0:
        estimate = seen / p
    elif ratio <= 1.0:
        estimate = float(seen)
    else:
        estimate = seen / _seen_fraction(p, _group_size(ratio, p))
    return min(max(round(estimate), lower), upper), lower, upper


def budget_micro_cents(budget: Budget) -> int:
    return int(Decimal(budget.amount_usd) * MICRO_CENTS_PER_USD)


def check_budget(budget: Budget | None, forecast_: Forecast) -> None:
    if budget is None:
        return
    limit = budget_micro_cents(budget)
    if forecast_.cost > limit:
        raise BudgetExceeded(
            f"The view would cost about {forecast_.cost / MICRO_CENTS_PER_USD:.2f} USD "
            f"({forecast_.rows} rows), above its budget of {budget.amount_usd} USD",
            cost_micro_cents=forecast_.cost, budget_micro_cents=limit, rows=forecast_.rows)
