"""The unchanged td-client 1.7.0 (and pytd's REST path) against real `dataplane api`,
scheduler and worker processes: the smoke test of the handbook's td-client note, and more."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator

import msgpack
import pytest
import tdclient

from tests.processes import wait_for
from tests.td.stack import QUERY, TD_DATE, Stack, finished, make_stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SLOW = ('SELECT count(*) AS n FROM seed AS a CROSS JOIN seed AS b CROSS JOIN seed AS c '
        'WHERE (epoch_ms(a."event_timestamp") * 7 + epoch_ms(b."event_timestamp") * 13 '
        '+ epoch_ms(c."event_timestamp")) % 1000 = 999')


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_database: str,
          redis_db: int) -> Iterator[Stack]:
    yield from make_stack(tmp_path_factory, pg_database, redis_db, ttl_seconds=86400)


def test_smoke_test_of_the_note(stack: Stack) -> None:
    # No trailing slash: the client asks for //v3/..., which must work too.
    with stack.client(slash=False) as td:
        job = td.query("company_data", "-- a comment line first\n" + QUERY, type="presto",
                       priority="HIGH", retry_limit=1)
        finished(job, stack)
        assert job.success(), job.debug
        assert td.job_status(job.job_id) == "success"
        rows = list(job.result())
        assert len(rows) == 300
        assert all(isinstance(h, int) and TD_DATE.match(ts) for h, ts in rows)
        assert rows == [list(r) for r in job.result_format("json")]
        assert rows == list(job.result_format("msgpack", store_tmpfile=True))  # Range / 206

        shown = td.api.show_job(job.job_id)
        assert shown["status"] == "success" and shown["type"] == "presto"
        assert shown["query"].startswith("-- a comment line first")
        assert shown["database"] == "company_data" and shown["priority"] == 1
        assert shown["retry_limit"] == 1 and shown["num_records"] == 300
        assert shown["hive_result_schema"] == [["h", "int"], ["ts", "timestamp"]]  # decoded
        assert job.result_schema == [["h", "int"], ["ts", "timestamp"]]
        for field in ("created_at", "start_at", "end_at", "updated_at"):
            assert shown[field] is not None, field

        slow = td.query("company_data", SLOW, type="trino")
        wait_for(lambda: td.job_status(slow.job_id) == "running", timeout=60,
                 message="slow query running")
        slow.kill()
        slow.wait(timeout=60, wait_interval=1)
        assert slow.status() == "killed"
        assert {j.job_id for j in td.jobs()} >= {job.job_id, slow.job_id}
        assert {j.job_id for j in td.jobs(status="killed")} == {slow.job_id}

    with tdclient.connect(apikey=stack.key, endpoint=stack.url + "/", type="presto",
                          db="company_data", wait_interval=1) as conn:
        cursor = conn.cursor()
        cursor.execute(QUERY)
        fetched = cursor.fetchall()
        assert [list(r) for r in fetched] == rows
        assert [d[0] for d in cursor.description] == ["h", "ts"]


def test_raw_wire_fields_and_formats(stack: Stack) -> None:
    with stack.client() as td:
        job = td.query("company_data", QUERY, type="hive")
        finished(job, stack)
    with stack.http() as http:
        status = http.get(f"/v3/job/status/{job.job_id}").json()
        assert status["status"] == "success" and TD_DATE.match(status["end_at"])
        assert isinstance(status["duration"], int) and status["num_records"] == 300
        whole = http.get(f"/v3/job/result/{job.job_id}", params={"format": "msgpack.gz"})
        assert whole.status_code == 200 and "content-encoding" not in whole.headers
        assert len(whole.content) == status["result_size"]
        part = http.get(f"/v3/job/result/{job.job_id}", params={"format": "msgpack.gz"},
                        headers={"Range": "bytes=10-99"})
        assert part.status_code == 206 and part.content == whole.content[10:100]
        assert part.headers["content-range"] == f"bytes 10-99/{status['result_size']}"
        rows = list(msgpack.Unpacker(io.BytesIO(gzip.decompress(whole.content)), raw=False))
        csv_text = http.get(f"/v3/job/result/{job.job_id}",
                            params={"format": "csv", "header": "true"}).text.splitlines()
        assert csv_text[0] == "h,ts" and csv_text[1] == f"{rows[0][0]},{rows[0][1]}"
        tsv_text = http.get(f"/v3/job/result/{job.job_id}",
                            params={"format": "tsv", "header": "false"}).text.splitlines()
        assert len(tsv_text) == 300 and tsv_text[0] == f"{rows[0][0]}\t{rows[0][1]}"
        json_lines = http.get(f"/v3/job/result/{job.job_id}",
                              params={"format": "json", "header": "True"}).text.splitlines()
        assert json.loads(json_lines[0]) == ["h", "ts"] and json.loads(json_lines[1]) == rows[0]
        assert http.get(f"/v3/job/statistics/{job.job_id}").json() == {"records_inserted": "300"}
        shown = http.get(f"/v3/job/show/{job.job_id}").json()
        assert shown["hive_result_schema"] == '[["h", "int"], ["ts", "timestamp"]]'
        assert shown["result"] == "" and shown["debug"]["stderr"] is None
        listed = http.get("/v3/job/list", params={"from": 0, "to": 0}).json()
        assert listed["from"] == 0 and listed["to"] == 0 and len(listed["jobs"]) == 1
        killed = http.post(f"/v3/job/kill/{job.job_id}").json()  # finished: nothing changes
        assert killed == {"job_id": job.job_id, "former_status": "success", "status": "success"}
        # Bearer works too; a urlencoded body and a JSON body are accepted.
        bearer = {"Authorization": f"Bearer {stack.key}"}
        assert http.get(f"/v3/job/status/{job.job_id}", headers=bearer).status_code == 200
        urlencoded = http.post("/v3/job/issue/presto/company_data",
                               data={"query": "EXPLAIN SELECT \"event_timestamp\" FROM seed",
                                     "priority": "0"})
        assert urlencoded.status_code == 200, urlencoded.text
        as_json = http.post("/v3/job/issue/trino/company_data",
                            json={"query": "EXPLAIN SELECT \"event_timestamp\" FROM seed",
                                  "retry_limit": 2})
        assert as_json.status_code == 200 and set(as_json.json()) == {"job", "job_id", "database"}
        assert http.post("/v3/job/issue/pig/company_data",
                         data={"query": QUERY}).status_code == 400
        bad = http.post("/v3/job/issue/presto/company_data", data={"query": "SELEC 1"})
        assert bad.status_code == 400


def test_errors_tenancy_and_domain_key(stack: Stack) -> None:
    with stack.client() as td:
        with pytest.raises(tdclient.errors.NotFoundError):
            td.job_status("00000000-0000-0000-0000-000000000000")
        with pytest.raises(tdclient.errors.NotFoundError):
            td.api.show_job("12345")
        first = td.query("company_data", QUERY, type="presto", domain_key="daily-2024-06-01")
        again = td.query("company_data", QUERY, type="presto", domain_key="daily-2024-06-01")
        assert first.job_id == again.job_id
        finished(first, stack)
    with stack.http() as http:
        by_key = http.get("/v3/job/status_by_domain_key/daily-2024-06-01").json()
        assert by_key["job_id"] == first.job_id and by_key["status"] == "success"
    with stack.client("not-a-token") as td, pytest.raises(tdclient.errors.AuthError):
        td.job_status(first.job_id)
    with stack.client(stack.other_key) as other:
        for call in (other.job_status, other.api.show_job, other.kill):
            with pytest.raises(tdclient.errors.NotFoundError):
                call(first.job_id)
        assert first.job_id not in {j.job_id for j in other.jobs()}


def test_pytd_rest_path(stack: Stack) -> None:
    pytd = pytest.importorskip("pytd")
    client = pytd.Client(apikey=stack.key, endpoint=stack.url + "/", database="company_data",
                         default_engine="presto")
    try:
        answer = client.query(QUERY, force_tdclient=True)
        assert answer["columns"] == ["h", "ts"] and len(answer["data"]) == 300
        hive = client.query(QUERY, engine="hive")
        assert hive["data"] == answer["data"]
    finally:
        client.close()


def test_failed_query_shows_its_error(stack: Stack) -> None:
    bad = ('SELECT CAST("mobile_id_unique_identifier"."value" AS INTEGER) AS n FROM seed')
    with stack.client() as td:
        job = td.query("company_data", bad, type="presto")
        finished(job, stack)
        assert job.status() == "error"
        shown = td.api.show_job(job.job_id)
        assert shown["debug"]["stderr"] and shown["hive_result_schema"] is None
