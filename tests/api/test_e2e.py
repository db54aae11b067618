"""End to end over real HTTP: a `dataplane api` process, a `dataplane scheduler` and a
`dataplane worker --cluster shared` on the real PostgreSQL and Redis, one set per module.

Jobs go in through `POST /nql/run` and are run by the worker; results, downloads and
cancellation are read back through the API process. The download test measures that
process's memory (RSS) while it streams a 3,000,000-row result in each format.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psutil
import pyarrow.parquet as pq
import pytest
import redis
from sqlalchemy import text

from api.models.responses import Job, JobResults
from shared.config import Settings
from shared.sample_data import SEED_DATASET_ID, write_seed_dataset
from shared.store import Store
from shared.store.tokens import create_token
from tests.e2e.devmode import free_port
from tests.processes import Process, start, wait_for
from worker.importer import import_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SEED = f'company_data."{SEED_DATASET_ID}"'
SLOW_VIEW = (  # a three-way cross join: minutes of work, interruptible
    'CREATE MATERIALIZED VIEW "slow" AS SELECT count(*) AS n '
    f'FROM {SEED} AS a CROSS JOIN {SEED} AS b CROSS JOIN {SEED} AS c '
    'WHERE (epoch_ms(a."event_timestamp") * 7 + epoch_ms(b."event_timestamp") * 13 '
    '+ epoch_ms(c."event_timestamp")) % 1000 = 999')
HOURS_VIEW = ('CREATE MATERIALIZED VIEW "hours" AS SELECT "timestamp_object"."hour" AS h, '
              f'"event_timestamp" AS ts FROM {SEED} WHERE "timestamp_object"."hour" < 3 '
              'ORDER BY ts LIMIT 300 ROWS')
FAILING_VIEW = ('CREATE MATERIALIZED VIEW "conv" AS SELECT '
                f'CAST("mobile_id_unique_identifier"."value" AS INTEGER) AS n FROM {SEED}')
BIG_ROWS = 3_000_000
BIG_DATASET_ID = 900
RSS_GROWTH_LIMIT = 100 * 2**20
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")


@dataclass
class Stack:
    url: str
    store: Store
    settings: Settings
    api: Process
    worker: Process
    scheduler: Process
    http: httpx.Client
    other_http: httpx.Client
    root: Path

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-2500:]}"
                         for p in (self.api, self.worker, self.scheduler))

    def run(self, nql: str, **options: Any) -> dict[str, Any]:
        response = self.http.post("/nql/run", json={"nql": nql, **options})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def job(self, job_id: str) -> dict[str, Any]:
        body = self.http.get(f"/jobs/{job_id}").json()
        Job.model_validate(body)  # what real workers write still fits the declared schema
        return dict(body)

    def wait(self, job_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
        wait_for(lambda: self.job(job_id)["state"] in states, timeout=timeout, interval=0.1,
                 message=f"job {job_id} in {states}\n{self.logs()}")
        return self.job(job_id)


def _truncate(store: Store) -> None:
    with store.unit_of_work() as session:
        for table in ("job_transitions", "job_tags", "refresh_schedules", "view_progress", "snapshots", "jobs",
                      "datasets", "api_tokens"):
            session.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_database: str,
          redis_db: int) -> Iterator[Stack]:
    broker = f"redis://127.0.0.1:6379/{redis_db}"
    redis.Redis.from_url(broker).flushdb()
    root = tmp_path_factory.mktemp("api-e2e")
    settings = Settings(data_dir=root / "data", database_url=pg_database, broker_url=broker)
    settings.ensure_dirs()
    store = Store.from_url(pg_database)
    _truncate(store)
    seed_file = root / "seed.parquet"
    write_seed_dataset(seed_file, 20_000)
    import_dataset(settings, store, company_id=1, dataset_id=SEED_DATASET_ID, name="seed",
                   source=seed_file)
    with store.unit_of_work() as session:
        token = create_token(session, company_id=1, user_id=7)
        other_token = create_token(session, company_id=2, user_id=8)
    env = {"DATAPLANE_DATABASE_URL": pg_database, "DATAPLANE_BROKER_URL": broker,
           "DATAPLANE_DATA_DIR": str(settings.data_dir), "DATAPLANE_CANCEL_POLL_SECONDS": "0.1",
           "DATAPLANE_DISPATCH_INTERVAL_SECONDS": "0.5"}
    port = free_port()
    logs = root / "logs"
    worker = start("worker", ["worker", "--cluster", "shared", "--concurrency", "1"], env, logs)
    scheduler = start("scheduler", ["scheduler"], env, logs)
    api = start("api", ["api", "--port", str(port), "--no-access-log"], env, logs)
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    other_http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {other_token}"},
                              timeout=60)
    stack = Stack(url, store, settings, api, worker, scheduler, http, other_http, root)
    try:
        def api_up() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False
        wait_for(lambda: api_up() or not api.alive(), timeout=60, interval=0.2,
                 message="api healthy")
        wait_for(lambda: " ready." in worker.log() or not worker.alive(), timeout=60,
                 message="worker ready")
        assert api.alive() and worker.alive() and scheduler.alive(), stack.logs()
        yield stack
    finally:
        http.close()
        other_http.close()
        for process in (api, scheduler, worker):
            process.stop()
        store.dispose()


def test_view_job_runs_and_serves_its_rows(stack: Stack):
    job = stack.run(HOURS_VIEW, tags=["e2e"])
    done = stack.wait(job["job_id"], "completed", "failed")
    assert done["state"] == "completed", done["failures"]
    assert done["executor"] and done["input"]["compiled_sql"]
    assert set(done["result"]) == {"dataset_id", "snapshot_id", "recalculation_id"}

    page = stack.http.get(f"/jobs/{job['job_id']}/results", params={"limit": 500}).json()
    JobResults.model_validate(page)
    assert page["rowCount"] == 300 == len(page["rows"])
    assert page["schema"] == [{"name": "h", "type": {"name": "INTEGER"}},
                              {"name": "ts", "type": {"name": "TIMESTAMP"}}]
    assert all(TIMESTAMP.match(row["ts"]) for row in page["rows"] if row["ts"] is not None)
    middle = stack.http.get(f"/jobs/{job['job_id']}/results",
                            params={"limit": 7, "offset": 100}).json()
    assert middle["rows"] == page["rows"][100:107] and middle["rowCount"] == 300

    dataset_id = done["result"]["dataset_id"]
    listed = stack.http.get("/jobs", params={"dataset_id": dataset_id, "tag": "e2e"}).json()
    assert [r["job_id"] for r in listed["records"]] == [job["job_id"]]
    dataset = stack.http.get(f"/datasets/{dataset_id}").json()
    assert dataset["name"] == "hours" and dataset["current_snapshot_id"] == \
        done["result"]["snapshot_id"]
    snapshots = stack.http.get(f"/datasets/{dataset_id}/snapshots").json()["snapshots"]
    assert [s["snapshot_id"] for s in snapshots] == [done["result"]["snapshot_id"]]
    stats = stack.http.get(f"/datasets/{dataset_id}/snapshots/"
                           f"{done['result']['snapshot_id']}/column-stats").json()
    assert [c["name"] for c in stats["columns"]] == ["h", "ts"]
    assert stats["columns"][0]["count"] == 300

    # Company 2 sees none of it.
    for path in (f"/jobs/{job['job_id']}", f"/jobs/{job['job_id']}/results",
                 f"/datasets/{dataset_id}"):
        assert stack.other_http.get(path).status_code == 404


def test_small_downloads_in_every_format(stack: Stack):
    job = stack.run(HOURS_VIEW.replace('"hours"', '"hours_dl"'))
    assert stack.wait(job["job_id"], "completed", "failed")["state"] == "completed"
    expected = stack.http.get(f"/jobs/{job['job_id']}/results", params={"limit": 500}).json()
    for fmt, media_type in (("csv", "text/csv"), ("jsonl", "application/x-ndjson"),
                            ("parquet", "application/vnd.apache.parquet")):
        response = stack.http.get(f"/jobs/{job['job_id']}/result", params={"format": fmt})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)
        assert response.headers["content-disposition"] == \
            f'attachment; filename="{job["job_id"]}.{fmt}"'
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(response.text)))
            got = [{"h": int(r["h"]), "ts": r["ts"] or None} for r in rows]
        elif fmt == "jsonl":
            got = [json.loads(line) for line in response.text.splitlines()]
        else:
            table = pq.read_table(io.BytesIO(response.content))
            got = [{"h": r["h"], "ts": r["ts"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                    if r["ts"] else None} for r in table.to_pylist()]
        assert got == expected["rows"], fmt


def test_forecast_job(stack: Stack):
    job = stack.run(f'EXPLAIN SELECT "event_timestamp" FROM {SEED} '
                    'WHERE "timestamp_object"."hour" < 6')
    done = stack.wait(job["job_id"], "completed", "failed")
    assert done["state"] == "completed", done["failures"]
    assert isinstance(done["result"]["rows"], int) and isinstance(done["result"]["cost"], int)
    results = stack.http.get(f"/jobs/{job['job_id']}/results").json()
    assert results["rows"][0]["rows"] == done["result"]["rows"]


def test_failed_job_results_are_the_dremio_error(stack: Stack):
    job = stack.run(FAILING_VIEW)
    done = stack.wait(job["job_id"], "completed", "failed")
    assert done["state"] == "failed" and done["failures"]
    for path in (f"/jobs/{job['job_id']}/results", f"/jobs/{job['job_id']}/result"):
        response = stack.http.get(path)
        assert response.status_code == 400
        assert response.json() == {
            "errorMessage": "Can not fetch details for a job that is in [FAILED] state.",
            "moreInfo": ""}


def test_cancel_a_running_job(stack: Stack):
    job = stack.run(SLOW_VIEW)
    stack.wait(job["job_id"], "running")
    response = stack.http.post(f"/jobs/{job['job_id']}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    time.sleep(1)  # the worker notices, interrupts DuckDB, discards its output
    assert stack.job(job["job_id"])["state"] == "cancelled"
    assert stack.http.get(f"/jobs/{job['job_id']}/results").json()["errorMessage"] == \
        "Can not fetch details for a job that is in [CANCELLED] state."


def test_request_cancellation_of_a_running_job(stack: Stack):
    job = stack.run(SLOW_VIEW.replace('"slow"', '"slow2"'))
    stack.wait(job["job_id"], "running")
    requested = stack.http.post(f"/jobs/{job['job_id']}/request-cancellation")
    assert requested.status_code == 200
    assert requested.json()["state"] in {"pending_cancellation", "cancelled"}
    done = stack.wait(job["job_id"], "cancelled", "completed", "failed", timeout=30)
    assert done["state"] == "cancelled"


def test_chunked_body_over_the_limit_is_413_over_http(stack: Stack):
    def body() -> Iterator[bytes]:
        yield b'{"nql": "'
        for _ in range(stack.settings.api_max_body_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = stack.http.post("/nql/run", content=body(),
                               headers={"Content-Type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert response.json()["status"] == 413


# --- a 3M-row result, downloaded in every format with the API's memory flat ---------------

@pytest.fixture(scope="module")
def big_job(stack: Stack) -> str:
    source = stack.root / "big.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT i AS id, i % 1000 AS bucket, 'label-' || i AS label, "
                f"i * 0.25 AS amount FROM range({BIG_ROWS}) AS r(i)) TO '{source}' "
                "(FORMAT parquet)")
    con.close()
    import_dataset(stack.settings, stack.store, company_id=1, dataset_id=BIG_DATASET_ID,
                   name="big", source=source)
    job = stack.run('CREATE MATERIALIZED VIEW "big_copy" AS SELECT "id", "bucket", "label", '
                    '"amount" FROM company_data.big')
    done = stack.wait(job["job_id"], "completed", "failed", timeout=180)
    assert done["state"] == "completed", done["failures"]
    return str(job["job_id"])


class PeakRSS:
    """Samples a process's resident memory every few milliseconds while in the block."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        rest += chunk
        *complete, rest = rest.split(b"\n")
        yield from complete
    if rest:
        yield rest


def _sampled(stack: Stack, job_id: str, offsets: list[int]) -> dict[int, dict[str, Any]]:
    """Rows at `offsets` as the results endpoint gives them."""
    rows: dict[int, dict[str, Any]] = {}
    for offset in offsets:
        page = stack.http.get(f"/jobs/{job_id}/results", params={"limit": 3, "offset": offset})
        rows.update({offset + i: row for i, row in enumerate(page.json()["rows"])})
    return rows


def _download(stack: Stack, job_id: str, fmt: str, wanted: set[int],
              target: Path) -> tuple[int, dict[int, dict[str, Any]], int]:
    """Stream one download: (rows, the rows at `wanted` positions, peak RSS of the API)."""
    found: dict[int, dict[str, Any]] = {}
    count = 0
    with PeakRSS(stack.api.pid) as rss, stack.http.stream(
            "GET", f"/jobs/{job_id}/result", params={"format": fmt}, timeout=300) as response:
        assert response.status_code == 200
        chunks = response.iter_bytes(1 << 20)
        if fmt == "parquet":
            with target.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
        else:
            lines = _lines(chunks)
            header = next(lines).decode().split(",") if fmt == "csv" else None
            for line in lines:
                if count in wanted:
                    if header is None:
                        found[count] = json.loads(line)
                    else:
                        values = next(csv.reader([line.decode()]))
                        found[count] = dict(zip(header, values, strict=True))
                count += 1
    if fmt == "parquet":
        table = pq.read_table(target)
        count = table.num_rows
        found = {i: table.slice(i, 1).to_pylist()[0] for i in wanted if i < count}
    return count, found, rss.peak


def test_download_of_millions_of_rows_streams_in_flat_memory(stack: Stack, big_job: str,
                                                             tmp_path: Path):
    offsets = [0, 1_234_567, BIG_ROWS - 3]
    expected = _sampled(stack, big_job, offsets)
    assert stack.http.get(f"/jobs/{big_job}/results",
                          params={"limit": 0}).json()["rowCount"] == BIG_ROWS
    api = psutil.Process(stack.api.pid)
    for fmt in ("csv", "jsonl", "parquet"):
        before = api.memory_info().rss
        count, found, peak = _download(stack, big_job, fmt, set(expected),
                                       tmp_path / f"result.{fmt}")
        growth = peak - before
        print(f"{fmt}: {count} rows, API RSS {before / 2**20:.0f} MiB -> peak "
              f"{peak / 2**20:.0f} MiB (+{growth / 2**20:.1f} MiB)")
        assert count == BIG_ROWS, fmt
        assert growth < RSS_GROWTH_LIMIT, f"{fmt}: API memory grew by {growth / 2**20:.0f} MiB"
        for position, row in expected.items():
            got = found[position]
            assert int(got["id"]) == row["id"] and int(got["bucket"]) == row["bucket"], fmt
            assert got["label"] == row["label"] and float(got["amount"]) == row["amount"], fmt
