"""Dataset references resolve through the catalog to bare `ds_N` relations, fully qualified."""

from __future__ import annotations

import pytest

from shared.errors import DatasetNotFound, NQLError
from shared.nql import ResolvedDataset, StaticCatalog, compile_nql, parse_nql

from .datasets import SEED, USERS, WEB_EVENTS


@pytest.mark.parametrize(
    "reference",
    ['company_data."7"', '"company_data"."7"', "company_data.web_events", "COMPANY_DATA.web_events",
     'company_data."web_events"', "company_data.Web_Events"],
)  # fmt: skip
def test_reference_forms(reference: str, nql_catalog: StaticCatalog) -> None:
    compiled = compile_nql(f"SELECT user_id FROM {reference}", nql_catalog)
    assert compiled.datasets == (WEB_EVENTS,)
    assert 'FROM "ds_7" AS ' in compiled.select_sql
    assert "company_data" not in compiled.select_sql.lower()


def test_datasets_read_are_listed_once(nql_catalog: StaticCatalog) -> None:
    compiled = compile_nql(
        "SELECT a.user_id, u.plan FROM company_data.web_events a "
        'JOIN company_data."7" b ON a.user_id = b.user_id '
        "JOIN company_data.users u ON u.user_id = a.user_id",
        nql_catalog,
    )
    assert compiled.datasets == (WEB_EVENTS, USERS)


def test_parse_reports_raw_references() -> None:
    parsed = parse_nql(
        'SELECT a.user_id FROM company_data."7" a JOIN company_data.users u ON true JOIN company_data."7" c ON true'
    )
    assert parsed.dataset_references == ("7", "users")


def test_struct_access_versus_table_columns(nql_catalog: StaticCatalog) -> None:
    sql = compile_nql(
        'SELECT "attrs"."os"."version" AS v, e."attrs"."device" AS d FROM company_data."7" AS e',
        nql_catalog,
    ).select_sql
    assert '"e"."attrs"."os"."version" AS "v"' in sql
    assert '"e"."attrs"."device" AS "d"' in sql


def test_column_qualified_by_the_dataset_path(nql_catalog: StaticCatalog) -> None:
    sql = compile_nql('SELECT company_data."8".plan FROM company_data."8"', nql_catalog).select_sql
    assert '"ds_8"."plan"' in sql


def test_unknown_dataset_names_it(nql_catalog: StaticCatalog) -> None:
    with pytest.raises(DatasetNotFound) as raised:
        compile_nql("SELECT x FROM company_data.nope", nql_catalog)
    assert "'nope'" in raised.value.message


def test_bare_table_name_is_not_a_dataset(nql_catalog: StaticCatalog) -> None:
    with pytest.raises(DatasetNotFound) as raised:
        compile_nql("SELECT user_id FROM web_events", nql_catalog)
    assert "company_data" in raised.value.message


def test_catalog_relation_names_are_checked() -> None:
    # A catalog bug must not make the compiler emit a qualified or foreign relation.
    bad = ResolvedDataset(5, "bad", "main.ds_5", (("a", "INTEGER"),))
    with pytest.raises(NQLError) as raised:
        compile_nql('SELECT a FROM company_data."5"', StaticCatalog([bad]))
    assert "invalid relation" in raised.value.message


def test_static_catalog_lookup() -> None:
    catalog = StaticCatalog([SEED, WEB_EVENTS])
    assert catalog.resolve("6402") is SEED
    assert catalog.resolve("web_events") is WEB_EVENTS
    assert catalog.resolve("WEB_EVENTS") is WEB_EVENTS
    for missing in ("8", "users", "", "0x7"):
        with pytest.raises(DatasetNotFound) as raised:
            catalog.resolve(missing)
        assert raised.value.message == f"Dataset {missing!r} does not exist or is not accessible"
