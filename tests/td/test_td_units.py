"""The TD surface's pieces without processes: result URLs and redaction, Hive type names,
TD values, multipart bodies, and (in-process app) the 400 of an export without a secret key."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from api.td.forms import parse_form
from api.td.query import to_nql
from shared.errors import InvalidRequest, NotFound, NQLSyntaxError
from shared.export_target import MISSING_KEY, parse_result_url
from shared.store.tokens import create_token
from shared.td_results import hive_type, td_value


def test_result_url_parsing_and_redaction() -> None:
    target = parse_result_url("s3://AK%2FI:se%2Bcr%2Fet@127.0.0.1:9000/bucket/a/b?format=json.gz"
                              "&ssl=false")
    assert target.credentials.access_key_id == "AK/I"
    assert target.credentials.secret_access_key == "se+cr/et"
    location = target.location
    assert (location.bucket, location.prefix, location.format) == ("bucket", "a/b", "json.gz")
    assert location.endpoint == "http://127.0.0.1:9000"
    assert location.redacted() == "s3://***@127.0.0.1:9000/bucket/a/b"
    assert "se+cr" not in repr(target)
    aws = parse_result_url("s3://K:S@/bucket/prefix").location
    assert aws.endpoint is None and aws.redacted() == "s3://***@/bucket/prefix"
    assert parse_result_url("s3://K:S@minio.local/b").location.endpoint == "https://minio.local"
    for bad in ("ftp://K:S@h/b", "s3://h/b", "s3://K:S@h/", "s3://K:S@h/b?format=xml"):
        with pytest.raises(InvalidRequest) as caught:
            parse_result_url(bad)
        assert ":S@" not in caught.value.message


@pytest.mark.parametrize("duckdb_type, hive", [
    ("BIGINT", "bigint"), ("INTEGER", "int"), ("VARCHAR", "string"), ("DOUBLE", "double"),
    ("BOOLEAN", "boolean"), ("DATE", "date"), ("TIMESTAMP WITH TIME ZONE", "timestamp"),
    ("DECIMAL(18, 3)", "decimal(18,3)"), ("VARCHAR[]", "array<string>"),
    ('STRUCT(lat DOUBLE, "lon" DOUBLE)', "struct<lat:double,lon:double>"),
    ("MAP(VARCHAR, BIGINT)", "map<string,bigint>"), ("BLOB", "binary"),
])
def test_hive_types(duckdb_type: str, hive: str) -> None:
    assert hive_type(duckdb_type) == hive


def test_td_values() -> None:
    assert td_value(datetime(2020, 12, 31, 11, 22, 33, 500)) == "2020-12-31 11:22:33 UTC"
    assert td_value(datetime(2020, 12, 31, 12, 22, 33, tzinfo=UTC)) == "2020-12-31 12:22:33 UTC"
    assert td_value(date(2020, 1, 2)) == "2020-01-02"
    assert td_value(Decimal("12.340")) == "12.340"  # decimals are strings: exact
    assert td_value(2**70) == str(2**70) and td_value(-5) == -5
    assert td_value({"a": [b"\x00"]}) == {"a": [b"\x00"]}
    assert td_value(b"\x00", binary=False) == "AA=="


def test_multipart_urlencoded_and_json_bodies() -> None:
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n"
            "SELECT 1\r\n-- x\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"priority\"\r\n\r\n1\r\n"
            f"--{boundary}--\r\n").encode()
    assert parse_form(f"multipart/form-data; boundary={boundary}", body) == {
        "query": "SELECT 1\r\n-- x", "priority": "1"}
    assert parse_form("application/x-www-form-urlencoded", b"query=SELECT+1&priority=-1") == {
        "query": "SELECT 1", "priority": "-1"}
    assert parse_form("application/json", b'{"query": "SELECT 1", "priority": 2}') == {
        "query": "SELECT 1", "priority": "2"}
    assert parse_form("", b"") == {}
    with pytest.raises(InvalidRequest):
        parse_form("application/json", b"[1]")


def test_td_queries_become_nql() -> None:
    job_id = uuid.uuid4()
    wrapped = to_nql("company_data", "-- pytd\nWITH t AS (SELECT \"a\" FROM x) SELECT \"a\" FROM t",
                     job_id)
    assert wrapped.interactive and wrapped.nql.startswith(
        f'CREATE MATERIALIZED VIEW "td_result_{job_id.hex}" TAGS=(\'interactive\') AS ')
    assert "FROM company_data.x" in wrapped.nql and "FROM t" in wrapped.nql
    explain = to_nql("company_data", 'EXPLAIN SELECT "a" FROM company_data."1"', job_id)
    assert not explain.interactive and explain.nql == 'EXPLAIN SELECT "a" FROM company_data."1"'
    with pytest.raises(NotFound):
        to_nql("other_db", "SELECT 1 AS a", job_id)
    with pytest.raises(NQLSyntaxError):
        to_nql("company_data", "SELEC 1", job_id)


@pytest.mark.postgres
def test_export_without_a_secret_key_is_a_clear_400(client: TestClient, pg_store) -> None:
    with pg_store.unit_of_work() as session:
        token = create_token(session, company_id=1, user_id=1)
    auth = {"Authorization": f"TD1 {token}"}
    issued = client.post("/v3/job/issue/presto/company_data", headers=auth, data={
        "query": "SELECT 1 AS a", "result": "s3://K:S@/bucket/prefix"})
    assert issued.status_code == 400 and issued.json()["detail"] == MISSING_KEY
    exported = client.post("/v3/export/run/company_data/x", headers=auth, data={
        "bucket": "b", "access_key_id": "K", "secret_access_key": "S"})
    assert exported.status_code in (400, 404)
    assert client.get("/v3/job/list", headers=auth).json()["jobs"] == []
    assert client.get("/v3/job/show/nope", headers=auth).status_code == 404
    assert client.get("/v3/job/list", headers={"Authorization": "TD1 wrong"}).status_code == 401
