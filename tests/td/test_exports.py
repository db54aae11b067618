"""Exports against a real S3 server (moto_server checking signatures, a bucket other than the
one our data lives in), with real api/scheduler/worker processes: a query's `result` URL,
`/v3/job/result_export`, `/v3/export/run`; idempotency by domain_key; refused credentials
fail the export (not retried) with a readable message and the secret nowhere."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import boto3
import pyarrow.parquet as pq
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from tests.processes import wait_for
from tests.s3 import MotoServer, free_port
from tests.td.stack import QUERY, Stack, finished, make_stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

TARGET_BUCKET = "td-export-target"


@dataclass
class Target:
    server: MotoServer
    key: str
    secret: str

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def url(self, prefix: str, fmt: str, *, key: str | None = None,
            secret: str | None = None) -> str:
        user, password = quote(key or self.key, safe=""), quote(secret or self.secret, safe="")
        return (f"s3://{user}:{password}@{self.host}/{TARGET_BUCKET}/"
                f"{prefix}?format={fmt}&ssl=false")

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.server.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret)

    def objects(self, prefix: str) -> dict[str, bytes]:
        s3 = self.client()
        listed = s3.list_objects_v2(Bucket=TARGET_BUCKET, Prefix=prefix).get("Contents", [])
        return {o["Key"]: s3.get_object(Bucket=TARGET_BUCKET, Key=o["Key"])["Body"].read()
                for o in listed}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    # Signatures are checked after the first four requests (the bucket, an IAM user, its
    # policy and its key): a wrong key is then refused as by AWS.
    server = MotoServer(free_port(), environment={"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    server.start(tmp_path_factory.mktemp("moto-target"))
    try:
        server.create_bucket(TARGET_BUCKET)
        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="exporter")
        iam.put_user_policy(UserName="exporter", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="exporter")["AccessKey"]
        yield Target(server, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_database: str,
          redis_db: int) -> Iterator[Stack]:
    yield from make_stack(tmp_path_factory, pg_database, redis_db, ttl_seconds=86400,
                          extra_env={"DATAPLANE_SECRET_KEY": Fernet.generate_key().decode()})


def _wait_job(stack: Stack, job_id: str, timeout: float = 90) -> dict[str, Any]:
    with stack.http() as http:
        wait_for(lambda: http.get(f"/v3/job/status/{job_id}").json()["status"]
                 in ("success", "error", "killed"), timeout=timeout,
                 message=f"job {job_id} finished\n{stack.logs()}")
        return dict(http.get(f"/v3/job/show/{job_id}").json())


def _query_rows(stack: Stack, job_id: str) -> list[list[Any]]:
    with stack.http() as http:
        lines = http.get(f"/v3/job/result/{job_id}", params={"format": "json"}).text
    return [json.loads(line) for line in lines.splitlines()]


def test_result_url_on_issue_exports_when_the_query_completes(stack: Stack, target: Target):
    with stack.client() as td:
        job = td.query("company_data", QUERY, type="presto",
                       result_url=target.url("issued/q1", "csv.gz"))
        finished(job, stack)
        assert job.success()
    with stack.http() as http:
        wait_for(lambda: http.get(f"/v3/job/show/{job.job_id}").json()
                 ["linked_result_export_job_id"] is not None, timeout=30,
                 message=f"export job made\n{stack.logs()}")
        shown = http.get(f"/v3/job/show/{job.job_id}").json()
    assert shown["result"] == ""
    assert shown["result_url"] == f"s3://***@{target.host}/{TARGET_BUCKET}/issued/q1"
    export = _wait_job(stack, shown["linked_result_export_job_id"])
    assert export["status"] == "success", export["debug"]
    assert export["type"] == "export" and export["result_export_target_job_id"] == job.job_id
    objects = target.objects("issued/q1/")
    assert list(objects) == [f"issued/q1/{export['job_id']}-0.csv.gz"]
    rows = list(csv.reader(io.StringIO(gzip.decompress(next(iter(objects.values()))).decode())))
    expected = _query_rows(stack, job.job_id)
    assert rows[0] == ["h", "ts"] and rows[1:] == [[str(h), ts] for h, ts in expected]
    with stack.http() as http:
        ours = http.get(f"/jobs/{export['job_id']}",
                        headers={"Authorization": f"Bearer {stack.key}"}).json()
    assert ours["type"] == "export" and ours["state"] == "completed"
    assert ours["result"]["rows"] == 300 and ours["result"]["files"] == [
        f"s3://{TARGET_BUCKET}/issued/q1/{export['job_id']}-0.csv.gz"]
    assert ours["result"]["bytes"] == len(next(iter(objects.values())))
    assert target.secret not in json.dumps(ours) and target.secret not in json.dumps(shown)


def test_result_export_of_a_finished_job_in_parquet(stack: Stack, target: Target):
    with stack.client() as td:
        job = td.query("company_data", QUERY, type="trino")
        finished(job, stack)
    with stack.http() as http:
        answer = http.post(f"/v3/job/result_export/{job.job_id}",
                           data={"result": target.url("later", "parquet"),
                                 "domain_key": "export-later"})
        assert answer.status_code == 200, answer.text
        again = http.post(f"/v3/job/result_export/{job.job_id}",
                          data={"result": target.url("later", "parquet"),
                                "domain_key": "export-later"})
        assert again.json()["job_id"] == answer.json()["job_id"]
    export = _wait_job(stack, answer.json()["job_id"])
    assert export["status"] == "success", export["debug"]
    objects = target.objects("later/")
    assert len(objects) == 1  # one export for the two requests
    table = pq.read_table(io.BytesIO(next(iter(objects.values()))))
    assert table.column_names == ["h", "ts"] and table.num_rows == 300
    assert table.column("h").to_pylist() == [h for h, _ in _query_rows(stack, job.job_id)]
    with stack.http() as http:
        source = http.get(f"/v3/job/show/{job.job_id}").json()
    assert source["linked_result_export_job_id"] == export["job_id"]


def test_table_export_with_form_fields(stack: Stack, target: Target):
    fields = {"storage_type": "s3", "bucket": TARGET_BUCKET, "file_prefix": "tables/seed",
              "file_format": "jsonl.gz", "access_key_id": target.key,
              "secret_access_key": target.secret, "endpoint": f"http://{target.host}",
              "domain_key": "seed-export-1"}
    with stack.http() as http:
        answer = http.post("/v3/export/run/company_data/seed", data=fields)
        assert answer.status_code == 200, answer.text
        assert http.post("/v3/export/run/company_data/seed",
                         data=fields).json()["job_id"] == answer.json()["job_id"]
        no_time = http.post("/v3/export/run/company_data/seed",
                            data={**fields, "domain_key": "x", "from": "1356998400"})
        assert no_time.status_code == 400 and "'time'" in no_time.json()["detail"]
        assert http.post("/v3/export/run/company_data/nope", data=fields).status_code == 404
        other = http.post("/v3/export/run/company_data/seed", data=fields,
                          headers={"Authorization": f"TD1 {stack.other_key}"})
        assert other.status_code == 404
    export = _wait_job(stack, answer.json()["job_id"])
    assert export["status"] == "success", export["debug"]
    objects = target.objects("tables/seed/")
    assert len(objects) == 1
    lines = gzip.decompress(next(iter(objects.values()))).decode().splitlines()
    assert len(lines) == 20_000 and "event_timestamp" in json.loads(lines[0])


def test_refused_credentials_fail_once_with_a_readable_message(stack: Stack, target: Target):
    secret = "very-secret-value-123"
    with stack.client() as td:
        job = td.query("company_data", QUERY, type="presto")
        finished(job, stack)
    with stack.http() as http:
        answer = http.post(f"/v3/job/result_export/{job.job_id}",
                           data={"result": target.url("refused", "csv", key="AKIAWRONG",
                                                      secret=secret), "retry_limit": "3"})
        assert answer.status_code == 200, answer.text
        export = _wait_job(stack, answer.json()["job_id"])
        ours = http.get(f"/jobs/{export['job_id']}",
                        headers={"Authorization": f"Bearer {stack.key}"}).json()
        listed = http.get("/v3/job/list").text
    assert export["status"] == "error"
    assert "refused the credentials" in export["debug"]["stderr"] or \
        "InvalidAccessKeyId" in export["debug"]["stderr"]
    assert ours["attempts"] == 1  # a 4xx from the target is never retried
    with stack.store.unit_of_work() as session:
        reasons = " ".join(r or "" for r in session.execute(
            text("SELECT reason FROM job_transitions")).scalars())
        stored = " ".join(r or "" for r in session.execute(
            text("SELECT result_url_encrypted FROM td_jobs")).scalars())
    for place in (json.dumps(export), json.dumps(ours), listed, stack.logs(), reasons, stored,
                  *(p.log() for p in stack.processes)):
        assert secret not in place and target.secret not in place


def test_a_bad_result_url_is_a_400(stack: Stack) -> None:
    """(A server without DATAPLANE_SECRET_KEY: see test_td_units.py.)"""
    with stack.http() as http:
        bad = http.post("/v3/job/result_export/00000000-0000-0000-0000-000000000000",
                        data={"result": "ftp://x"})
        assert bad.status_code == 400


def test_table_export_within_a_time_range(stack: Stack, target: Target):
    with stack.client() as td:
        view = td.query("company_data", 'CREATE MATERIALIZED VIEW "timed" AS SELECT '
                        'CAST(epoch("event_timestamp") AS BIGINT) AS "time", '
                        '"timestamp_object"."hour" AS h FROM seed', type="presto")
        finished(view, stack)
        assert view.success(), view.debug
        bounds = td.query("company_data", 'SELECT min("time") AS lo, max("time") AS hi FROM timed',
                          type="presto")
        finished(bounds, stack)
        ((lo, hi),) = list(bounds.result())
        middle = (lo + hi) // 2
        counted = td.query("company_data", 'SELECT count(*) AS n FROM timed WHERE '
                           f'"time" >= {lo + 1} AND "time" < {middle}', type="presto")
        finished(counted, stack)
        ((expected,),) = list(counted.result())
    with stack.http() as http:
        answer = http.post("/v3/export/run/company_data/timed", data={
            "storage_type": "s3", "bucket": TARGET_BUCKET, "file_prefix": "timed",
            "file_format": "csv", "access_key_id": target.key,
            "secret_access_key": target.secret, "endpoint": f"http://{target.host}",
            "from": str(lo + 1), "to": str(middle)})
        assert answer.status_code == 200, answer.text
    export = _wait_job(stack, answer.json()["job_id"])
    assert export["status"] == "success", export["debug"]
    (body,) = target.objects("timed/").values()
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert 0 < len(rows) == expected
    assert all(lo + 1 <= int(r["time"]) < middle for r in rows)


def test_an_unreachable_target_is_retried_then_fails(stack: Stack, target: Target):
    with stack.client() as td:
        job = td.query("company_data", QUERY, type="presto")
        finished(job, stack)
    dead = f"127.0.0.1:{free_port()}"
    url = target.url("dead", "csv").replace(target.host, dead)
    with stack.http() as http:
        answer = http.post(f"/v3/job/result_export/{job.job_id}",
                           data={"result": url, "retry_limit": "1"})
        assert answer.status_code == 200, answer.text
        export = _wait_job(stack, answer.json()["job_id"], timeout=120)
        ours = http.get(f"/jobs/{export['job_id']}",
                        headers={"Authorization": f"Bearer {stack.key}"}).json()
    assert export["status"] == "error" and "could not be reached" in export["debug"]["stderr"]
    assert ours["attempts"] == 2  # an infrastructure error: retried within retry_limit
    assert f"s3://***@{dead}/{TARGET_BUCKET}/dead" in export["debug"]["stderr"]
