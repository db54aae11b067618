"""CREATE MATERIALIZED VIEW options are captured into a typed MaterializedViewSpec."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.errors import ColumnNotFound, NQLError, NQLSyntaxError
from shared.nql import (
    Budget,
    MaterializedViewSpec,
    StatementKind,
    StaticCatalog,
    compile_nql,
    parse_nql,
)
from shared.sample_data import SEED_VIEW_NQL

ALL_OPTIONS = """
create materialized view "daily_spend"
    REFRESH_SCHEDULE = '@daily'
    DISPLAY_NAME = 'Daily spend'
    DESCRIPTION = 'Spend per day, it''s useful'
    EXPIRE = 'P30D'
    TAGS = ('finance', 'daily')
    WRITE_MODE = 'overwrite'
    EXTENDED_STATS = 'none'
    PARTITIONED_BY event_date DAY, country MONTH
as
SELECT event_date, country, sum(amount) AS spend
FROM company_data.web_events
GROUP BY event_date, country
BUDGET 50 USD
"""


def test_every_option_is_typed() -> None:
    parsed = parse_nql(ALL_OPTIONS)
    assert parsed.kind is StatementKind.MATERIALIZE_VIEW
    assert parsed.dataset_references == ("web_events",)
    assert parsed.view == MaterializedViewSpec(
        name="daily_spend",
        refresh_schedule="@daily",
        display_name="Daily spend",
        description="Spend per day, it's useful",
        expire="P30D",
        tags=("finance", "daily"),
        write_mode="overwrite",
        extended_stats="none",
        partitioned_by=(("event_date", "DAY"), ("country", "MONTH")),
        budget=Budget(amount_usd=Decimal("50"), period=None),
    )


def test_defaults() -> None:
    view = parse_nql('CREATE MATERIALIZED VIEW "v" AS SELECT 1 AS one').view
    assert view == MaterializedViewSpec(name="v")
    assert view.write_mode == "append" and view.budget is None and view.tags == ()


@pytest.mark.parametrize(
    ("tail", "budget"),
    [
        ("BUDGET 50 USD", Budget(Decimal("50"), None)),
        ("budget 12.5 usd", Budget(Decimal("12.5"), None)),
        ("LIMIT 100 USD", Budget(Decimal("100"), None)),
        ("LIMIT 500 USD PER CALENDAR_MONTH", Budget(Decimal("500"), "CALENDAR_MONTH")),
        ("LIMIT 50 USD PER CALENDAR_DAY", Budget(Decimal("50"), "CALENDAR_DAY")),
    ],
)
def test_budget_clauses(tail: str, budget: Budget) -> None:
    nql = f'CREATE MATERIALIZED VIEW "v" AS SELECT plan FROM company_data.users LIMIT 10 {tail}'
    parsed = parse_nql(nql)
    assert parsed.view is not None and parsed.view.budget == budget


def test_budget_limit_does_not_eat_the_row_limit(nql_catalog: StaticCatalog) -> None:
    nql = (
        'CREATE MATERIALIZED VIEW "v" AS SELECT plan FROM company_data.users '
        "ORDER BY plan LIMIT 3 ROWS LIMIT 500 USD PER CALENDAR_MONTH"
    )
    compiled = compile_nql(nql, nql_catalog)
    assert compiled.select_sql.rstrip().endswith("LIMIT 3")
    assert compiled.view is not None
    assert compiled.view.budget == Budget(Decimal("500"), "CALENDAR_MONTH")


def test_parenthesized_query_and_seed() -> None:
    view = parse_nql('CREATE MATERIALIZED VIEW "p" AS (SELECT 1 AS one) BUDGET 1 USD').view
    assert view is not None and view.budget == Budget(Decimal("1"), None)
    seed = parse_nql(SEED_VIEW_NQL)
    assert seed.view == MaterializedViewSpec(name="sampleNQL")
    assert seed.dataset_references == ("6402",)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ("WRITE_MODE='upsert'", NQLError),
        ("EXTENDED_STATS='some'", NQLError),
        ("REFRESH_SCHEDULE='every tuesday'", NQLError),
        ("DISPLAY_NAME='a' DISPLAY_NAME='b'", NQLError),
        ("TAGS=('a') TAGS=('b')", NQLError),
        ("COLOR='red'", NQLSyntaxError),
        ("DISPLAY_NAME=42", NQLSyntaxError),
        ("PARTITIONED_BY event_date WEEK", NQLSyntaxError),
        ("TAGS='a'", NQLSyntaxError),
    ],
)
def test_invalid_options(options: str, error: type[NQLError]) -> None:
    with pytest.raises(error):
        parse_nql(f'CREATE MATERIALIZED VIEW "v" {options} AS SELECT 1 AS one')


@pytest.mark.parametrize("name", ['"has space"', '"dash-name"', '"' + "x" * 257 + '"'])
def test_invalid_view_names(name: str) -> None:
    with pytest.raises(NQLError):
        parse_nql(f"CREATE MATERIALIZED VIEW {name} AS SELECT 1 AS one")


def test_cron_schedule_and_case_insensitive_choices() -> None:
    view = parse_nql(
        "CREATE MATERIALIZED VIEW v REFRESH_SCHEDULE='0 3 * * 1' WRITE_MODE='OVERWRITE' "
        "EXTENDED_STATS='All' AS SELECT 1 AS one"
    ).view
    assert view is not None
    assert (view.refresh_schedule, view.write_mode, view.extended_stats) == (
        "0 3 * * 1",
        "overwrite",
        "all",
    )


def test_partition_column_must_be_an_output(nql_catalog: StaticCatalog) -> None:
    with pytest.raises(ColumnNotFound):
        compile_nql(
            'CREATE MATERIALIZED VIEW "v" PARTITIONED_BY signup MONTH AS SELECT plan FROM company_data.users',
            nql_catalog,
        )


def test_budget_only_after_a_view_query() -> None:
    with pytest.raises(NQLSyntaxError):
        parse_nql("SELECT plan FROM company_data.users BUDGET 5 USD")
